"""The tools a model may call: name, description, JSON schema of the arguments and
an async function that runs server-side."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ToolContext:
    """Who the tool runs for. Tools that read data must stay within this user's."""

    user_id: int
    conversation_id: int


class ToolError(Exception):
    """A failure the tool reports in words; the model and the user both see it."""


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    run: Callable[[dict[str, Any], ToolContext], Awaitable[str]]

    def schema(self) -> dict[str, Any]:
        """The entry for the `tools` parameter of chat completions."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }


_REGISTRY: dict[str, Tool] = {}


def register(tool: Tool) -> Tool:
    if tool.name in _REGISTRY:
        raise ValueError(f"A tool named {tool.name!r} is registered twice.")
    _REGISTRY[tool.name] = tool
    return tool


def get_tool(name: str) -> Tool | None:
    return _REGISTRY.get(name)


def all_tools() -> list[Tool]:
    return list(_REGISTRY.values())
