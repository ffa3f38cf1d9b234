"""Several daphne processes behind one PostgreSQL database and one Redis: a
prompt posted to one worker streams from another, a reload on another resumes
exactly, Stop reaches the worker that generates, a crashed worker's answer is
continued elsewhere, and a Redis outage costs the live view, never the answer.

The module gets a PostgreSQL database of its own (created on the server that
DATABASE_URL or the local default names, dropped afterwards) and a private
redis-server, so concurrent test runs share nothing.
"""

import os
import secrets
import time
from urllib.parse import urlsplit, urlunsplit

import httpx2
import pytest

from tests.conftest import LIVE_USERS
from tests.live import Browserless, LiveServer
from tests.openai_stub import Stream
from tests.live import RedisServer
from tests.conftest import texts
from tests.test_live_resume import WORDS, _page_text_and_cursor, assert_interrupted_then_continued

pytestmark = pytest.mark.slow

POSTGRES_URL = os.environ.get("DATABASE_URL", "")
if not POSTGRES_URL.startswith(("postgres://", "postgresql://")):
    POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/test"

# Longer than a busy machine's pause between heartbeats, so that one worker
# never takes another's running answer for a dead one.
HEARTBEAT_STALE = 5


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    """A fresh, migrated PostgreSQL database with alice and bob."""
    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_URL} ({exc}); start it or set DATABASE_URL")
    name = f"chat_live_{secrets.token_hex(4)}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = _with_database(POSTGRES_URL, name)
        LiveServer(tmp_path_factory.mktemp("many-workers"), {"DATABASE_URL": url}).prepare(LIVE_USERS)
        yield url
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def _redis_server() -> RedisServer:
    if not RedisServer.available():
        pytest.skip("redis-server is not installed")
    return RedisServer().start()


@pytest.fixture(scope="module")
def shared_redis():
    server = _redis_server()
    yield server
    server.stop()


@pytest.fixture
def start_worker(tmp_path, database, openai_stub_server):
    """Start a daphne worker on the shared database and the given Redis."""
    openai_stub_server.reset()
    workers: list[LiveServer] = []
    prefix = f"chat-live-{secrets.token_hex(4)}"

    def start(redis: RedisServer) -> LiveServer:
        worker = LiveServer(
            tmp_path,
            {
                "OPENAI_BASE_URL": openai_stub_server.base_url,
                "OPENAI_API_KEY": "test",
                "CHAT_MODEL": "stub-model",
                "DATABASE_URL": database,
                "REDIS_URL": redis.url,
                "CHAT_REDIS_PREFIX": prefix,
                "CHAT_HEARTBEAT_STALE": str(HEARTBEAT_STALE),
            },
        )
        workers.append(worker)
        worker.start()
        # A fresh process answers its first request slowly (imports, templates):
        # not in the middle of a test's answer.
        httpx2.get(worker.url + "/accounts/login/", timeout=30).raise_for_status()
        return worker

    yield start
    for worker in workers:
        worker.stop()


@pytest.fixture
def workers(start_worker, shared_redis) -> tuple[LiveServer, LiveServer]:
    return start_worker(shared_redis), start_worker(shared_redis)


def test_a_prompt_sent_to_one_worker_streams_from_the_other(workers, openai_stub_server):
    first, second = workers
    openai_stub_server.script(Stream(WORDS[:30], delay=0.02))
    alice = Browserless(first.url, "alice", "alice-password")
    conversation_id, message_id = alice.new_conversation("Count for me")

    frames = list(alice.use(second.url).frames(conversation_id, message_id))
    assert [int(f.id) for f in frames] == list(range(1, 32))
    assert frames[-1].event == "done"
    assert texts(frames) == "".join(WORDS[:30])
    assert second.message(message_id)["content"] == "".join(WORDS[:30])


