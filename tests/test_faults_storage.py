"""Storage faults an answer must survive. For each: no stored character is lost
beyond the 250 ms bound, no answer is left `streaming` without a generation, the
user sees what happened, and the next prompt works.

- A row the database refuses (its text cannot be stored) fails its own answer and
  no other: a trigger stands in for such a row, since text that could not be
  stored (a NUL on PostgreSQL) is now made storable before it gets that far.
- A conversation deleted mid-answer: the generation ends quietly.
- PostgreSQL connections killed mid-answer (`pg_terminate_backend`): PostgreSQL
  runs only (DATABASE_URL=postgres://…).
- An SQLite database that refuses writes: mid-answer, from outside, the daphne
  process's file size limit (RLIMIT_FSIZE) is lowered to the size of the
  database's write-ahead log. The kernel then refuses every write that would
  reach past it with EFBIG, much as a full disk refuses with ENOSPC (SQLite says
  "disk I/O error" instead of "database or disk is full"; the product handles
  both alike). It is the nearest real thing: making the file read-only changes
  nothing for a connection that has it open (and nothing at all for root), and
  `PRAGMA query_only` or `max_page_count` would have to reach into the server's
  own connections. SQLite runs only: the PostgreSQL pass runs the one above.
"""

import asyncio
import logging
import os
import re
import resource
import secrets
import time
from pathlib import Path

import pytest
from django.db import connection

from chat import generation
from chat.generation.recorder import Recorder
from chat.models import Conversation, Message
from tests.conftest import finished, read_stream, send, texts
from tests.live import Browserless, LiveServer
from tests.openai_stub import Stream
from tests.test_live_resume import WORDS, assert_interrupted_then_continued
from tests.test_tool_calls import calculator_round

MARK = "REFUSED-ROW"
ON_POSTGRESQL = os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))


def _poll(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.02)
    return result


