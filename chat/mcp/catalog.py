"""Which MCP tools a user is offered in a conversation, read from the database
in one go when an answer starts.

A tool is offered when its server is enabled, shared with the user (everyone,
the user, or one of the user's groups), not switched off in the conversation,
the server listed it at its last check, and staff did not set it to "never"."""

import shlex
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Q, QuerySet

from chat.mcp.names import public_name
from chat.mcp.secrets import decrypt_map, resolved
from chat.models import McpServer, McpTool

# Providers bound a tool's description (OpenAI: 1024 characters).
MAX_DESCRIPTION = 1024


@dataclass(frozen=True)
class ServerConfig:
    """How to reach a server, read from its row: plain data a session can hold."""

    id: int
    name: str
    transport: str
    command: tuple[str, ...]
    url: str
    headers: tuple[tuple[str, str], ...]
    environment: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, server: McpServer) -> "ServerConfig":
        return cls(
            id=server.pk,
            name=server.name,
            transport=server.transport,
            command=tuple(shlex.split(server.command)) if server.transport == McpServer.Transport.STDIO else (),
            url=server.url,
            headers=tuple(resolved(decrypt_map(server.headers_encrypted)).items()),
            environment=tuple(resolved(decrypt_map(server.environment_encrypted)).items()),
        )


@dataclass(frozen=True)
class OfferedTool:
    name: str
    server: ServerConfig
    tool: str
    description: str
    parameters: dict[str, Any]
    asks: bool

    def schema(self) -> dict[str, Any]:
        """The entry for the `tools` parameter of chat completions."""
        description = f"[{self.server.name}] {self.description}".strip()[:MAX_DESCRIPTION]
        parameters = self.parameters if self.parameters.get("type") == "object" else {"type": "object"}
        return {
            "type": "function",
            "function": {"name": self.name, "description": description, "parameters": parameters},
        }


def servers_for(user_id: int) -> QuerySet[McpServer]:
    """The enabled servers shared with the user."""
    user = get_user_model().objects.filter(pk=user_id)
    shared = Q(everyone=True) | Q(users__in=user) | Q(groups__user__in=user)
    return McpServer.objects.filter(shared, enabled=True).distinct()


def offered_tools(user_id: int, conversation_id: int) -> list[OfferedTool]:
    # The user's servers first: where there are none, no query for their tools
    # (building it cost an answer's start a tenth of its CPU).
    servers = list(servers_for(user_id).exclude(off_in=conversation_id).values_list("pk", flat=True))
    if not servers:
        return []
    tools = (
        McpTool.objects.filter(server__in=servers, listed=True)
        .exclude(policy=McpTool.Policy.NEVER)
        .select_related("server")
    )
    configs: dict[int, ServerConfig] = {}
    offered = []
    for tool in tools:
        config = configs.get(tool.server_id) or configs.setdefault(tool.server_id, ServerConfig.of(tool.server))
        offered.append(
            OfferedTool(
                name=public_name(config.name, tool.name),
                server=config,
                tool=tool.name,
                description=tool.description,
                parameters=tool.input_schema if isinstance(tool.input_schema, dict) else {},
                asks=tool.policy == McpTool.Policy.ASK,
            )
        )
    return offered
