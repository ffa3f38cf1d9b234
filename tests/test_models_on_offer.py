"""Models on offer: the model picked for a conversation writes its answers, each
answer records and shows the model that wrote it, Retry can use another one, a
model that is disabled or removed falls back to the default, and each model's
limits and parameters reach the request. Every request goes to the local
OpenAI-compatible stub through the real `openai` client.

Personas: `alice` owns the conversation; staff's providers point at the stub.
"""

import json
import re

import pytest

from chat import secrets
from chat.models import Conversation, Generation, Message, OfferedModel, Provider, SiteSettings
from chat.provider import catalog
from tests.conftest import HTMX, finished, read_stream
from tests.openai_stub import Stream

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast")]


def offer(stub, model_id: str, label: str, provider: str = "Stub", **fields) -> OfferedModel:
    """`model_id` offered as `label` from a provider at the stub."""
    source, _ = Provider.objects.get_or_create(name=provider, defaults={"base_url": stub.base_url})
    return OfferedModel.objects.create(provider=source, model_id=model_id, label=label, **fields)


async def prompt(client, conversation: Conversation, text: str, **form) -> Message:
    response = await client.post(f"/c/{conversation.pk}/send/", {"prompt": text, **form}, headers=HTMX)
    assert response.status_code == 200, response.content
    answer = await Message.objects.filter(conversation=conversation, role="assistant").alatest("id")
    return await finished(answer.pk)


def shown_model(html: str, message_id: int) -> str:
    article = html[html.index(f'id="msg-{message_id}"') :]
    return re.search(r'<span class="msg-model">([^<]*)</span>', article)[1]


def selected(html: str) -> tuple[str, str]:
    """The composer's picker: the selected option's value and label."""
    picker = re.search(r'<select name="model"[^>]*>(.*?)</select>', html, re.S)[1]
    value, label = re.search(r'<option value="([^"]*)" selected>([^<]*)</option>', picker).groups()
    return value, label


# The picker


def test_with_nothing_set_up_the_picker_offers_the_demo_model(alice_client, settings):
    settings.OPENAI_API_KEY = settings.OPENAI_BASE_URL = ""
    page = alice_client.get("/").content.decode()
    assert selected(page) == ("", "Demo model")
    assert "demo-badge" in page


def test_the_environments_model_is_offered_only_while_no_model_is(alice_client, stub):
    assert selected(alice_client.get("/").content.decode()) == ("", "stub-model")
    first = offer(stub, "model-a", "Model A", position=2)
    second = offer(stub, "model-b", "Model B", position=1)
    page = alice_client.get("/").content.decode()
    options = re.findall(r'<option value="([^"]*)"', page)
    assert options == [str(second.pk), str(first.pk)]
    assert selected(page) == (str(second.pk), "Model B")
    assert "demo-badge" not in page
    SiteSettings.objects.create(default_model=first)
    assert selected(alice_client.get("/").content.decode()) == (str(first.pk), "Model A")
    # Disabled models and the models of a disabled provider are not offered.
    OfferedModel.objects.filter(pk=second.pk).update(enabled=False)
    assert re.findall(r'<option value="([^"]*)"', alice_client.get("/").content.decode()) == [str(first.pk)]
    Provider.objects.update(enabled=False)
    assert selected(alice_client.get("/").content.decode()) == ("", "stub-model")


async def test_the_picked_model_writes_the_answer_and_stays_picked(alice_async, conversation, stub):
    a = await OfferedModel.objects.acreate(
        provider=await Provider.objects.acreate(name="Stub", base_url=stub.base_url),
        model_id="model-a",
        label="Model A",
    )
    b = await OfferedModel.objects.acreate(provider_id=a.provider_id, model_id="model-b", label="Model B")
    stub.script(Stream(["From B."]), Stream(["From B again."]), Stream(["From A."]))

    first = await prompt(alice_async, conversation, "Hello", model=str(b.pk))
    assert stub.requests[0]["model"] == "model-b"
    assert (first.status, first.model, first.model_option_id) == ("complete", "model-b", b.pk)
    assert await Generation.objects.filter(message=first).values_list("model", flat=True).aget() == "model-b"
    assert (await Conversation.objects.aget(pk=conversation.pk)).model_option_id == b.pk

    # The next prompt, sent without a choice (a form without the picker), keeps it.
    second = await prompt(alice_async, conversation, "Again")
    assert stub.requests[1]["model"] == "model-b" and second.model_option_id == b.pk

    third = await prompt(alice_async, conversation, "Now A", model=str(a.pk))
    assert stub.requests[2]["model"] == "model-a" and third.model_option_id == a.pk
    page = (await alice_async.get(f"/c/{conversation.pk}/")).content.decode()
    assert [shown_model(page, m.pk) for m in (first, second, third)] == ["Model B", "Model B", "Model A"]
    assert selected(page) == (str(a.pk), "Model A")


