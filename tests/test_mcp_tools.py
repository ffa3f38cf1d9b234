"""MCP tools through the whole product, against real MCP servers: the stdio
servers mcp-server-time and mcp-server-git from PyPI, and a streamable HTTP
server written with the SDK (tests/mcp_http_server.py). The model is the real
openai client against the local stub, which scripts the model's tool calls."""

import json
import re
import secrets
import subprocess
import sys

import httpx2
import pytest
from asgiref.sync import sync_to_async

from chat.mcp.discovery import check_server
from chat.mcp.secrets import encrypt_map
from chat.models import McpServer, McpTool, Message, ToolCall
from chat.rendering import render_message
from tests.conftest import HTMX, finished, read_stream, send
from tests.mcp_http_server import HOSTILE
from tests.mcp_servers import (
    BIN,
    ROOT,
    TOKEN,
    http_server,
    register,
    stdio_server_processes,
    time_server,
)
from tests.openai_stub import Stream, ToolCallPart
from tests.waiting import wait_until_async

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast")]


def call(name: str, arguments: dict, call_id: str = "call_1", index: int = 0) -> list[ToolCallPart]:
    return [ToolCallPart(index, id=call_id, name=name), ToolCallPart(index, arguments=json.dumps(arguments))]


async def no_server_process_left() -> None:
    await wait_until_async(lambda: not stdio_server_processes(), message="an MCP server process outlived its answer")


async def test_a_stdio_server_tool_streams_a_card_and_its_result(stub, alice_async, conversation):
    server = await sync_to_async(time_server)()
    assert server.state == McpServer.State.OK
    stub.script(
        Stream(call("time__get_current_time", {"timezone": "Asia/Tokyo"}), finish_reason="tool_calls"),
        Stream(["It is evening in Tokyo."]),
    )
    message = await send(alice_async, conversation, "What time is it in Tokyo?")
    frames = await read_stream(alice_async, message)
    assert [f.event for f in frames] == ["tool_start", "tool_result", "text_delta", "done"]
    start, result = frames[0].data, frames[1].data
    assert 'class="tool-server">time<' in start and ">get_current_time<" in start and "Asia/Tokyo" in start
    assert "+09:00" in result and "done in" in result

    offered = {t["function"]["name"] for t in stub.requests[0]["tools"]}
    assert {"time__get_current_time", "time__convert_time", "calculator", "current_time"} <= offered
    assert (
        stub.requests[1]["messages"][-1]["role"] == "tool" and "+09:00" in stub.requests[1]["messages"][-1]["content"]
    )

    stored = await finished(message.pk)
    row = await ToolCall.objects.aget(message=message)
    assert (row.server, row.name, row.state) == ("time", "time__get_current_time", "ok")
    assert json.loads(row.result)["timezone"] == "Asia/Tokyo"
    # On reload: the same card, naming the server.
    page = await sync_to_async(render_message)(stored)
    assert 'class="tool-server">time<' in page and "+09:00" in page
    await no_server_process_left()


async def test_calls_of_one_answer_share_one_server_process(stub, alice_async, conversation):
    await sync_to_async(time_server)()
    stub.script(
        Stream(
            call("time__get_current_time", {"timezone": "Europe/Paris"}, "a", 0)
            + call("time__get_current_time", {"timezone": "America/Lima"}, "b", 1),
            finish_reason="tool_calls",
        ),
        Stream(call("time__get_current_time", {"timezone": "UTC"}, "c"), finish_reason="tool_calls"),
        Stream(["Three times."]),
    )
    message = await send(alice_async, conversation, "Times")
    seen: set[int] = set()

    async def watch() -> bool:
        seen.update(stdio_server_processes())
        return (await ToolCall.objects.filter(message=message, state="ok").acount()) == 3

    await wait_until_async(watch, interval=0.02, timeout=20)
    await finished(message.pk)
    assert len(seen) == 1
    await no_server_process_left()


