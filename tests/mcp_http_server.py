"""A small streamable HTTP MCP server for the tests, written with the SDK's
MCPServer (FastMCP before mcp 2): a tool that answers, one that fails, one that
is slow, one that returns hostile markup, and one that reports who called it.

    python -m tests.mcp_http_server PORT [TOKEN]

With TOKEN, every request must carry "Authorization: Bearer TOKEN" (401 otherwise)."""

import asyncio
import sys
from typing import TypedDict

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from starlette.responses import PlainTextResponse

HOSTILE = '<script>alert("x")</script><img src=x onerror="alert(1)"> **bold** [link](javascript:alert(2))'

server = MCPServer("test-tools")


@server.tool(description="Echo the text back.")
def echo(text: str) -> str:
    return text


@server.tool(description="Always fails.")
def fails() -> str:
    raise ToolError("the backend said no")


@server.tool(description="Takes a long time.")
async def slow(seconds: float = 60) -> str:
    await asyncio.sleep(seconds)
    return "finally"


@server.tool(description="Returns markup.")
def hostile() -> str:
    return HOSTILE


class Record(TypedDict):
    name: str
    markup: str


@server.tool(description="Returns a record.")
def record(name: str) -> Record:
    return {"name": name, "markup": "<b>not bold</b>"}


def main() -> None:
    port = int(sys.argv[1])
    token = sys.argv[2] if len(sys.argv) > 2 else ""
    app = server.streamable_http_app()

    async def guarded(scope, receive, send):
        if token and scope["type"] == "http":
            headers = dict(scope["headers"])
            if headers.get(b"authorization") != f"Bearer {token}".encode():
                await PlainTextResponse("no", status_code=401)(scope, receive, send)
                return
        await app(scope, receive, send)

    uvicorn.run(guarded, host="127.0.0.1", port=port, log_level="warning", lifespan="on")


if __name__ == "__main__":
    main()
