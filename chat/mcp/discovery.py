"""Checking a server: connect, list its tools, store them with the server's
state, which the admin shows. A server that cannot be started or reached is
"unreachable"; one that answers but fails the handshake or the listing is
"failed"; either way with the reason, and its tools are no longer offered."""

import asyncio
import logging

import httpx2
from asgiref.sync import sync_to_async
from django.conf import settings
from django.utils import timezone

from chat.mcp.catalog import ServerConfig
from chat.mcp.sessions import client_for
from chat.models import McpServer, McpTool
from chat.storable import storable

logger = logging.getLogger("chat.mcp")

# A listing that never ends (a paginating server's bug) stops here.
MAX_PAGES = 20


async def check_server(server: McpServer) -> None:
    """Connect, list the tools, store the outcome on `server` and its tools."""
    config = await sync_to_async(ServerConfig.of)(server)
    try:
        async with asyncio.timeout(settings.CHAT_MCP_CHECK_TIMEOUT):
            tools = await _list_tools(config)
    except BaseException as exc:
        if not isinstance(exc, Exception):
            raise
        state, detail = _failure(exc)
        logger.info("MCP server %s check failed: %s", server.name, detail)
        await sync_to_async(_store_failure)(server, state, detail)
        return
    await sync_to_async(_store_tools)(server, tools)


async def _list_tools(config: ServerConfig) -> list:
    if config.transport == McpServer.Transport.STDIO and not config.command:
        raise ValueError("No command is set.")
    if config.transport == McpServer.Transport.HTTP and not config.url:
        raise ValueError("No URL is set.")
    tools, cursor = [], None
    async with client_for(config, settings.CHAT_MCP_CHECK_TIMEOUT) as client:
        for _ in range(MAX_PAGES):
            page = await client.list_tools(cursor=cursor)
            tools.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
    return tools


def _leaf(exc: BaseException) -> BaseException:
    """The first real failure inside the task groups' exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _failure(exc: BaseException) -> tuple[str, str]:
    leaf = _leaf(exc)
    if isinstance(leaf, TimeoutError):
        return McpServer.State.UNREACHABLE, f"No answer within {settings.CHAT_MCP_CHECK_TIMEOUT:g} seconds."
    if isinstance(leaf, (OSError, httpx2.TransportError)):
        return McpServer.State.UNREACHABLE, f"{type(leaf).__name__}: {leaf}"
    return McpServer.State.FAILED, f"{type(leaf).__name__}: {leaf}" if str(leaf) else type(leaf).__name__


def _store_failure(server: McpServer, state: str, detail: str) -> None:
    server.state, server.state_detail, server.checked_at = state, storable(detail[:2000]), timezone.now()
    server.save(update_fields=["state", "state_detail", "checked_at"])
    McpTool.objects.filter(server=server).update(listed=False)


def _store_tools(server: McpServer, tools: list) -> None:
    names = set()
    for tool in tools:
        name = storable(tool.name[:200])
        names.add(name)
        McpTool.objects.update_or_create(
            server=server,
            name=name,
            defaults={
                "description": storable(tool.description or "")[:4000],
                "input_schema": tool.input_schema or {},
                "listed": True,
            },
        )
    McpTool.objects.filter(server=server).exclude(name__in=names).update(listed=False)
    server.state, server.state_detail, server.checked_at = McpServer.State.OK, f"{len(names)} tools", timezone.now()
    server.save(update_fields=["state", "state_detail", "checked_at"])
