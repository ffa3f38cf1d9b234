"""One answer's sessions with MCP servers.

A server is reached when the answer first calls one of its tools, and its session
serves every later call of that answer (a stdio server is started once, not per
call); the session ends with the answer, whatever ends it (its end, Stop, a
shutdown), so no server process outlives the answer that started it. Sessions
are not kept across answers: a stdio server holds state (a working directory, a
login) of one user's answer, and a process kept alive between answers would be
one more thing a worker's shutdown or crash could leave behind.

The SDK's sessions are anyio task groups, entered and left by one task; the calls
of a round run in tasks of their own. So each session is held by a task of its
own, and calls use it from theirs."""

import asyncio
import logging
import subprocess
from contextlib import AsyncExitStack

import httpx2
from mcp import Client, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult

from chat.mcp.catalog import ServerConfig

logger = logging.getLogger("chat.mcp")

# The SDK's own wait for a reply is longer than the tool timeout the answer
# applies (CHAT_TOOL_TIMEOUT), so that one says what happened.
READ_MARGIN = 5
# How long a closing session may take before its task is cancelled (the SDK
# then still ends a stdio server: its shutdown is shielded and kills the tree).
CLOSE_TIMEOUT = 10


def client_for(config: ServerConfig, timeout: float) -> Client:
    if config.transport == "stdio":
        command, *args = config.command or ("",)
        # The SDK adds a minimal environment (PATH, HOME...): never the worker's secrets.
        server = StdioServerParameters(command=command, args=args, env=dict(config.environment))
        # The server's stderr is its own business; a worker's log is not its place.
        return Client(stdio_client(server, errlog=subprocess.DEVNULL), read_timeout_seconds=timeout)
    return Client(_Http(config.url, dict(config.headers), timeout), read_timeout_seconds=timeout)


class _Http:
    """The SDK's streamable HTTP transport on a client of its own that carries
    the server's headers, closed with it."""

    def __init__(self, url: str, headers: dict[str, str], timeout: float) -> None:
        self._url, self._headers, self._timeout = url, headers, timeout
        self._stack = AsyncExitStack()

    async def __aenter__(self):
        async with AsyncExitStack() as stack:
            http = await stack.enter_async_context(httpx2.AsyncClient(headers=self._headers, timeout=self._timeout))
            streams = await stack.enter_async_context(streamable_http_client(self._url, http_client=http))
            # Entered: closed by __aexit__ from now on (and by this block until then).
            self._stack = stack.pop_all()
        return streams

    async def __aexit__(self, *exc_info):
        return await self._stack.__aexit__(*exc_info)


class _Session:
    def __init__(self, config: ServerConfig, timeout: float) -> None:
        self.config = config
        loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[Client] = loop.create_future()
        self.closing = asyncio.Event()
        client = client_for(config, timeout + READ_MARGIN)
        self.task = loop.create_task(self._hold(client), name=f"mcp-{config.name}")

    async def _hold(self, client: Client) -> None:
        try:
            async with client:
                self.ready.set_result(client)
                await self.closing.wait()
        except BaseException as exc:
            if not self.ready.done():
                self.ready.set_exception(exc if isinstance(exc, Exception) else ConnectionError("cancelled"))
            if not isinstance(exc, Exception):
                raise
            logger.info("MCP session %s ended: %r", self.config.name, exc)

    async def close(self) -> None:
        self.closing.set()
        done, _ = await asyncio.wait({self.task}, timeout=CLOSE_TIMEOUT)
        if not done:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        if self.ready.done() and not self.ready.cancelled():
            # Retrieved, so that a failed connection is not reported again when collected.
            self.ready.exception()


class Sessions:
    """The sessions of one answer, one per server, opened on first use."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._sessions: dict[int, _Session] = {}

    async def call(self, config: ServerConfig, tool: str, arguments: dict) -> CallToolResult:
        session = self._sessions.get(config.id)
        if session is None:
            session = self._sessions[config.id] = _Session(config, self.timeout)
        client = await asyncio.shield(session.ready)
        return await client.call_tool(tool, arguments)

    async def close(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        await asyncio.gather(*(s.close() for s in sessions))
