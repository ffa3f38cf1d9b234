"""The product with a real model server (tests/realmodel.py): answers streamed,
stopped and continued through the real `openai` client over HTTP, and the
configured endpoint's model list. The model is tiny and samples its own way, so
these check the answers' structure, never their wording.

Marked `realmodel` (and `slow`: it starts a server process): run alone with
`scripts/test.sh -m realmodel`."""

import re

import pytest
from asgiref.sync import sync_to_async

from chat.models import Generation, Message, OfferedModel, Provider
from chat.provider.catalog import environment_choice
from chat.provider.client import get_client
from tests.conftest import HTMX, finished, live_page, read_stream, send, shown, texts
from tests.live_page import LivePage
from tests.realmodel import MODEL_ALIAS
from tests.waiting import wait_until_async

pytestmark = [pytest.mark.realmodel, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# Long enough that the answer is still being written when Stop comes.
LONG = "Write a long, detailed essay about the history of the Roman Empire, in many sections with headings."
# What llama-cpp-python's server prints when a streamed request is closed.
SERVER_SAW_A_CLOSED_REQUEST = "Disconnected from client"
# Generous: on two busy cores the model writes some 10 to 20 tokens a second.
ANSWER_TIMEOUT = 60


async def _stored_text(message: Message) -> str:
    return (await Message.objects.aget(pk=message.pk)).content


async def _stopped(client, conversation) -> Message:
    """An answer stopped as soon as part of it is stored."""
    message = await send(client, conversation, LONG)
    await wait_until_async(lambda: _stored_text(message), timeout=ANSWER_TIMEOUT, message="no text was stored")
    response = await client.post(f"/c/{conversation.pk}/m/{message.pk}/stop/", headers=HTMX)
    assert response.status_code == 204
    frames = await read_stream(client, message)
    assert frames[-1].event == "done" and "Stopped" in frames[-1].data
    return await finished(message.pk, timeout=ANSWER_TIMEOUT)


async def test_an_answer_streams_in_order_and_is_stored_as_streamed(real_model, settings, alice_async, conversation):
    settings.CHAT_MAX_TOKENS = 48
    message = await send(alice_async, conversation, "What is the capital of France? Answer in one sentence.")
    frames = await read_stream(alice_async, message)
    events = [f.event for f in frames]
    assert events[-1] == "done", events
    assert events[:-1] == ["text_delta"] * (len(frames) - 1)
    assert len(frames) > 3, "the answer came in one piece, not streamed"
    assert [int(f.id) for f in frames] == list(range(1, len(frames) + 1))
    stored = await finished(message.pk, timeout=ANSWER_TIMEOUT)
    # Ended by the model (or at the token limit), not by an error.
    assert (stored.status, stored.stop_reason) in {("complete", ""), ("stopped", "token_limit")}, stored.error
    assert stored.content.strip()
    assert texts(frames) == shown(stored.content)
    assert stored.last_seq == len(frames)


async def test_stop_ends_the_answer_and_keeps_its_text(real_model, settings, alice_async, conversation):
    settings.CHAT_MAX_TOKENS = 1024
    disconnects = real_model.output().count(SERVER_SAW_A_CLOSED_REQUEST)
    stopped = await _stopped(alice_async, conversation)
    assert (stopped.status, stopped.stop_reason) == ("stopped", "user_stop")
    assert stopped.content.strip()
    # The request was closed, so the server stopped writing (as it says).
    await wait_until_async(
        lambda: real_model.output().count(SERVER_SAW_A_CLOSED_REQUEST) > disconnects,
        message="the model server went on writing the stopped answer",
    )
    # Everything streamed before the Stop is what was kept.
    frames = await read_stream(alice_async, stopped)
    assert texts(frames) == shown(stopped.content)


async def test_a_stopped_answer_continues_where_it_stopped(real_model, settings, alice_async, conversation):
    settings.CHAT_MAX_TOKENS = 1024
    stopped = await _stopped(alice_async, conversation)
    partial = stopped.content
    settings.CHAT_MAX_TOKENS = 64
    response = await alice_async.post(f"/c/{conversation.pk}/m/{stopped.pk}/continue/", headers=HTMX)
    assert response.status_code == 200
    page = response.content.decode()
    # Resume where the returned fragment says, as the page does.
    cursor = int(re.search(r"after=(\d+)", page).group(1))
    frames = await read_stream(alice_async, stopped, after=cursor)
    assert frames[-1].event == "done"
    assert {f.event for f in frames[:-1]} == {"text_delta"}
    done = await finished(stopped.pk, timeout=ANSWER_TIMEOUT)
    assert (done.status, done.stop_reason) in {("complete", ""), ("stopped", "token_limit")}, done.error
    assert done.content.startswith(partial) and len(done.content) > len(partial)
    # The stopped text on the page and the frames after it build the whole answer.
    body = LivePage.from_page(page, stopped.pk)
    for frame in frames:
        body.apply(frame)
    assert body.html() == live_page(done.content).html()
    offsets = [g.text_offset async for g in Generation.objects.filter(message=stopped).order_by("id")]
    assert offsets == [0, len(partial)]


async def test_the_environments_endpoint_lists_the_model(real_model):
    listed = [model.id async for model in get_client(environment_choice()).models.list()]
    assert MODEL_ALIAS in listed


async def test_staff_list_the_servers_models_in_the_admin_and_a_user_picks_one(
    real_model_server, admin_client, alice_async
):
    """The model list as staff see it: a provider pointed at the model server,
    saved in the admin, lists its model; offered under a label, it answers a
    prompt sent with it picked."""
    response = await sync_to_async(admin_client.post)(
        "/admin/chat/provider/add/",
        {
            "name": "Local llama.cpp",
            "base_url": real_model_server.base_url,
            "enabled": "on",
            "api_key": "",
            "api_key_env": "",
            "offered_models-TOTAL_FORMS": "0",
            "offered_models-INITIAL_FORMS": "0",
        },
        follow=True,
    )
    assert "Local llama.cpp: 1 models listed." in response.content.decode()
    provider = await Provider.objects.aget()
    assert provider.listed_models == [MODEL_ALIAS] and not provider.list_error

    offered = await OfferedModel.objects.acreate(
        provider=provider, model_id=MODEL_ALIAS, label="SmolLM2 (local)", context_length=2048, max_tokens=32
    )
    page = (await alice_async.get("/")).content.decode()
    assert f'<option value="{offered.pk}" selected>SmolLM2 (local)</option>' in page
    response = await alice_async.post("/c/new/", {"prompt": "Say hello.", "model": offered.pk}, headers=HTMX)
    assert response.status_code == 200
    answer = await Message.objects.filter(role="assistant").alatest("id")
    answer = await finished(answer.pk, timeout=ANSWER_TIMEOUT)
    assert (answer.model, answer.model_option_id) == (MODEL_ALIAS, offered.pk)
    assert answer.status in ("complete", "stopped") and answer.content.strip(), answer.error