async def test_the_git_server_reads_a_repository_the_test_made(stub, alice_async, conversation, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.email=t@example.com", "-c", "user.name=T"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "notes.txt").write_text("first\n")
    subprocess.run([*git, "add", "notes.txt"], check=True)
    subprocess.run([*git, "commit", "-qm", "Add the notes"], check=True)
    (repo / "notes.txt").write_text("first\nsecond\n")
    await sync_to_async(register)("git", command=f"{BIN / 'mcp-server-git'} --repository {repo}")
    stub.script(
        Stream(call("git__git_status", {"repo_path": str(repo)}, "s", 0), finish_reason="tool_calls"),
        Stream(call("git__git_log", {"repo_path": str(repo), "max_count": 5}, "l", 0), finish_reason="tool_calls"),
        Stream(["notes.txt changed."]),
    )
    message = await send(alice_async, conversation, "What changed?")
    frames = await read_stream(alice_async, message)
    results = [f.data for f in frames if f.event == "tool_result"]
    assert "modified:   notes.txt" in results[0]
    assert "Add the notes" in results[1]
    assert (await finished(message.pk)).status == "complete"
    await no_server_process_left()


async def test_http_server_tools_fail_time_out_and_stay_inert(stub, alice_async, conversation, web, settings):
    settings.CHAT_TOOL_TIMEOUT = 1
    server = await sync_to_async(http_server)(web.url)
    assert server.state == McpServer.State.OK, server.state_detail
    stub.script(
        Stream(
            call("web__fails", {}, "f", 0)
            + call("web__slow", {"seconds": 30}, "s", 1)
            + call("web__hostile", {}, "h", 2)
            + call("web__record", {"name": "<i>x</i>"}, "r", 3),
            finish_reason="tool_calls",
        ),
        Stream(["Done."]),
    )
    message = await send(alice_async, conversation, "Use the web tools")
    frames = await read_stream(alice_async, message)
    assert frames[-1].event == "done"
    rows = {r.call_id: r async for r in ToolCall.objects.filter(message=message)}
    assert rows["f"].state == "error" and "the backend said no" in rows["f"].error
    assert rows["s"].state == "error" and rows["s"].error == "The tool took longer than 1 seconds."
    assert rows["h"].state == "ok" and rows["h"].result == HOSTILE
    assert json.loads(rows["r"].result) == {"name": "<i>x</i>", "markup": "<b>not bold</b>"}
    # Untrusted output is text in every fragment and in the stored page.
    stored = await finished(message.pk)
    for html in [f.data for f in frames] + [await sync_to_async(render_message)(stored)]:
        assert "<script" not in html and "<img" not in html and "<b>not" not in html and "<i>x" not in html
        assert 'href="javascript' not in html
    assert "&lt;script&gt;" in await sync_to_async(render_message)(stored)
    # The model is told what happened to each call.
    told = {m["tool_call_id"]: m["content"] for m in stub.requests[1]["messages"] if m["role"] == "tool"}
    assert told["f"].startswith("Error: ") and told["h"] == HOSTILE


async def test_a_server_that_refuses_or_is_not_there_says_so_in_admin_terms(web):
    wrong = await McpServer.objects.acreate(name="wrong", transport="http", url=web.url)  # no token
    await check_server(wrong)
    assert wrong.state == McpServer.State.FAILED
    gone = await McpServer.objects.acreate(name="gone", transport="http", url="http://127.0.0.1:9/mcp")
    await check_server(gone)
    assert gone.state == McpServer.State.UNREACHABLE
    missing = await McpServer.objects.acreate(name="missing", command="/nonexistent/mcp-server")
    await check_server(missing)
    assert missing.state == McpServer.State.UNREACHABLE and "nonexistent" in missing.state_detail
    broken = await McpServer.objects.acreate(name="broken", command="python3 -c print(1)")
    await check_server(broken)
    assert broken.state == McpServer.State.FAILED
    assert not await McpTool.objects.filter(server__in=[wrong, gone, missing, broken]).aexists()
    assert TOKEN not in wrong.state_detail
    await no_server_process_left()


async def test_stop_ends_the_server_process_and_continue_does_not_call_the_tool_again(stub, alice_async, conversation):
    await sync_to_async(time_server)()
    # The reply after the tool never finishes by itself: the session with the
    # server is open when Stop comes.
    stub.script(
        Stream(call("time__get_current_time", {"timezone": "Asia/Tokyo"}), finish_reason="tool_calls"),
        Stream([f"w{i} " for i in range(60)], delay=0.03, hang=True),
    )
    message = await send(alice_async, conversation, "Time in Tokyo?")
    await wait_until_async(
        lambda: Message.objects.filter(pk=message.pk).exclude(content="").aexists(), message="no text after the tool"
    )
    assert len(stdio_server_processes()) == 1
    response = await alice_async.post(f"/c/{conversation.pk}/m/{message.pk}/stop/", headers=HTMX)
    assert response.status_code == 204
    assert (await finished(message.pk)).status == "stopped"
    await no_server_process_left()

    stub.script(Stream(["and that is the time."]))
    response = await alice_async.post(f"/c/{conversation.pk}/m/{message.pk}/continue/", headers=HTMX)
    assert response.status_code == 200
    done = await finished(message.pk)
    assert done.status == "complete"
    # The call that has a result is history, not a new call.
    assert await ToolCall.objects.filter(message=message).acount() == 1
    history = stub.requests[-1]["messages"]
    assert [m["tool_calls"][0]["function"]["name"] for m in history if m.get("tool_calls")] == [
        "time__get_current_time"
    ]
    assert "+09:00" in next(m["content"] for m in history if m["role"] == "tool")
    await no_server_process_left()


async def test_a_long_mcp_result_is_cut_like_a_built_in_ones(stub, alice_async, conversation, web, settings):
    settings.CHAT_MAX_TOOL_RESULT_CHARS = 100
    await sync_to_async(http_server)(web.url)
    stub.script(Stream(call("web__echo", {"text": "x" * 500}), finish_reason="tool_calls"), Stream(["Long."]))
    message = await send(alice_async, conversation, "Echo a lot")
    await finished(message.pk)
    row = await ToolCall.objects.aget(message=message)
    assert row.result.startswith("x" * 100 + "\n[Cut here: the result was 500 characters long")


async def test_a_stdio_server_gets_its_own_environment_never_the_workers(stub, alice_async, conversation, monkeypatch):
    monkeypatch.setenv("MCP_TEST_WORKER_VALUE", "relayed")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-the-workers-own")
    environment = encrypt_map({"MCP_TEST_VALUE": "from-admin", "MCP_RELAYED": "env:MCP_TEST_WORKER_VALUE"})
    command = f"{sys.executable} {ROOT / 'tests' / 'mcp_stdio_env_server.py'}"
    await sync_to_async(register)("env", command=command, environment_encrypted=environment)
    stub.script(
        Stream(
            call("env__variable", {"name": "MCP_TEST_VALUE"}, "a", 0)
            + call("env__variable", {"name": "MCP_RELAYED"}, "b", 1)
            + call("env__names", {}, "c", 2),
            finish_reason="tool_calls",
        ),
        Stream(["Seen."]),
    )
    message = await send(alice_async, conversation, "What environment?")
    await finished(message.pk)
    rows = {r.call_id: r async for r in ToolCall.objects.filter(message=message)}
    assert (rows["a"].result, rows["b"].result) == ("from-admin", "relayed")
    names = set(rows["c"].result.split())
    assert {"MCP_TEST_VALUE", "MCP_RELAYED", "PATH"} <= names
    assert not names & {"OPENAI_API_KEY", "DJANGO_SETTINGS_MODULE", "MCP_TEST_WORKER_VALUE", "SECRET_KEY"}


def test_staff_add_a_server_in_the_admin_of_a_running_server(live_server_factory, web):
    """Through daphne: the admin's check reaches the server from the staff's thread."""
    live = live_server_factory()
    # Names of this test's own: live servers share one database on PostgreSQL.
    staff, name = f"staff-{secrets.token_hex(4)}", f"web-{secrets.token_hex(4)}"
    live.manage(
        "shell",
        "-c",
        f"from django.contrib.auth.models import User\nUser.objects.create_superuser({staff!r}, password='staff-pw')",
    )
    http = httpx2.Client(base_url=live.url, timeout=30)
    http.get("/admin/login/")
    login = {"username": staff, "password": "staff-pw", "csrfmiddlewaretoken": http.cookies["csrftoken"]}
    assert http.post("/admin/login/", data=login, headers={"Referer": live.url + "/admin/login/"}).status_code == 302
    form = {
        "name": name,
        "transport": "http",
        "url": web.url,
        "headers": f"Authorization: Bearer {TOKEN}",
        "enabled": "on",
        "everyone": "on",
        "tools-TOTAL_FORMS": "0",
        "tools-INITIAL_FORMS": "0",
        "csrfmiddlewaretoken": http.cookies["csrftoken"],
    }
    response = http.post("/admin/chat/mcpserver/add/", data=form, headers={"Referer": live.url + "/admin/"})
    assert response.status_code == 302, response.text[:3000]
    page = http.get(response.headers["Location"]).text
    messages = re.findall(r"<li class=\"(?:success|warning|info|error)\">(.*?)</li>", page, re.S)
    assert f"Server {name}: connected, 5 tools." in messages and TOKEN not in page, messages
    assert live.sql("SELECT state FROM chat_mcpserver WHERE name = ?", name) == [("ok",)]
    assert {
        row[0]
        for row in live.sql(
            "SELECT t.name FROM chat_mcptool t JOIN chat_mcpserver s ON s.id = t.server_id WHERE s.name = ?", name
        )
    } == {
        "echo",
        "fails",
        "slow",
        "hostile",
        "record",
    }