@pytest.mark.parametrize("posted", ["999999", "abc", "1" * 30, "disabled"])
async def test_a_model_that_is_not_offered_is_refused_clearly(alice_async, conversation, stub, posted):
    disabled = await OfferedModel.objects.acreate(
        provider=await Provider.objects.acreate(name="Stub", base_url=stub.base_url),
        model_id="off",
        label="Off",
        enabled=False,
    )
    value = str(disabled.pk) if posted == "disabled" else posted
    response = await alice_async.post(f"/c/{conversation.pk}/send/", {"prompt": "Hi", "model": value}, headers=HTMX)
    assert response.status_code == 422
    assert "not offered any more" in response.content.decode()
    assert not await Message.objects.filter(conversation=conversation).aexists()
    assert stub.requests == []


async def test_a_new_conversation_starts_with_the_picked_model(alice_async, stub):
    b = await OfferedModel.objects.acreate(
        provider=await Provider.objects.acreate(name="Stub", base_url=stub.base_url),
        model_id="model-b",
        label="Model B",
    )
    stub.script(Stream(["Hi."]))
    response = await alice_async.post("/c/new/", {"prompt": "Hello", "model": str(b.pk)}, headers=HTMX)
    assert response.status_code == 200
    # The fresh composer keeps the choice.
    assert selected(response.content.decode()) == (str(b.pk), "Model B")
    conversation = await Conversation.objects.aget()
    assert conversation.model_option_id == b.pk
    answer = await finished((await Message.objects.aget(role="assistant")).pk)
    assert answer.model == "model-b" and stub.requests[0]["model"] == "model-b"


# A model disabled or removed


@pytest.mark.parametrize("change", ["disabled", "deleted", "provider disabled"])
async def test_a_conversations_model_that_went_away_falls_back_to_the_default(alice_async, conversation, stub, change):
    provider = await Provider.objects.acreate(name="Other", base_url=stub.base_url)
    gone = await OfferedModel.objects.acreate(provider=provider, model_id="gone", label="Gone")
    default = await OfferedModel.objects.acreate(
        provider=await Provider.objects.acreate(name="Stub", base_url=stub.base_url),
        model_id="default-model",
        label="Default",
    )
    await SiteSettings.objects.acreate(default_model=default)
    await Conversation.objects.filter(pk=conversation.pk).aupdate(model_option=gone)
    if change == "disabled":
        await OfferedModel.objects.filter(pk=gone.pk).aupdate(enabled=False)
    elif change == "deleted":
        await gone.adelete()
    else:
        await Provider.objects.filter(pk=provider.pk).aupdate(enabled=False)
    stub.script(Stream(["Fine."]))
    page = (await alice_async.get(f"/c/{conversation.pk}/")).content.decode()
    assert selected(page) == (str(default.pk), "Default")
    answer = await prompt(alice_async, conversation, "Still there?")
    assert answer.status == "complete" and answer.model_option_id == default.pk
    assert stub.requests[0]["model"] == "default-model"


async def test_an_answer_whose_model_was_removed_still_shows_and_continues(alice_async, conversation, stub):
    gone = await OfferedModel.objects.acreate(
        provider=await Provider.objects.acreate(name="Stub", base_url=stub.base_url), model_id="gone", label="Gone"
    )
    stub.script(Stream(["Cut "], finish_reason=None))
    answer = await prompt(alice_async, conversation, "Write", model=str(gone.pk))
    assert answer.status == "error" and answer.model_option_id == gone.pk
    await gone.adelete()
    page = (await alice_async.get(f"/c/{conversation.pk}/")).content.decode()
    # The provider's name for it, once its label is gone.
    assert shown_model(page, answer.pk) == "gone"
    stub.script(Stream(["short."]))
    response = await alice_async.post(f"/c/{conversation.pk}/m/{answer.pk}/continue/", headers=HTMX)
    assert response.status_code == 200
    done = await finished(answer.pk)
    assert done.status == "complete" and done.content == "Cut short."
    # The environment's model (none is offered now) went on with it.
    assert stub.requests[-1]["model"] == "stub-model" and done.model == "stub-model"