def test_a_reload_on_the_other_worker_resumes_exactly(workers, openai_stub_server):
    first, second = workers
    openai_stub_server.script(Stream(WORDS, delay=0.05))
    alice = Browserless(first.url, "alice", "alice-password")
    conversation_id, message_id = alice.new_conversation("Count for me")
    list(alice.frames(conversation_id, message_id, limit=20))
    time.sleep(0.3)  # let a batch of text reach the database

    elsewhere = alice.use(second.url)
    shown, cursor = _page_text_and_cursor(elsewhere.page(conversation_id), message_id)
    assert cursor > 0 and shown
    rest = list(elsewhere.frames(conversation_id, message_id, after=cursor))
    assert rest[-1].event == "done", rest[-1].data
    assert [int(f.id) for f in rest] == list(range(cursor + 1, len(WORDS) + 2))
    assert shown + texts(rest) == "".join(WORDS)
    assert second.message(message_id)["content"] == "".join(WORDS)


def test_stop_sent_to_the_other_worker_stops_the_generation(workers, openai_stub_server):
    first, second = workers
    openai_stub_server.script(Stream(WORDS, delay=0.1))
    alice = Browserless(first.url, "alice", "alice-password")
    conversation_id, message_id = alice.new_conversation("Count for me")
    frames = alice.frames(conversation_id, message_id)
    seen = [next(frames) for _ in range(5)]

    assert alice.use(second.url).post(f"/c/{conversation_id}/m/{message_id}/stop/").status_code == 204
    rest = list(frames)
    assert rest[-1].event == "done"
    assert "Stopped" in rest[-1].data
    assert openai_stub_server.disconnected.wait(5), "the first worker did not close the provider's stream"
    stored = first.message(message_id)
    assert stored["status"] == "stopped" and stored["stop_reason"] == "user_stop"
    assert stored["content"].startswith(texts(seen))
    assert 0 < len(stored["content"]) < len("".join(WORDS))


def test_a_crashed_workers_answer_is_continued_on_another(workers, openai_stub_server):
    first, second = workers
    openai_stub_server.script(Stream(WORDS, delay=0.05))
    alice = Browserless(first.url, "alice", "alice-password")
    conversation_id, message_id = alice.new_conversation("Count for me")
    list(alice.frames(conversation_id, message_id, limit=20))
    time.sleep(0.4)
    first.kill()
    partial = second.message(message_id)
    assert partial["status"] == "streaming" and partial["content"]

    time.sleep(HEARTBEAT_STALE + 0.5)
    elsewhere = alice.use(second.url)
    # Redis outlived the dead worker: its unsaved events must not be served.
    assert_interrupted_then_continued(elsewhere, second, conversation_id, message_id, partial, openai_stub_server)


def test_a_redis_outage_costs_the_live_view_not_the_answer(start_worker, openai_stub_server):
    redis = _redis_server()
    try:
        first, second = start_worker(redis), start_worker(redis)
        openai_stub_server.script(Stream(WORDS, delay=0.05))
        alice = Browserless(first.url, "alice", "alice-password")
        conversation_id, message_id = alice.new_conversation("Count for me")
        elsewhere = alice.use(second.url)
        frames = elsewhere.frames(conversation_id, message_id)
        seen = [next(frames) for _ in range(10)]

        redis.kill()
        # The viewer is told, rather than left waiting ...
        rest = list(frames)
        assert rest[-1].event == "error"
        assert "Lost the live connection" in rest[-1].data
        assert texts(seen + rest[:-1]) in "".join(WORDS)
        # ... and so is a viewer who comes while Redis is down.
        late = list(alice.frames(conversation_id, message_id, after=int(seen[-1].id)))
        assert [f.event for f in late] == ["error"]
        assert "Lost the live connection" in late[0].data
        # The generating worker carries on and stores the whole answer.
        deadline = time.monotonic() + 30
        while first.message(message_id)["status"] == "streaming" and time.monotonic() < deadline:
            time.sleep(0.2)
        stored = first.message(message_id)
        assert (stored["status"], stored["content"]) == ("complete", "".join(WORDS))

        redis.start()  # the same port, empty
        openai_stub_server.script(Stream(WORDS[:20], delay=0.02))
        conversation_id, message_id = alice.new_conversation("Count again")
        frames = list(elsewhere.frames(conversation_id, message_id))
        assert frames[-1].event == "done"
        assert [int(f.id) for f in frames] == list(range(1, 22))
        assert texts(frames) == "".join(WORDS[:20])
    finally:
        redis.stop()
