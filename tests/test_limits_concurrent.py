"""The per-user limits hold when a user's requests arrive all at once, spread
over two real workers: counting what the user has running and starting one more
is a single step per user, on PostgreSQL (a lock on the user's row) as on SQLite
(every transaction takes the write lock when it begins).

Personas: a user of each test's own sends every request (so no other test's
answers count against its limits).
"""

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from itertools import cycle

import pytest

from tests.live import Browserless, LiveServer
from tests.openai_stub import Stream
from tests.test_many_workers import database, shared_redis, start_worker  # noqa: F401 (fixtures)

pytestmark = pytest.mark.slow

BURST = 30
# Longer than a burst takes on a busy machine: an answer whose heartbeat waits
# behind the burst's writes still counts as running (it would not, were its
# process dead for that long, and that is not what these tests are about).
HEARTBEAT_STALE = {"CHAT_HEARTBEAT_STALE": "30"}


def _at_once(session: Browserless, workers: list[LiveServer], path: str, data: dict) -> list:
    """BURST posts of `data` to `path`, released together, alternating between the workers."""
    clients = [session.use(worker.url) for worker, _ in zip(cycle(workers), range(BURST))]
    start = threading.Barrier(BURST)

    def post(client: Browserless):
        start.wait()
        return client.post(path, data)

    with ThreadPoolExecutor(BURST) as pool:
        return list(pool.map(post, clients))


def _statuses(responses: list) -> dict[int, int]:
    return dict(Counter(r.status_code for r in responses))


def _count(worker: LiveServer, query: str, username: str) -> int:
    return worker.sql(query, username)[0][0]


STREAMING_ANSWERS = """
    SELECT count(*) FROM chat_message m JOIN chat_conversation c ON c.id = m.conversation_id
    JOIN auth_user u ON u.id = c.owner_id WHERE u.username = ? AND m.role = 'assistant' AND m.status = 'streaming'
"""
STARTED_GENERATIONS = (
    "SELECT count(*) FROM chat_generation g JOIN auth_user u ON u.id = g.owner_id WHERE u.username = ?"
)


def _assert_concurrent_answers_held_at_three(workers: list[LiveServer], stub) -> None:
    stub.default = Stream(["Thinking"], hang=True)
    username, password = workers[0].new_user()
    session = Browserless(workers[0].url, username, password)

    responses = _at_once(session, workers, "/c/new/", {"prompt": "Hello"})

    assert _statuses(responses) == {200: 3, 429: BURST - 3}
    refused = next(r for r in responses if r.status_code == 429)
    assert "(the limit is 3). Wait for one to finish or stop it." in refused.text
    assert _count(workers[0], STREAMING_ANSWERS, username) == 3
    assert _count(workers[0], STARTED_GENERATIONS, username) == 3


# PostgreSQL and Redis


@pytest.fixture
def two_workers(start_worker, shared_redis):  # noqa: F811 (fixtures)
    def start(env: dict[str, str]) -> list[LiveServer]:
        env = {**HEARTBEAT_STALE, **env}
        return [start_worker(shared_redis, env), start_worker(shared_redis, env)]

    return start


def test_concurrent_answers_hold_at_the_limit_across_workers_on_postgresql(two_workers, openai_stub_server):
    workers = two_workers({"CHAT_MAX_CONCURRENT_ANSWERS": "3"})
    _assert_concurrent_answers_held_at_three(workers, openai_stub_server)


def test_prompts_per_minute_hold_at_the_limit_across_workers_on_postgresql(two_workers, openai_stub_server):
    workers = two_workers({"CHAT_PROMPTS_PER_MINUTE": "5", "CHAT_MAX_CONCURRENT_ANSWERS": str(BURST)})
    openai_stub_server.default = Stream(["Hi"])
    username, password = workers[0].new_user()
    session = Browserless(workers[0].url, username, password)

    responses = _at_once(session, workers, "/c/new/", {"prompt": "Hello"})

    assert _statuses(responses) == {200: 5, 429: BURST - 5}
    refused = next(r for r in responses if r.status_code == 429)
    assert "in the last minute (the limit is 5). Wait a moment, then send again." in refused.text
    assert _count(workers[0], STARTED_GENERATIONS, username) == 5


def test_one_conversation_starts_one_answer_at_a_time_across_workers_on_postgresql(two_workers, openai_stub_server):
    workers = two_workers({"CHAT_MAX_CONCURRENT_ANSWERS": str(BURST)})
    openai_stub_server.script(Stream(["Hi"]))
    openai_stub_server.default = Stream(["Thinking"], hang=True)
    username, password = workers[0].new_user()
    session = Browserless(workers[0].url, username, password)
    conversation_id, first_answer = session.new_conversation("Hello")
    deadline = time.monotonic() + 10
    while workers[0].message(first_answer)["status"] == "streaming" and time.monotonic() < deadline:
        time.sleep(0.05)

    responses = _at_once(session, workers, f"/c/{conversation_id}/send/", {"prompt": "Again"})

    assert _statuses(responses) == {200: 1, 409: BURST - 1}
    refused = next(r for r in responses if r.status_code == 409)
    assert "An answer is still being written in this conversation." in refused.text
    assert _count(workers[0], STREAMING_ANSWERS, username) == 1


def test_a_group_quota_holds_across_two_members_on_two_workers_on_postgresql(two_workers, openai_stub_server):
    """Two members of one group, each posting on both workers at once: the
    group's quota of answers is shared, and its check is one step per group."""
    workers = two_workers({"CHAT_MAX_CONCURRENT_ANSWERS": str(BURST), "CHAT_PROMPTS_PER_MINUTE": str(BURST)})
    openai_stub_server.default = Stream(["Hi"])
    members = [workers[0].new_user() for _ in range(2)]
    group = f"team-{members[0][0]}"
    workers[0].manage(
        "shell",
        "-c",
        "from django.contrib.auth.models import Group, User\n"
        "from chat.models import Quota\n"
        f"g = Group.objects.create(name={group!r})\n"
        f"for name in {[name for name, _ in members]!r}: User.objects.get(username=name).groups.add(g)\n"
        "Quota.objects.create(group=g, period='day', max_answers=4)\n",
    )
    sessions = [Browserless(workers[0].url, name, password) for name, password in members]
    clients = [sessions[i % 2].use(workers[(i // 2) % 2].url) for i in range(BURST)]
    start = threading.Barrier(BURST)

    def post(client: Browserless):
        start.wait()
        return client.post("/c/new/", {"prompt": "Hello"})

    with ThreadPoolExecutor(BURST) as pool:
        responses = list(pool.map(post, clients))

    assert _statuses(responses) == {200: 4, 429: BURST - 4}
    refused = next(r for r in responses if r.status_code == 429)
    assert f"of the group “{group}”’s 4 answers today" in refused.text
    started = workers[0].sql(
        "SELECT count(*) FROM chat_usageentry WHERE kind = 'answer' AND username IN (?, ?)",
        members[0][0],
        members[1][0],
    )[0][0]
    assert started == 4


# SQLite: two workers on one database file


def test_concurrent_answers_hold_at_the_limit_across_workers_on_sqlite(live_server_factory, openai_stub_server):
    env = {"CHAT_MAX_CONCURRENT_ANSWERS": "3", **HEARTBEAT_STALE}
    workers = [live_server_factory(env), live_server_factory(env)]
    _assert_concurrent_answers_held_at_three(workers, openai_stub_server)
