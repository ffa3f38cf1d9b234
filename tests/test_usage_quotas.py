"""Quotas, the usage ledger and what people see of their usage.

Personas: `alice` and `bob` use the chat; in some tests both are in the group
"sales", which has a quota of its own. The model is the local stub, which
reports its token counts like a provider.
"""

import html
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone

from chat.models import Conversation, ModelPrice, Quota, UsageEntry
from chat.usage import period_bounds
from tests.conftest import HTMX, finished, send
from tests.openai_stub import Stream

pytestmark = pytest.mark.django_db(transaction=True)


async def post(client, url: str, data: dict | None = None):
    return await client.post(url, data or {}, headers=HTMX)


def refused_text(response) -> str:
    assert response.status_code == 429, response.content
    return html.unescape(response.content.decode())


async def answer(stub, client, conversation, prompt="Hi", *, usage=(10, 5)):
    stub.script(Stream(["Hello ", "there"], usage=usage))
    return await finished((await send(client, conversation, prompt)).pk)


async def test_an_answers_quota_refuses_before_any_generation_starts(stub, alice, alice_async, conversation):
    await Quota.objects.acreate(user=alice, period=Quota.Period.DAY, max_answers=2)
    for i in range(2):
        assert (await answer(stub, alice_async, conversation, f"Prompt {i}")).status == "complete"

    text = refused_text(await post(alice_async, f"/c/{conversation.pk}/send/", {"prompt": "One more"}))

    assert "You have used 2 of your 2 answers today." in text
    assert "The quota resets at 00:00 UTC on" in text
    # Refused before anything reached the provider or the database.
    assert len(stub.requests) == 2
    assert await conversation.messages.filter(role="user").acount() == 2


async def test_an_answer_that_crosses_a_token_quota_finishes_and_the_next_is_refused(
    stub, alice, alice_async, conversation
):
    await Quota.objects.acreate(user=alice, period=Quota.Period.MONTH, max_tokens=20)
    first = await answer(stub, alice_async, conversation, usage=(12, 4))
    # 16 tokens: under the quota, so the next one starts, and crosses it.
    crossing = await answer(stub, alice_async, conversation, usage=(30, 10))
    assert (first.status, crossing.status) == ("complete", "complete")
    assert crossing.content == "Hello there"

    text = refused_text(await post(alice_async, f"/c/{conversation.pk}/send/", {"prompt": "More"}))
    assert "You have used 56 of your 20 tokens this month." in text


async def test_usage_of_an_earlier_period_does_not_count(stub, alice, alice_async, conversation):
    await Quota.objects.acreate(user=alice, period=Quota.Period.DAY, max_answers=1)
    await answer(stub, alice_async, conversation)
    assert (await post(alice_async, f"/c/{conversation.pk}/send/", {"prompt": "Again"})).status_code == 429

    # The same answer, a second before today's midnight: yesterday's.
    start, _ = period_bounds(Quota.Period.DAY)
    await UsageEntry.objects.filter(user=alice).aupdate(created_at=start - timedelta(seconds=1))
    assert (await answer(stub, alice_async, conversation, "Today")).status == "complete"


def test_periods_start_at_midnight_and_on_the_first_of_the_month(settings):
    settings.TIME_ZONE = "Europe/Paris"
    now = timezone.make_aware(timezone.datetime(2026, 3, 29, 12, 0))  # the day clocks go forward
    day_start, day_end = period_bounds(Quota.Period.DAY, now)
    month_start, month_end = period_bounds(Quota.Period.MONTH, now)
    assert (day_start.isoformat(), day_end.isoformat()) == ("2026-03-29T00:00:00+01:00", "2026-03-30T00:00:00+02:00")
    assert (month_start.isoformat(), month_end.isoformat()) == (
        "2026-03-01T00:00:00+01:00",
        "2026-04-01T00:00:00+02:00",
    )


async def test_a_group_quota_is_shared_by_its_members(stub, alice, bob, alice_async, bob_async, conversation):
    sales = await Group.objects.acreate(name="sales")
    await alice.groups.aadd(sales)
    await bob.groups.aadd(sales)
    await Quota.objects.acreate(group=sales, period=Quota.Period.DAY, max_answers=2)
    await answer(stub, alice_async, conversation, "One")
    await answer(stub, alice_async, conversation, "Two")

    bobs = await Conversation.objects.acreate(owner=bob, title="Bob's")
    text = refused_text(await post(bob_async, f"/c/{bobs.pk}/send/", {"prompt": "Mine"}))
    assert "You have used 2 of the group “sales”’s 2 answers today." in text


async def test_the_ledger_keeps_tokens_model_group_and_cost(stub, alice, alice_async, conversation):
    sales = await Group.objects.acreate(name="sales")
    await alice.groups.aadd(sales)
    await ModelPrice.objects.acreate(model="stub-model", input_per_million=Decimal(2), output_per_million=Decimal(8))
    message = await answer(stub, alice_async, conversation, usage=(1000, 500))

    [start] = [e async for e in UsageEntry.objects.filter(kind="answer")]
    [end] = [e async for e in UsageEntry.objects.filter(kind="end")]
    assert (start.username, start.group, start.model, start.message_id) == ("alice", "sales", "stub-model", message.pk)
    assert (end.prompt_tokens, end.completion_tokens, end.status) == (1000, 500, "complete")
    assert end.cost == Decimal("0.006")  # 1000 × 2 + 500 × 8 per million
    assert end.first_token_ms is not None and end.duration_ms >= end.first_token_ms


async def test_deleting_every_conversation_changes_no_usage(stub, alice, alice_async, conversation, alice_client):
    await Quota.objects.acreate(user=alice, period=Quota.Period.DAY, max_answers=10, max_tokens=10_000)
    for i in range(3):
        await answer(stub, alice_async, conversation, f"Prompt {i}", usage=(100, 20))
    before = (await alice_async.get("/settings/")).content.decode()

    async for c in Conversation.objects.filter(owner=alice):
        assert (await post(alice_async, f"/c/{c.pk}/delete/")).status_code in (200, 204)
    assert not await Conversation.objects.filter(owner=alice).aexists()

    after = (await alice_async.get("/settings/")).content.decode()
    assert "Answers: 3 of 10" in before and "Tokens: 360 of 10000" in before
    assert "Answers: 3 of 10" in after and "Tokens: 360 of 10000" in after
    assert await UsageEntry.objects.filter(user=alice).acount() == 6


def test_the_usage_shown_equals_the_sum_of_the_ledger(alice, alice_client, bob):
    now = timezone.now()
    for model, prompt, completion, cost in [("m1", 100, 10, "0.5"), ("m1", 50, 5, "0.25"), ("m2", 7, 3, "1")]:
        UsageEntry.objects.create(
            kind="end",
            user=alice,
            username="alice",
            model=model,
            prompt_tokens=prompt,
            completion_tokens=completion,
            cost=Decimal(cost),
            created_at=now,
        )
    # Bob's usage is not alice's.
    UsageEntry.objects.create(kind="end", user=bob, username="bob", model="m1", prompt_tokens=999, created_at=now)

    page = alice_client.get("/settings/").content.decode()

    assert "<td>m1</td><td>2</td><td>150</td><td>15</td><td>$0.7500</td>" in page
    assert "<td>m2</td><td>1</td><td>7</td><td>3</td><td>$1.0000</td>" in page
    assert "175 tokens" in page and "$1.7500" in page
    assert "999" not in page


def test_the_settings_page_with_usage_needs_a_login():
    response = Client().get("/settings/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
