"""A stdio MCP server for the tests, written with the SDK's MCPServer: it tells
what environment it was started with.

    python tests/mcp_stdio_env_server.py"""

import os

from mcp.server.mcpserver import MCPServer

server = MCPServer("environment")


@server.tool(description="The value of an environment variable.")
def variable(name: str) -> str:
    return os.environ.get(name, "(unset)")


@server.tool(description="The names of all environment variables.")
def names() -> str:
    return " ".join(sorted(os.environ))


if __name__ == "__main__":
    server.run("stdio")
