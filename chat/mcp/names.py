"""The name the model knows an MCP tool by.

"<server>__<tool>": a server's name has no underscore (chat/models.py McpServer),
so the first "__" ends it and two servers' tools never share a name, nor do they
take a built-in tool's name (none has "__"). Providers accept
^[a-zA-Z0-9_-]{1,64}$: a tool name outside it is cleaned and made unique again by
a digest of the original."""

import hashlib
import re

ALLOWED = re.compile(r"[a-zA-Z0-9_-]{1,64}")
SEPARATOR = "__"


def public_name(server: str, tool: str) -> str:
    name = f"{server}{SEPARATOR}{tool}"
    if ALLOWED.fullmatch(name):
        return name
    digest = hashlib.sha256(f"{server}\0{tool}".encode()).hexdigest()[:8]
    cleaned = re.sub(r"[^a-zA-Z0-9_-]", "_", tool)
    return f"{server}{SEPARATOR}{cleaned}"[: 64 - len(digest) - 1] + f"_{digest}"


def tool_label(server: str, public: str) -> str:
    """The tool's part of a public name, for the card that already names the server."""
    return public.removeprefix(f"{server}{SEPARATOR}") if server else public
