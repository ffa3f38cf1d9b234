"""The tools of one answer, from every source behind one interface: the built-in
tools (chat/tools/) and the MCP tools the user is offered in the conversation
(chat/mcp/), each with staff's policy. Tools set to "never" are not offered; a
call of one that asks waits for the user (chat/mcp/approval.py)."""

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx2
from django.conf import settings
from mcp import MCPError

from chat.mcp.catalog import OfferedTool, offered_tools
from chat.mcp.results import result_text
from chat.mcp.sessions import Sessions
from chat.models import BuiltinTool, ToolPolicy
from chat.tools.registry import ToolContext, ToolError, all_tools

logger = logging.getLogger("chat.tools")


@dataclass(frozen=True)
class Offer:
    """A tool as this answer offers it."""

    schema: dict[str, Any]
    asks: bool
    # The MCP server it comes from; empty for a built-in tool.
    server: str
    run: Callable[[dict[str, Any], ToolContext], Awaitable[str]]


@dataclass
class Toolbox:
    offers: dict[str, Offer] = field(default_factory=dict)
    sessions: Sessions | None = None

    @classmethod
    def read(cls, context: ToolContext) -> "Toolbox":
        """The tools offered for `context`, read from the database (sync: the
        answer reads them in the same trip as its history)."""
        policies = dict(BuiltinTool.objects.values_list("name", "policy"))
        mcp = offered_tools(context.user_id, context.conversation_id)
        toolbox = cls(sessions=Sessions(settings.CHAT_TOOL_TIMEOUT) if mcp else None)
        for tool in all_tools():
            policy = policies.get(tool.name, ToolPolicy.RUN)
            if policy != ToolPolicy.NEVER:
                toolbox.offers[tool.name] = Offer(tool.schema(), policy == ToolPolicy.ASK, "", tool.run)
        for tool in mcp:
            toolbox.offers[tool.name] = Offer(tool.schema(), tool.asks, tool.server.name, toolbox._mcp_runner(tool))
        return toolbox

    def schemas(self) -> list[dict]:
        return [offer.schema for offer in self.offers.values()]

    def offer(self, name: str) -> Offer | None:
        return self.offers.get(name)

    async def call(self, name: str, arguments: str, context: ToolContext) -> str:
        """Run the call; the caller bounds its time (CHAT_TOOL_TIMEOUT) and its result."""
        offer = self.offers.get(name)
        if offer is None:
            raise ToolError(f"There is no tool named {name!r}.")
        return await offer.run(_arguments(arguments), context)

    def _mcp_runner(self, tool: OfferedTool) -> Callable[[dict[str, Any], ToolContext], Awaitable[str]]:
        async def run(args: dict[str, Any], context: ToolContext) -> str:
            try:
                return result_text(await self.sessions.call(tool.server, tool.tool, args))
            except MCPError as exc:
                # The server's own words: untrusted, bounded, shown escaped.
                raise ToolError(f"The server {tool.server.name} refused the call: {exc.error.message[:500]}") from None
            except (OSError, httpx2.TransportError, ExceptionGroup) as exc:
                logger.warning("MCP server %s unreachable: %r", tool.server.name, exc)
                raise ToolError(f"The server {tool.server.name} could not be reached.") from None

        return run

    async def close(self) -> None:
        """End the answer's MCP sessions (and their server processes)."""
        if self.sessions is not None:
            await self.sessions.close()


def _arguments(arguments: str) -> dict:
    try:
        args = json.loads(arguments or "{}")
    except json.JSONDecodeError:
        raise ToolError("The arguments were not valid JSON.") from None
    except RecursionError:
        raise ToolError("The arguments are nested too deeply.") from None
    if not isinstance(args, dict):
        raise ToolError("The arguments must be a JSON object.")
    return args