# Retry, Continue


async def test_retry_with_another_model(alice_async, conversation, stub):
    provider = await Provider.objects.acreate(name="Stub", base_url=stub.base_url)
    a = await OfferedModel.objects.acreate(provider=provider, model_id="model-a", label="Model A", position=1)
    b = await OfferedModel.objects.acreate(provider=provider, model_id="model-b", label="Model B", position=2)
    stub.script(Stream(["By A."]), Stream(["By B."]), Stream(["By A again."]))
    first = await prompt(alice_async, conversation, "Hello", model=str(a.pk))
    page = (await alice_async.get(f"/c/{conversation.pk}/")).content.decode()
    menu = page[page.index('<details class="retry-with">') :]
    assert re.findall(r'<button type="submit" name="model" value="(\d+)">([^<]*)</button>', menu)[:2] == [
        (str(a.pk), "Model A"),
        (str(b.pk), "Model B"),
    ]

    response = await alice_async.post(f"/c/{conversation.pk}/m/{first.pk}/retry/", {"model": str(b.pk)}, headers=HTMX)
    assert response.status_code == 200
    retried = await finished((await Message.objects.filter(role="assistant").alatest("id")).pk)
    assert (retried.content, retried.model_option_id, retried.parent_id) == ("By B.", b.pk, first.parent_id)
    assert stub.requests[1]["model"] == "model-b"
    page = (await alice_async.get(f"/c/{conversation.pk}/")).content.decode()
    assert shown_model(page, retried.pk) == "Model B"
    # The conversation's own model is unchanged: a plain Retry uses it.
    assert (await Conversation.objects.aget(pk=conversation.pk)).model_option_id == a.pk
    response = await alice_async.post(f"/c/{conversation.pk}/m/{retried.pk}/retry/", headers=HTMX)
    assert response.status_code == 200
    again = await finished((await Message.objects.filter(role="assistant").alatest("id")).pk)
    assert stub.requests[2]["model"] == "model-a" and again.model_option_id == a.pk

    response = await alice_async.post(f"/c/{conversation.pk}/m/{first.pk}/retry/", {"model": "424242"}, headers=HTMX)
    assert response.status_code == 422 and "not offered any more" in response.content.decode()


async def test_the_finished_answer_offers_retry_with_once_it_ends(alice_async, conversation, stub):
    """The done frame carries the finished answer with its "Retry with" menu,
    rendered from what the start read (no query at the end)."""
    provider = await Provider.objects.acreate(name="Stub", base_url=stub.base_url)
    a = await OfferedModel.objects.acreate(provider=provider, model_id="model-a", label="Model A")
    await OfferedModel.objects.acreate(provider=provider, model_id="model-b", label="Model B")
    stub.script(Stream(["Done."]))
    answer = await prompt(alice_async, conversation, "Hi", model=str(a.pk))
    frames = await read_stream(alice_async, answer)
    assert frames[-1].event == "done"
    assert '<details class="retry-with">' in frames[-1].data and "Model B" in frames[-1].data
    assert shown_model(frames[-1].data, answer.pk) == "Model A"


# What each model is sent


async def test_a_models_max_tokens_and_parameters_reach_the_request(alice_async, conversation, stub):
    option = await OfferedModel.objects.acreate(
        provider=await Provider.objects.acreate(name="Stub", base_url=stub.base_url),
        model_id="model-a",
        label="Model A",
        max_tokens=321,
        # Stored before the admin's checks, or by hand: the request's own fields win.
        parameters={"temperature": 0.2, "top_p": 0.9, "model": "other", "stream": False, "messages": []},
    )
    stub.script(Stream(["ok"]))
    answer = await prompt(alice_async, conversation, "Hi", model=str(option.pk))
    assert answer.status == "complete"
    request = stub.requests[0]
    assert (request["model"], request["max_tokens"], request["stream"]) == ("model-a", 321, True)
    assert (request["temperature"], request["top_p"]) == (0.2, 0.9)
    assert request["messages"][-1] == {"role": "user", "content": "Hi"}


