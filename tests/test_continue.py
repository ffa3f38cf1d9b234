"""Continue on every kind of cut-short answer appends to the same message, with
the seam recorded; a stale answer is shown as interrupted, never as a spinner."""

import asyncio
import re
from datetime import timedelta

import pytest
from django.utils import timezone

from chat.models import Generation, Message
from tests.conftest import HTMX, finished, live_page, read_stream, send
from tests.live_page import LivePage
from tests.openai_stub import Status, Stream
from tests.waiting import wait_until_async

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast")]

SLOW = [f"w{i} " for i in range(60)]
REST = "and the rest, **in bold**, with words enough to move a cut.\n\n- a list\n- of two\n\nDone."


async def _continue(client, message: Message, reply: str, stub) -> Message:
    stub.script(Stream([reply]))
    response = await client.post(f"/c/{message.conversation_id}/m/{message.pk}/continue/", headers=HTMX)
    assert response.status_code == 200
    page = response.content.decode()
    assert 'data-status="streaming"' in page
    # Resume where the returned fragment says, as the page does.
    cursor = int(re.search(r"after=(\d+)", page).group(1))
    frames = await read_stream(client, message, after=cursor)
    # The fragment's body (the earlier text, rendered) and the frames after it
    # build the body of the whole text: the generation went on from the same state.
    body = LivePage.from_page(page, message.pk)
    for frame in frames:
        body.apply(frame)
    done = await finished(message.pk)
    assert body.html() == live_page(done.content).html()
    return done


