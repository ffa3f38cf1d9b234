"""MCP tools with several daphne workers (PostgreSQL and Redis): a call that asks
first is approved on the other worker than the one generating; and a worker's
shutdown leaves no stdio server behind."""

import time
from pathlib import Path

import pytest

from chat.mcp.approval import DECISION_POLL
from tests import test_many_workers as many_workers
from tests.live import Browserless
from tests.mcp_servers import (
    APPROVED_CALL_EVENTS,
    BIN,
    TOKEN,
    register_live,
    stdio_server_processes,
)
from tests.openai_stub import Stream, ToolCallPart
from tests.test_live_resume import WORDS
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

database = many_workers.database
start_worker = many_workers.start_worker
shared_redis = many_workers.shared_redis
workers = many_workers.workers


def call(name: str, arguments: str) -> Stream:
    return Stream(
        [ToolCallPart(0, id="call_1", name=name), ToolCallPart(0, arguments=arguments)], finish_reason="tool_calls"
    )


def test_a_call_generated_on_one_worker_is_approved_on_the_other(workers, web, openai_stub_server):
    first, second = workers
    headers = f"encrypt_map({{'Authorization': 'Bearer {TOKEN}'}})"
    register_live(first, "web", "ask", f"transport='http', url={web.url!r}, headers_encrypted={headers}")
    openai_stub_server.script(call("web__echo", '{"text": "from the other worker"}'), Stream(["Echoed."]))
    alice = Browserless(first.url, "alice", "alice-password")
    conversation_id, message_id = alice.new_conversation("Echo it")
    pending = wait_until(
        lambda: first.sql("SELECT id FROM chat_toolcall WHERE message_id = ? AND approval = 'pending'", message_id),
        message="the call did not wait for approval",
    )
    call_id = pending[0][0]
    decided = time.monotonic()
    assert alice.use(second.url).post(f"/tools/{call_id}/decide/", {"decision": "approve"}).status_code == 204
    wait_until(lambda: first.message(message_id)["status"] == "complete", timeout=20)
    # Woken through Redis: the database alone is read only every DECISION_POLL seconds.
    assert time.monotonic() - decided < DECISION_POLL
    row = first.sql("SELECT approval, state, result FROM chat_toolcall WHERE id = ?", call_id)[0]
    assert row == ("approved", "ok", "from the other worker")
    frames = list(alice.use(second.url).frames(conversation_id, message_id))
    assert [f.event for f in frames] == APPROVED_CALL_EVENTS


def test_a_worker_shutdown_leaves_no_stdio_server_behind(start_worker, shared_redis, openai_stub_server):
    worker = start_worker(shared_redis)
    register_live(worker, "clock", "run", f"command={str(BIN / 'mcp-server-time') + ' --local-timezone UTC'!r}")
    # The model's second reply takes its time: the answer, and its session with
    # the server, are still open when the worker is told to stop.
    openai_stub_server.script(call("clock__get_current_time", '{"timezone": "UTC"}'), Stream(WORDS, delay=0.5))
    alice = Browserless(worker.url, "alice", "alice-password")
    _, message_id = alice.new_conversation("What time is it?")
    wait_until(
        lambda: worker.sql("SELECT 1 FROM chat_toolcall WHERE message_id = ? AND state = 'ok'", message_id),
        timeout=20,
        message="the tool did not run",
    )
    servers = stdio_server_processes(worker.process.pid)
    assert len(servers) == 1
    worker.stop()
    wait_until(lambda: not [pid for pid in servers if alive(pid)], message="a stdio server outlived its worker")


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
