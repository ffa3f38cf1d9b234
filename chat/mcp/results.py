"""What an MCP tool's result becomes: the text the model is given and the card
shows (escaped there like every tool output: it is untrusted). Text blocks as
they are; structured content, when no text came with it, as indented JSON;
what cannot be text (an image, audio, a binary resource) as a note naming it."""

import json

from mcp_types import CallToolResult

from chat.tools import ToolError


def result_text(result: CallToolResult) -> str:
    """The result's text; a result the tool marked as an error raises ToolError
    with it, which the model and the user both see."""
    parts = [_block_text(block) for block in result.content]
    if not any(parts) and result.structured_content is not None:
        parts = [json.dumps(result.structured_content, indent=2, ensure_ascii=False)]
    text = "\n".join(p for p in parts if p)
    if result.is_error:
        raise ToolError(text or "The tool reported an error.")
    return text


def _block_text(block) -> str:
    kind = getattr(block, "type", "")
    if kind == "text":
        return block.text
    if kind == "resource_link":
        return f"[Resource: {block.uri}]"
    if kind == "resource":
        resource = block.resource
        text = getattr(resource, "text", None)
        return text if text is not None else f"[Binary resource: {resource.uri}, not shown]"
    mime = getattr(block, "mime_type", "") or ""
    return f"[{kind or 'content'}{f' ({mime})' if mime else ''}, not shown]"