async def _some_text_stored(message: Message, timeout: float = 10) -> None:
    """Wait until part of the answer reached the database (never a fixed sleep:
    the machine may be slow)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not (await Message.objects.aget(pk=message.pk)).content:
        assert asyncio.get_running_loop().time() < deadline, "no text was stored"
        await asyncio.sleep(0.02)


async def _stopped(client, conversation, stub) -> Message:
    # It never finishes by itself (hang): on a busy machine the Stop may come
    # after the last part, and only a stream still open can show it was closed.
    stub.script(Stream(SLOW, delay=0.03, hang=True))
    message = await send(client, conversation, "Count")
    await _some_text_stored(message)
    response = await client.post(f"/c/{conversation.pk}/m/{message.pk}/stop/", headers=HTMX)
    assert response.status_code == 204
    frames = await read_stream(client, message)
    assert frames[-1].event == "done" and "Stopped" in frames[-1].data
    assert stub.disconnected.wait(5), "Stop did not close the provider's stream"
    return await finished(message.pk)


async def _errored(client, conversation, stub) -> Message:
    stub.script(Stream(SLOW[:5], drop=True))
    message = await send(client, conversation, "Count")
    return await finished(message.pk)


async def _limited(client, conversation, stub) -> Message:
    stub.script(Stream(SLOW[:5], finish_reason="length"))
    message = await send(client, conversation, "Count")
    return await finished(message.pk)


async def _interrupted(client, conversation, stub) -> Message:
    """What a crashed process leaves behind: streaming, with a stale heartbeat."""
    long_ago = timezone.now() - timedelta(minutes=5)
    await Message.objects.acreate(conversation=conversation, role="user", content="Count")
    message = await Message.objects.acreate(
        conversation=conversation,
        role="assistant",
        status="streaming",
        content="w0 w1 ",
        last_seq=2,
        heartbeat_at=long_ago,
        created_at=long_ago,
    )
    await Generation.objects.acreate(message=message, owner_id=conversation.owner_id)
    page = (await client.get(f"/c/{conversation.pk}/")).content.decode()
    assert "Interrupted" in page and "Continue" in page
    return await Message.objects.aget(pk=message.pk)


KINDS = {
    "stopped": (_stopped, ("stopped", "user_stop")),
    "error": (_errored, ("error", "provider_error")),
    "token limit": (_limited, ("stopped", "token_limit")),
    "interrupted": (_interrupted, ("interrupted", "server_restart")),
}


@pytest.mark.parametrize("kind", KINDS, ids=list(KINDS))
async def test_continue_appends_to_the_same_message(kind, stub, alice_async, conversation):
    cut_short, expected = KINDS[kind]
    message = await cut_short(alice_async, conversation, stub)
    assert (message.status, message.stop_reason) == expected
    partial = message.content
    assert partial
    done = await _continue(alice_async, message, REST, stub)
    assert done.content == partial + REST
    assert done.status == "complete" and done.stop_reason == ""
    offsets = [g.text_offset async for g in Generation.objects.filter(message=message).order_by("id")]
    assert offsets[-1] == len(partial)
    assert await Message.objects.filter(conversation=conversation, role="assistant").acount() == 1


async def test_a_stale_answers_stream_ends_promptly_with_an_error(alice_async, conversation):
    long_ago = timezone.now() - timedelta(minutes=5)
    message = await Message.objects.acreate(
        conversation=conversation,
        role="assistant",
        status="streaming",
        content="partial",
        last_seq=1,
        heartbeat_at=long_ago,
    )
    frames = await asyncio.wait_for(read_stream(alice_async, message, after=1), 5)
    assert [f.event for f in frames] == ["error"]
    assert "server stopped" in frames[0].data and "partial" in frames[0].data
    assert int(frames[0].id) == 2


async def test_an_unwatched_answer_is_paused_and_can_be_continued(stub, alice_async, conversation, settings):
    settings.CHAT_UNWATCHED_LIMIT = 1.0
    stub.script(Stream(SLOW, delay=0.1))
    message = await send(alice_async, conversation, "Count")
    stored = await finished(message.pk)
    assert (stored.status, stored.stop_reason) == ("interrupted", "unwatched")
    assert 0 < len(stored.content) < len("".join(SLOW))
    assert stub.disconnected.wait(5)
    settings.CHAT_UNWATCHED_LIMIT = 600
    done = await _continue(alice_async, stored, "the end.", stub)
    assert done.content == stored.content + "the end."


async def test_stop_after_the_answer_finished_is_harmless(stub, alice_async, conversation):
    stub.script(Stream(["All done."]))
    message = await send(alice_async, conversation, "Hi")
    await finished(message.pk)
    response = await alice_async.post(f"/c/{conversation.pk}/m/{message.pk}/stop/", headers=HTMX)
    assert response.status_code == 204
    stored = await Message.objects.aget(pk=message.pk)
    assert (stored.status, stored.content) == ("complete", "All done.")
    # A later answer in the same conversation is not stopped by the old request.
    stub.script(Stream(["Second."]))
    second = await send(alice_async, conversation, "Again")
    assert (await finished(second.pk)).status == "complete"


async def test_an_answer_followed_by_a_prompt_can_be_retried_but_not_continued(stub, alice_async, conversation):
    stub.script(Stream(["One"], finish_reason="length"), Stream(["Two"]), Stream(["One again"]))
    first = await send(alice_async, conversation, "First")
    await finished(first.pk)
    second = await send(alice_async, conversation, "Second")
    await finished(second.pk)
    response = await alice_async.post(f"/c/{conversation.pk}/m/{first.pk}/continue/", headers=HTMX)
    assert response.status_code == 409
    assert "Only the last answer of a branch can be continued." in response.content.decode()
    # Retry makes a new answer beside it (chat.tree), and leaves it as it was.
    response = await alice_async.post(f"/c/{conversation.pk}/m/{first.pk}/retry/", headers=HTMX)
    assert response.status_code == 200
    again = await Message.objects.filter(conversation=conversation).alatest("id")
    assert (await finished(again.pk)).content == "One again"
    assert again.parent_id == first.parent_id
    assert (await Message.objects.aget(pk=first.pk)).content == "One"


async def test_a_double_continue_starts_one_generation(stub, alice_async, conversation):
    stub.script(Stream(["Cut"], finish_reason="length"), Stream([" short."], delay=0.05), Status(500))
    message = await send(alice_async, conversation, "Go")
    await finished(message.pk)
    url = f"/c/{conversation.pk}/m/{message.pk}/continue/"
    first, second = await asyncio.gather(alice_async.post(url, headers=HTMX), alice_async.post(url, headers=HTMX))
    assert sorted([first.status_code, second.status_code]) == [200, 409]
    assert (await finished(message.pk)).content == "Cut short."


async def test_retry_clicked_repeatedly_starts_one_generation(stub, alice_async, conversation):
    # The new answer is still being written when the other clicks get their turn
    # (once it has ended, a Retry of the same answer is a new alternative again).
    stub.script(Stream(["First."]), Stream(["Second."], hang=True), *[Status(500)] * 4)
    message = await send(alice_async, conversation, "Go")
    await finished(message.pk)
    url = f"/c/{conversation.pk}/m/{message.pk}/retry/"
    responses = await asyncio.gather(*[alice_async.post(url, headers=HTMX) for _ in range(5)])
    assert sorted(r.status_code for r in responses) == [200, 409, 409, 409, 409]
    answers = [m async for m in Message.objects.filter(conversation=conversation, role="assistant")]
    assert len(answers) == 2
    await alice_async.post(f"/c/{conversation.pk}/m/{answers[1].pk}/stop/", headers=HTMX)
    assert (await finished(answers[1].pk)).status == "stopped"
    assert len(stub.requests) == 2


async def test_continue_and_retry_at_once_start_one_generation(stub, alice_async, conversation):
    stub.script(Stream(["Cut"], finish_reason="length"), Stream([" short."], hang=True), Status(500))
    message = await send(alice_async, conversation, "Go")
    await finished(message.pk)
    base = f"/c/{conversation.pk}/m/{message.pk}"
    responses = await asyncio.gather(
        alice_async.post(f"{base}/continue/", headers=HTMX), alice_async.post(f"{base}/retry/", headers=HTMX)
    )
    assert sorted(r.status_code for r in responses) == [200, 409]
    answers = [m async for m in Message.objects.filter(conversation=conversation, role="assistant")]
    # The Continue's (the same message), or the Retry's beside the first.
    started = answers[-1] if len(answers) == 2 else message
    # Stopped once it asked the model (before that, a Stop would end it with no request).
    await wait_until_async(lambda: len(stub.requests) == 2, message="the generation did not ask the model")
    await alice_async.post(f"/c/{conversation.pk}/m/{started.pk}/stop/", headers=HTMX)
    assert (await finished(started.pk)).status == "stopped"
    assert len(stub.requests) == 2
