"""Real MCP servers for the tests: the stdio servers from PyPI (mcp-server-time,
mcp-server-git) and tests/mcp_http_server.py over streamable HTTP, registered
as staff would, checked by the product itself; and the processes they leave."""

import os
import socket
import subprocess
import sys
from pathlib import Path

from asgiref.sync import async_to_sync

from chat.mcp.discovery import check_server
from chat.mcp.secrets import encrypt_map
from chat.models import McpServer, McpTool
from tests.live import free_port
from tests.waiting import wait_until

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent
TOKEN = "s3cret-token-for-tests-0123456789"


def register(name: str, *, policy: str = McpTool.Policy.RUN, **fields) -> McpServer:
    """A server every user may use, checked (its tools listed), every tool set to `policy`."""
    server = McpServer.objects.create(name=name, everyone=True, **fields)
    async_to_sync(check_server)(server)
    server.refresh_from_db()
    McpTool.objects.filter(server=server).update(policy=policy)
    return server


def time_server(**fields) -> McpServer:
    return register("time", command=f"{BIN / 'mcp-server-time'} --local-timezone UTC", **fields)


def http_server(url: str, name: str = "web", **fields) -> McpServer:
    headers = encrypt_map({"Authorization": f"Bearer {TOKEN}"})
    return register(name, transport=McpServer.Transport.HTTP, url=url, headers_encrypted=headers, **fields)


class HttpMcpServer:
    """tests/mcp_http_server.py in a process of its own."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.mcp_http_server", str(self.port), TOKEN],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self._listening, timeout=20, message="the MCP HTTP server did not start")

    def _listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), 0.2).close()
        except OSError:
            return False
        return True

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def _ppid(pid: str) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name, in parentheses, may hold spaces: fields follow the last ")".
    return int(stat.rsplit(")", 1)[1].split()[1])


def stdio_server_processes(parent: int | None = None) -> list[int]:
    """The live mcp-server-* processes descending from `parent` (this process)."""
    parent = os.getpid() if parent is None else parent
    parents = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        ppid = _ppid(pid)
        if ppid is not None:
            parents[int(pid)] = ppid
    found = []
    for pid in parents:
        ancestor = parents.get(pid)
        while ancestor and ancestor != parent:
            ancestor = parents.get(ancestor)
        if ancestor != parent:
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if b"mcp-server-" in cmdline and state != "Z":
            found.append(pid)
    return found


def register_live(live, name: str, policy: str, fields: str) -> None:
    """As staff would, on a live server's database: the MCP server stored
    (`fields`, Python keyword arguments), checked by the product, its tools'
    policy set."""
    live.manage(
        "shell",
        "-c",
        "from asgiref.sync import async_to_sync\n"
        "from chat.mcp.discovery import check_server\n"
        "from chat.mcp.secrets import encrypt_map\n"
        "from chat.models import McpServer, McpTool\n"
        f"s = McpServer.objects.create(name={name!r}, everyone=True, {fields})\n"
        "async_to_sync(check_server)(s)\n"
        "assert s.state == 'ok', s.state_detail\n"
        f"McpTool.objects.filter(server=s).update(policy={policy!r})\n",
    )


# The events of an answer whose one tool call asked, was approved and ran.
APPROVED_CALL_EVENTS = ["tool_start", "tool_approval", "tool_approval", "tool_result", "text_delta", "done"]
