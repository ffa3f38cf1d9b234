"""Custom instructions: a user's own, set on their settings page, and the site's,
set by staff, reach the model in one system message, the site's first.

Personas: `alice` sets her instructions; `bob` is another user, whose answers
never carry hers.
"""

import pytest
from django.test import Client

from chat.models import Message, SiteSettings, UserSettings
from chat.provider.prompt import PERSONAL_INTRODUCTION, SYSTEM_PROMPT
from chat.views import MAX_INSTRUCTIONS_CHARS
from tests.conftest import finished, send
from tests.openai_stub import Stream

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast")]


async def system_message_of_next_answer(client, conversation, stub) -> str:
    stub.script(Stream(["ok"]))
    message = await send(client, conversation, "Hello")
    assert (await finished(message.pk)).status == "complete"
    [system] = [m for m in stub.requests[-1]["messages"] if m["role"] == "system"]
    assert stub.requests[-1]["messages"][0] is system
    return system["content"]


# The settings page


def test_it_shows_and_saves_the_users_instructions(alice_client, alice):
    page = alice_client.get("/settings/")
    assert page.status_code == 200
    assert 'name="instructions"' in page.content.decode()
    response = alice_client.post("/settings/instructions/", {"instructions": "  Answer in French.\x00  "})
    assert response.status_code == 302 and response["Location"] == "/settings/?saved=1"
    assert UserSettings.objects.get(user=alice).instructions == "Answer in French.\ufffd"
    page = alice_client.get("/settings/?saved=1").content.decode()
    assert "Answer in French.\ufffd</textarea>" in page and "Saved." in page
    # Emptied: none any more.
    alice_client.post("/settings/instructions/", {"instructions": ""})
    assert UserSettings.objects.get(user=alice).instructions == ""


def test_it_refuses_instructions_over_the_limit(alice_client, alice):
    too_long = "x" * (MAX_INSTRUCTIONS_CHARS + 1)
    response = alice_client.post("/settings/instructions/", {"instructions": too_long})
    assert response.status_code == 422
    assert f"the limit is {MAX_INSTRUCTIONS_CHARS:,}" in response.content.decode()
    # What was typed is kept on the page, nothing is stored.
    assert too_long in response.content.decode()
    assert not UserSettings.objects.exists()


def test_each_user_sees_and_changes_only_their_own(alice_client, alice, bob):
    UserSettings.objects.create(user=alice, instructions="Alice's secret style")
    bob_client = Client()
    bob_client.force_login(bob)
    assert "Alice's secret style" not in bob_client.get("/settings/").content.decode()
    bob_client.post("/settings/instructions/", {"instructions": "Bob's"})
    assert UserSettings.objects.get(user=alice).instructions == "Alice's secret style"
    assert UserSettings.objects.get(user=bob).instructions == "Bob's"


def test_saving_needs_the_csrf_token(alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    assert client.post("/settings/instructions/", {"instructions": "Forged"}).status_code == 403
    assert not UserSettings.objects.exists()
    page = client.get("/settings/").content.decode()
    token = page.split('name="csrfmiddlewaretoken" value="')[1].split('"')[0]
    response = client.post("/settings/instructions/", {"instructions": "Mine", "csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assert UserSettings.objects.get(user=alice).instructions == "Mine"


def test_the_sidebar_links_to_the_settings(alice_client):
    assert 'href="/settings/"' in alice_client.get("/").content.decode()


# What the model is sent


async def test_the_site_wide_then_the_personal_instructions_in_one_system_message(
    alice_async, alice, bob, conversation, stub
):
    await SiteSettings.objects.acreate(instructions="Site rule: be kind.")
    await UserSettings.objects.acreate(user=alice, instructions="Alice: answer briefly.")
    await UserSettings.objects.acreate(user=bob, instructions="Bob: answer at length.")
    system = await system_message_of_next_answer(alice_async, conversation, stub)
    assert system == f"Site rule: be kind.\n\n{PERSONAL_INTRODUCTION}\n\nAlice: answer briefly."
    assert "Bob" not in system


async def test_without_site_instructions_the_environments_or_the_built_in_prompt_comes_first(
    alice_async, alice, conversation, stub, settings
):
    await UserSettings.objects.acreate(user=alice, instructions="Alice: answer briefly.")
    settings.CHAT_SYSTEM_PROMPT = ""
    assert await system_message_of_next_answer(alice_async, conversation, stub) == (
        f"{SYSTEM_PROMPT}\n\n{PERSONAL_INTRODUCTION}\n\nAlice: answer briefly."
    )
    settings.CHAT_SYSTEM_PROMPT = "From the environment."
    assert await system_message_of_next_answer(alice_async, conversation, stub) == (
        f"From the environment.\n\n{PERSONAL_INTRODUCTION}\n\nAlice: answer briefly."
    )
    # Without personal instructions, the site's alone, with no introduction.
    await UserSettings.objects.filter(user=alice).aupdate(instructions="  ")
    assert await system_message_of_next_answer(alice_async, conversation, stub) == "From the environment."


async def test_instructions_reach_a_retry_and_a_continue_too(alice_async, alice, conversation, stub):
    await UserSettings.objects.acreate(user=alice, instructions="Alice: answer briefly.")
    stub.script(Stream(["Cut"], finish_reason=None), Stream(["Again"]), Stream(["More"]))
    first = await finished((await send(alice_async, conversation, "Hello")).pk)
    await alice_async.post(f"/c/{conversation.pk}/m/{first.pk}/continue/", headers={"HX-Request": "true"})
    await finished(first.pk)
    await alice_async.post(f"/c/{conversation.pk}/m/{first.pk}/retry/", headers={"HX-Request": "true"})
    retried = await Message.objects.filter(role="assistant").alatest("id")
    assert retried.pk != first.pk and (await finished(retried.pk)).status == "complete"
    assert len(stub.requests) == 3
    for request in stub.requests:
        systems = [m for m in request["messages"] if m["role"] == "system"]
        assert len(systems) == 1 and systems[0]["content"].endswith("Alice: answer briefly.")