async def _apoll(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (result := await condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.02)
    return result


# A row the database refuses.


@pytest.fixture
def refusing_database(transactional_db):
    """The database refuses to store message text that contains MARK."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "CREATE FUNCTION refuse_marked_text() RETURNS trigger AS $$ BEGIN "
                f"IF NEW.content LIKE '%%{MARK}%%' THEN RAISE EXCEPTION 'refused' USING ERRCODE = 'check_violation'; "
                "END IF; RETURN NEW; END $$ LANGUAGE plpgsql"
            )
            cursor.execute(
                "CREATE TRIGGER refuse_marked_text BEFORE UPDATE ON chat_message "
                "FOR EACH ROW EXECUTE FUNCTION refuse_marked_text()"
            )
        else:
            cursor.execute(
                "CREATE TRIGGER refuse_marked_text BEFORE UPDATE ON chat_message "
                f"WHEN NEW.content LIKE '%{MARK}%' BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
    yield
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("DROP TRIGGER refuse_marked_text ON chat_message")
            cursor.execute("DROP FUNCTION refuse_marked_text")
        else:
            cursor.execute("DROP TRIGGER refuse_marked_text")


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("fast")
async def test_a_row_the_database_refuses_fails_only_its_answer(
    stub, alice, alice_async, conversation, refusing_database
):
    other = await Conversation.objects.acreate(owner=alice, title="Another chat")
    stub.script(
        Stream(["Kept. ", "Also kept. ", MARK, " never stored"], delay=0.5),
        Stream(WORDS[:50], delay=0.05),
    )
    refused = await send(alice_async, conversation, "Say the word")
    healthy = await send(alice_async, other, "Count")

    frames = await read_stream(alice_async, refused)
    assert frames[-1].event == "error"
    assert "could not be saved" in frames[-1].data
    stored = await finished(refused.pk)
    assert (stored.status, stored.stop_reason) == ("error", "internal_error")
    assert "could not be saved" in stored.error
    assert stored.content == "Kept. Also kept. "

    # The other answer, in the same batches until then, is still being saved.
    assert generation.running_task(healthy.pk) is not None
    then = len((await Message.objects.aget(pk=healthy.pk)).content)

    async def grew():
        return len((await Message.objects.aget(pk=healthy.pk)).content) > then

    await _apoll(grew, 1, "the other answer's text reaching the database")
    stored = await finished(healthy.pk)
    assert (stored.status, stored.content) == ("complete", "".join(WORDS[:50]))


@pytest.mark.django_db(transaction=True)
async def test_a_batch_with_a_row_that_cannot_be_stored_writes_every_other_row(conversation, settings):
    settings.CHAT_FLUSH_INTERVAL = 0.05
    good, bad = [
        await Message.objects.acreate(conversation=conversation, role="assistant", status="streaming") for _ in range(2)
    ]
    recorders = [Recorder(good), Recorder(bad)]
    for recorder in recorders:
        recorder.start()
    try:
        recorders[0].add_text("fine", 1)
        recorders[1].add_text("lone \ud800 surrogate", 1)  # no database encodes it in UTF-8
        failure = await asyncio.wait_for(asyncio.shield(recorders[1].refused), 5)
        assert isinstance(failure, UnicodeEncodeError)

        async def saved(text: str):
            return (await Message.objects.aget(pk=good.pk)).content == text

        await _apoll(lambda: saved("fine"), 1, "the good row written")
        recorders[0].add_text(" and more", 2)
        await _apoll(lambda: saved("fine and more"), 1, "later batches written")
        assert (await Message.objects.aget(pk=bad.pk)).content == ""
    finally:
        for recorder in recorders:
            recorder.stop()


# A conversation deleted mid-answer.


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("fast")
@pytest.mark.parametrize("with_tool", [False, True], ids=["text", "tool call"])
async def test_deleting_a_conversation_mid_answer_ends_its_generation_quietly(
    stub, alice_async, conversation, caplog, with_tool
):
    """As staff do in admin: the rows go, nobody asks the generation to stop."""
    caplog.set_level(logging.INFO, logger="chat")
    parts = ["Before. ", *(calculator_round("1 + 1") if with_tool else WORDS[:10])]
    stub.script(Stream(parts, delay=0.1, finish_reason="tool_calls" if with_tool else "stop"), Stream(["After."]))
    message = await send(alice_async, conversation, "Count")
    task = generation.running_task(message.pk)

    async def stored_some():
        return (await Message.objects.aget(pk=message.pk)).content

    await _apoll(stored_some, 2, "the first text stored")
    await Conversation.objects.filter(pk=conversation.pk).adelete()
    await asyncio.wait_for(asyncio.shield(task), 10)  # raises if the generation failed

    assert task.exception() is None
    noisy = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not noisy, [r.getMessage() for r in noisy]
    assert any("deleted" in r.getMessage() for r in caplog.records if r.name == "chat.generation")


# PostgreSQL connections killed.


@pytest.fixture
def postgres_live(live_server_factory) -> tuple[LiveServer, str]:
    if not ON_POSTGRESQL:
        pytest.skip("PostgreSQL only: run with DATABASE_URL=postgres://…")
    # Names the server's connections, so only they are killed.
    name = f"chat-faults-{secrets.token_hex(4)}"
    return live_server_factory({"PGAPPNAME": name}), name


def _kill_connections(server: LiveServer, name: str) -> int:
    return len(server.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = ?", name))


def _send(viewer: Browserless, conversation_id: int, prompt: str) -> int:
    """A prompt in an existing conversation; the id of the answer it started."""
    response = viewer.post(f"/c/{conversation_id}/send/", {"prompt": prompt})
    assert response.status_code == 200, response.text
    return int(re.findall(r'id="msg-(\d+)" data-status', response.text)[-1])


@pytest.mark.slow
def test_killed_postgresql_connections_mid_answer_lose_no_text(postgres_live, openai_stub_server):
    server, name = postgres_live
    alice = Browserless(server.url, "alice", "alice-password")
    openai_stub_server.script(Stream(["Hello."]))
    conversation_id, message_id = alice.new_conversation("Hello")
    assert list(alice.frames(conversation_id, message_id))[-1].event == "done"

    # A later prompt: its generation reads the history, so it holds a
    # connection of its own, killed with the others.
    openai_stub_server.script(Stream(WORDS, delay=0.05))
    message_id = _send(alice, conversation_id, "Count for me")
    frames = alice.frames(conversation_id, message_id)
    seen = [next(frames) for _ in range(20)]
    assert _kill_connections(server, name) >= 2
    seen += [next(frames) for _ in range(10)]
    shown = texts(seen)
    # What was shown is stored within the bound, on new connections.
    _poll(lambda: server.message(message_id)["content"].startswith(shown), 1, "the text shown reaching the database")

    rest = list(frames)
    assert rest[-1].event == "done", rest[-1].data
    assert texts(seen + rest) == "".join(WORDS)
    stored = server.message(message_id)
    assert (stored["status"], stored["content"]) == ("complete", "".join(WORDS))

    # Every connection killed again between answers: the next prompt works.
    assert _kill_connections(server, name) >= 1
    openai_stub_server.script(Stream(WORDS[:10]))
    message_id = _send(alice, conversation_id, "Count again")
    frames = list(alice.frames(conversation_id, message_id))
    assert frames[-1].event == "done" and texts(frames) == "".join(WORDS[:10])
    assert server.message(message_id)["status"] == "complete"
    assert "never retrieved" not in server.log_path.read_text()


@pytest.mark.slow
def test_a_stream_waiting_when_its_connection_is_killed_ends_and_its_reconnect_follows_the_answer(
    postgres_live, openai_stub_server
):
    """A stream that polls the database when its connection dies ends its
    response (it used to leave the viewer hanging); the browser's reconnect from
    its cursor gets a new connection and follows the answer to its end."""
    server, name = postgres_live
    alice = Browserless(server.url, "alice", "alice-password")
    openai_stub_server.script(Stream(["Hello. "], hang=True))
    conversation_id, message_id = alice.new_conversation("Take your time")
    frames = alice.frames(conversation_id, message_id)
    first = next(frames)
    assert first.event == "text_delta"
    assert _kill_connections(server, name) >= 1
    started = time.monotonic()
    rest = list(frames)
    assert time.monotonic() - started < 10
    assert [f.event for f in rest] == []  # ended, without a terminal frame: the browser reconnects

    again = alice.frames(conversation_id, message_id, after=int(first.id))
    assert alice.post(f"/c/{conversation_id}/m/{message_id}/stop/").status_code == 204
    ended = list(again)
    assert ended[-1].event == "done"
    assert "Hello." in ended[-1].data
    assert server.message(message_id)["status"] == "stopped"


# An SQLite database that refuses writes.


@pytest.fixture
def sqlite_live(live_server_factory) -> LiveServer:
    if os.environ.get("DATABASE_URL"):
        pytest.skip("SQLite only: the PostgreSQL pass kills connections instead")
    return live_server_factory()


def _refuse_writes(server: LiveServer) -> None:
    """No file of the server process may grow past the database's write-ahead log."""
    limit = Path(server.env["SQLITE_PATH"] + "-wal").stat().st_size
    resource.prlimit(server.process.pid, resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))


