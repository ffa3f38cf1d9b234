"""The tools of one answer behind one interface: the built-in ones and the MCP
tools the user is offered in the conversation, their schemas for the model, and
running a call by the name the model used."""

import json
import logging
from dataclasses import dataclass, field

import httpx2
from asgiref.sync import sync_to_async
from django.conf import settings
from mcp import MCPError
from mcp_types import CallToolResult

from chat.mcp.catalog import OfferedTool, offered_tools
from chat.mcp.results import result_text
from chat.mcp.sessions import Sessions
from chat.tools import ToolContext, ToolError, all_tools, get_tool

logger = logging.getLogger("chat.mcp")


@dataclass
class Toolbox:
    mcp: dict[str, OfferedTool] = field(default_factory=dict)
    sessions: Sessions | None = None

    @classmethod
    async def load(cls, context: ToolContext) -> "Toolbox":
        offered = await sync_to_async(offered_tools)(context.user_id, context.conversation_id)
        return cls({tool.name: tool for tool in offered}, Sessions(settings.CHAT_TOOL_TIMEOUT) if offered else None)

    def schemas(self) -> list[dict]:
        return [tool.schema() for tool in all_tools()] + [tool.schema() for tool in self.mcp.values()]

    def offered(self, name: str) -> OfferedTool | None:
        """The MCP tool of that name, or None (a built-in tool, or no tool)."""
        return self.mcp.get(name)

    async def call(self, name: str, arguments: str, context: ToolContext) -> str:
        """Run the call; the caller bounds its time (CHAT_TOOL_TIMEOUT) and its result."""
        offered = self.mcp.get(name)
        tool = get_tool(name)
        if offered is None and tool is None:
            raise ToolError(f"There is no tool named {name!r}.")
        args = _arguments(arguments)
        if offered is not None and self.sessions is not None:
            return result_text(await self._call_mcp(offered, args))
        return await tool.run(args, context)

    async def _call_mcp(self, offered: OfferedTool, args: dict) -> CallToolResult:
        try:
            return await self.sessions.call(offered.server, offered.tool, args)
        except MCPError as exc:
            # The server's own words: untrusted, bounded, shown escaped.
            raise ToolError(f"The server {offered.server.name} refused the call: {exc.error.message[:500]}") from None
        except (OSError, httpx2.TransportError, ExceptionGroup) as exc:
            logger.warning("MCP server %s unreachable: %r", offered.server.name, exc)
            raise ToolError(f"The server {offered.server.name} could not be reached.") from None

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