async def test_the_environments_model_keeps_the_environments_limits(alice_async, conversation, stub, settings):
    settings.CHAT_MAX_TOKENS = 77
    stub.script(Stream(["ok"]))
    await prompt(alice_async, conversation, "Hi")
    assert (stub.requests[0]["model"], stub.requests[0]["max_tokens"]) == ("stub-model", 77)


async def test_a_models_context_length_bounds_the_history(alice_async, conversation, stub, settings):
    """(context_length - max_tokens) tokens at CHARS_PER_TOKEN characters each:
    the whole request's messages fit, the oldest turns dropped first."""
    settings.CHAT_MAX_CONTEXT_CHARS = 1_000_000
    option = await OfferedModel.objects.acreate(
        provider=await Provider.objects.acreate(name="Stub", base_url=stub.base_url),
        model_id="small",
        label="Small",
        context_length=1500,
        max_tokens=500,
    )
    budget = (1500 - 500) * catalog.CHARS_PER_TOKEN
    parent = None
    for i in range(20):
        question = await Message.objects.acreate(
            conversation=conversation, role="user", content=f"Question {i}: " + "why " * 30, parent=parent
        )
        parent = await Message.objects.acreate(
            conversation=conversation, role="assistant", content=f"Answer {i}: " + "because " * 15, parent=question
        )
    await Conversation.objects.filter(pk=conversation.pk).aupdate(active_leaf=parent)
    stub.script(Stream(["ok"]))
    await prompt(alice_async, conversation, "The latest question", model=str(option.pk))
    messages = stub.requests[0]["messages"]
    size = sum(len(json.dumps(m)) for m in messages)
    assert size <= budget
    assert messages[0]["role"] == "system" and messages[-1]["content"] == "The latest question"
    # As many of the latest turns as fit: one more would not.
    assert size + 2 * len(json.dumps({"role": "user", "content": "Question 0: " + "why " * 30})) > budget
    assert "Answer 19" in messages[-2]["content"]


# Keys


async def test_a_providers_key_is_sent_to_it_decrypted(alice_async, conversation, stub, monkeypatch):
    provider = await Provider.objects.acreate(
        name="Stub", base_url=stub.base_url, api_key_encrypted=secrets.encrypt("sk-stored-key-1234")
    )
    stored = await OfferedModel.objects.acreate(provider=provider, model_id="a", label="Stored key")
    monkeypatch.setenv("STUB_API_KEY", "sk-env-key-5678")
    other = await Provider.objects.acreate(name="From env", base_url=stub.base_url, api_key_env="STUB_API_KEY")
    from_env = await OfferedModel.objects.acreate(provider=other, model_id="b", label="Env key")
    stub.script(Stream(["one"]), Stream(["two"]))
    await prompt(alice_async, conversation, "Hi", model=str(stored.pk))
    await prompt(alice_async, conversation, "Again", model=str(from_env.pk))
    assert stub.authorizations == ["Bearer sk-stored-key-1234", "Bearer sk-env-key-5678"]


def test_the_page_reads_the_models_labels_in_the_same_queries_whatever_the_length(alice, alice_client, stub):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    provider = Provider.objects.create(name="Stub", base_url=stub.base_url)
    options = [OfferedModel.objects.create(provider=provider, model_id=f"m{i}", label=f"Model {i}") for i in range(4)]
    counts = []
    for length in (2, 12):
        conversation = Conversation.objects.create(owner=alice)
        parent = None
        for i in range(length):
            question = Message.objects.create(conversation=conversation, role="user", content="Q", parent=parent)
            option = options[i % len(options)]
            parent = Message.objects.create(
                conversation=conversation,
                role="assistant",
                content="A",
                parent=question,
                model=option.model_id,
                model_option=option,
            )
        Conversation.objects.filter(pk=conversation.pk).update(active_leaf=parent)
        with CaptureQueriesContext(connection) as queries:
            page = alice_client.get(f"/c/{conversation.pk}/").content.decode()
        assert re.findall(r'<span class="msg-model">([^<]*)</span>', page) == [
            f"Model {i % len(options)}" for i in range(length)
        ]
        counts.append(len(queries))
    assert counts[0] == counts[1]