def _allow_writes(server: LiveServer) -> None:
    resource.prlimit(server.process.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))


def _stored_some(server: LiveServer, message_id: int) -> dict:
    return _poll(lambda: (m := server.message(message_id))["content"] and m, 2, "the first text stored")


@pytest.mark.slow
def test_an_sqlite_database_that_refuses_writes_for_a_while_loses_no_text(sqlite_live, openai_stub_server):
    server = sqlite_live
    openai_stub_server.script(Stream(WORDS, delay=0.05))
    alice = Browserless(server.url, "alice", "alice-password")
    conversation_id, message_id = alice.new_conversation("Count for me")
    frames = alice.frames(conversation_id, message_id)
    seen = [next(frames) for _ in range(10)]
    _stored_some(server, message_id)

    _refuse_writes(server)
    try:
        seen += [next(frames) for _ in range(20)]
        assert len(server.message(message_id)["content"]) < len(texts(seen)), "writes were not refused"
    finally:
        _allow_writes(server)
    rest = list(frames)
    assert rest[-1].event == "done", rest[-1].data
    stored = server.message(message_id)
    assert (stored["status"], stored["content"]) == ("complete", "".join(WORDS))


@pytest.mark.slow
def test_an_sqlite_database_that_refuses_writes_past_an_answers_end(sqlite_live, openai_stub_server):
    server = sqlite_live
    openai_stub_server.script(Stream(WORDS, delay=0.02))
    alice = Browserless(server.url, "alice", "alice-password")
    conversation_id, message_id = alice.new_conversation("Count for me")
    frames = alice.frames(conversation_id, message_id)
    [next(frames) for _ in range(20)]
    _stored_some(server, message_id)

    _refuse_writes(server)
    try:
        rest = list(frames)
        # The viewer is told, though nothing could be written ...
        assert rest[-1].event == "error", rest[-1].data
        assert "could not be saved" in rest[-1].data
        assert server.message(message_id)["status"] == "streaming"
    finally:
        _allow_writes(server)
    # ... and once the database writes again, the answer counts as interrupted
    # with what was stored, and is continued; then the next prompt works.
    partial = server.message(message_id)
    assert_interrupted_then_continued(alice, server, conversation_id, message_id, partial, openai_stub_server)
    openai_stub_server.script(Stream(WORDS[:10]))
    conversation_id, message_id = alice.new_conversation("Count again")
    frames = list(alice.frames(conversation_id, message_id))
    assert frames[-1].event == "done" and texts(frames) == "".join(WORDS[:10])
    assert "never retrieved" not in server.log_path.read_text()
