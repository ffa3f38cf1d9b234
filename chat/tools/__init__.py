"""Built-in tools. Importing this package registers them."""

from chat.tools import calculator, clock, search  # noqa: F401
from chat.tools.registry import Tool, ToolContext, ToolError, all_tools, get_tool

__all__ = ["Tool", "ToolContext", "ToolError", "all_tools", "get_tool"]
