"""The stream view: ordered frames with ids, replay from a cursor, and a
generation that runs apart from any viewer."""

import asyncio
import json
import logging

import pytest
from asgiref.sync import sync_to_async
from asgiref.testing import ApplicationCommunicator
from django.core.asgi import get_asgi_application
from django.utils import timezone

from chat import stream
from chat.eventlog import get_event_log
from chat.generation import recorder
from chat.models import Conversation, Generation, Message
from tests.conftest import finished, read_stream, send, shown, texts
from tests.openai_stub import Stream
from tests.sse_client import parse
from tests.test_tool_calls import calculator_round
from tests.waiting import wait_until_async

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast")]

PARTS = ["Hello", ", ", "world", "!\n\n", "- one\n", "- two"]


async def test_it_streams_frames_in_order_with_ids(stub, alice_async, conversation):
    stub.script(Stream(PARTS, delay=0.01))
    message = await send(alice_async, conversation, "Say hello")
    frames = await read_stream(alice_async, message)
    assert [f.event for f in frames] == ["text_delta"] * len(PARTS) + ["done"]
    assert [int(f.id) for f in frames] == list(range(1, len(PARTS) + 2))
    assert texts(frames) == shown("".join(PARTS))
    # The final frame carries the answer rendered as Markdown.
    assert "<li>one</li>" in frames[-1].data
    stored = await finished(message.pk)
    assert stored.status == "complete"
    assert stored.content == "".join(PARTS)
    assert stored.last_seq == len(PARTS) + 1
    assert (stored.prompt_tokens, stored.completion_tokens) == (10, 20)


async def test_it_sends_the_whole_conversation_to_the_model(stub, alice_async, conversation):
    stub.script(Stream(["First answer"]), Stream(["Second answer"]))
    first = await send(alice_async, conversation, "First question")
    await finished(first.pk)
    second = await send(alice_async, conversation, "Second question")
    await finished(second.pk)
    sent = [(m["role"], m.get("content")) for m in stub.requests[1]["messages"]]
    assert sent[1:] == [
        ("user", "First question"),
        ("assistant", "First answer"),
        ("user", "Second question"),
    ]
    assert sent[0][0] == "system"


async def test_it_resumes_after_a_cursor_exactly(stub, alice_async, conversation):
    stub.script(Stream(PARTS))
    message = await send(alice_async, conversation, "Say hello")
    await finished(message.pk)
    everything = await read_stream(alice_async, message)
    for cursor in (0, 2, 5):
        frames = await read_stream(alice_async, message, after=cursor)
        assert [f.id for f in frames] == [f.id for f in everything[cursor:]]
    by_header = await read_stream(alice_async, message, headers={"Last-Event-ID": "3"})
    assert [f.id for f in by_header] == [f.id for f in everything[3:]]


async def test_a_finished_answer_still_answers_with_its_terminal_event(stub, alice_async, conversation):
    stub.script(Stream(PARTS))
    message = await send(alice_async, conversation, "Say hello")
    await finished(message.pk)
    frames = await read_stream(alice_async, message, after=len(PARTS) + 1)
    assert [f.event for f in frames] == ["done"]


async def test_it_reads_from_the_database_when_the_log_has_nothing(stub, alice_async, conversation, settings):
    """After a restart the in-process log is empty, and a Redis log lets a
    finished answer go: the stored answer is the truth."""
    import secrets

    from chat.eventlog import get_event_log

    stub.script(Stream(PARTS))
    message = await send(alice_async, conversation, "Say hello")
    await finished(message.pk)
    # A log that never saw the answer: a fresh in-process log, as after a
    # restart, or a Redis log whose keys are gone (keys under another prefix).
    settings.CHAT_REDIS_PREFIX = f"chat:test-empty-{secrets.token_hex(4)}"
    get_event_log.cache_clear()
    try:
        frames = await read_stream(alice_async, message, after=0)
    finally:
        get_event_log.cache_clear()
    assert [f.event for f in frames] == ["done"]
    assert "Hello, world!" in frames[0].data


async def test_a_disconnecting_viewer_does_not_lose_text(stub, alice_async, conversation):
    stub.script(Stream(PARTS, delay=0.05))
    message = await send(alice_async, conversation, "Say hello")
    session = alice_async.cookies["sessionid"].value
    app = get_asgi_application()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": f"/c/{conversation.pk}/m/{message.pk}/stream/",
        "raw_path": f"/c/{conversation.pk}/m/{message.pk}/stream/".encode(),
        "query_string": b"",
        "headers": [(b"host", b"testserver"), (b"cookie", f"sessionid={session}".encode())],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }
    viewer = ApplicationCommunicator(app, scope)
    await viewer.send_input({"type": "http.request", "body": b"", "more_body": False})
    start = await viewer.receive_output(5)
    assert start["status"] == 200
    first = await viewer.receive_output(5)
    assert first["type"] == "http.response.body"
    await viewer.send_input({"type": "http.disconnect"})
    await viewer.wait(5)
    stored = await finished(message.pk)
    assert stored.status == "complete"
    assert stored.content == "".join(PARTS)


async def test_partial_text_reaches_the_database_while_streaming(stub, alice_async, conversation, settings):
    settings.CHAT_FLUSH_INTERVAL = 0.1
    stub.script(Stream(["tok "] * 40, delay=0.02))
    message = await send(alice_async, conversation, "Count")

    async def some_text_stored() -> Message | None:
        during = await Message.objects.aget(pk=message.pk)
        return during if during.content else None

    during = await wait_until_async(some_text_stored, message="no text reached the database")
    assert during.status == "streaming"
    assert 0 < len(during.content) < len("tok " * 40)
    assert during.content == "tok " * (len(during.content) // 4)
    stored = await finished(message.pk)
    assert stored.content == "tok " * 40
    assert await Generation.objects.filter(message=message).acount() == 1


@pytest.mark.parametrize("delay", [0.02, 0.002], ids=["50 tokens/s", "500 tokens/s"])
async def test_text_is_written_by_the_clock_never_by_the_token(
    delay, stub, alice_async, conversation, settings, caplog
):
    """Writes follow the answer's duration (one per flush interval at most, plus
    the final save), whatever the token rate."""
    settings.CHAT_FLUSH_INTERVAL = 0.1
    tokens = round(0.6 / delay)
    stub.script(Stream(["tok "] * tokens, delay=delay))
    caplog.set_level(logging.INFO, logger="chat.generation")
    message = await send(alice_async, conversation, "Count")
    stored = await finished(message.pk)
    assert stored.content == "tok " * tokens
    [line] = [
        json.loads(r.getMessage().removeprefix("answer "))
        for r in caplog.records
        if r.getMessage().startswith("answer ")
    ]
    # The final save is three statements (the message, its generation and its
    # usage entry). One write per token would be 30 or 300 here.
    flushes = line["db_writes"] - 3
    assert 1 <= flushes <= line["duration_s"] / settings.CHAT_FLUSH_INTERVAL + 1


async def test_answers_streaming_together_are_written_together(stub, alice, alice_async, settings, monkeypatch):
    """One transaction writes every streaming answer of the process that has
    unsaved text: the commits follow the clock, not the number of answers."""
    settings.CHAT_FLUSH_INTERVAL = 0.1
    batches: list[int] = []
    update_rows = recorder._update_rows

    def counted(rows):
        batches.append(len(rows))
        update_rows(rows)

    monkeypatch.setattr(recorder, "_update_rows", counted)
    tokens = 30
    stub.script(*(Stream(["tok "] * tokens, delay=0.02) for _ in range(3)))
    conversations = [await Conversation.objects.acreate(owner=alice, title=f"Chat {i}") for i in range(3)]
    messages = await asyncio.gather(*(send(alice_async, c, "Count") for c in conversations))
    stored = [await finished(m.pk) for m in messages]
    assert [m.content for m in stored] == ["tok " * tokens] * 3
    # ~0.6 s of tokens: about six batches for the three answers, not six each.
    assert max(batches) == 3
    assert len(batches) <= 0.6 / settings.CHAT_FLUSH_INTERVAL + 4


async def test_a_batch_that_arrives_late_never_takes_an_answer_back(alice, conversation):
    """The final save can overtake a batch already on its way to the database:
    the batch must not write older text over it."""
    message = await Message.objects.acreate(
        conversation=conversation, role="assistant", status="complete", content="The whole answer.", last_seq=9
    )
    await sync_to_async(recorder._update_rows)([["The whole", "", None, 4, None, timezone.now(), message.pk]])
    await message.arefresh_from_db()
    assert (message.content, message.last_seq) == ("The whole answer.", 9)


@pytest.mark.parametrize(
    "script",
    [
        [Stream(PARTS)],
        [Stream(["Let me compute. ", *calculator_round("6 * 7")], finish_reason="tool_calls"), Stream(["It is 42."])],
        [Stream(["Half an ans"], error="The model is overloaded")],
    ],
    ids=["text", "tool call", "error"],
)
async def test_the_last_frame_of_a_live_stream_is_the_stored_answer(script, stub, alice_async, conversation):
    """The generation renders the finished answer once, into its terminal event.
    It must be exactly what a stream that reads the answer back from the
    database ends with (a reconnect after the log forgot it, a restart)."""
    stub.script(*script)
    message = await send(alice_async, conversation, "Go")
    live = await read_stream(alice_async, message)
    stored = await finished(message.pk)
    [from_database] = parse(
        await stream._terminal_frame(await Message.objects.select_related("conversation").aget(pk=stored.pk))
    )
    assert (live[-1].event, live[-1].id, live[-1].data) == (from_database.event, from_database.id, from_database.data)
    assert live[-1].event == ("error" if stored.status == "error" else "done")
    # And the live frame is the generation's rendering, not the database fallback.
    [terminal] = [e for e in await get_event_log().read_after(stored.pk, 0, 0) if e.is_terminal]
    assert terminal.data["html"] == live[-1].data


async def test_a_long_backlog_arrives_with_its_text_joined_and_resumes_exactly(stub, alice_async, conversation):
    """A reader far behind gets fewer frames, never different text."""
    parts = [f"t{i} " for i in range(150)]
    stub.script(Stream(parts))
    message = await send(alice_async, conversation, "Long")
    stored = await finished(message.pk)
    frames = await read_stream(alice_async, message, after=0)
    assert [f.event for f in frames] == ["text_delta", "done"]
    assert stored.content == "".join(parts)
    assert texts(frames) == shown(stored.content)
    assert int(frames[0].id) == len(parts)
    # A short backlog keeps one frame per event.
    tail = await read_stream(alice_async, message, after=len(parts) - 3)
    assert [int(f.id) for f in tail] == [len(parts) - 2, len(parts) - 1, len(parts), len(parts) + 1]
