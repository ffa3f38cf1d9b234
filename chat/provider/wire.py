"""Chunks of the OpenAI chat-completions streaming format, as a server sends them.

Used by the offline demo model (which speaks this format to the real `openai`
client) and by the test and benchmark stubs.
"""

import json
import time
from typing import Any


def chunk(
    delta: dict[str, Any], *, finish_reason: str | None = None, model: str = "demo", id: str = "chatcmpl-demo"
) -> dict:
    return {
        "id": id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def text_chunk(text: str, **kwargs: Any) -> dict:
    return chunk({"content": text}, **kwargs)


def reasoning_chunk(text: str, *, field: str = "reasoning_content", **kwargs: Any) -> dict:
    """A piece of a reasoning model's thinking, in the delta field `field` names
    (servers differ: `reasoning_content`, `reasoning`, `reasoning_text`)."""
    return chunk({field: text}, **kwargs)


def role_chunk(**kwargs: Any) -> dict:
    return chunk({"role": "assistant", "content": ""}, **kwargs)


def tool_call_chunk(
    index: int, *, id: str | None = None, name: str | None = None, arguments: str = "", **kwargs: Any
) -> dict:
    call: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if id is not None:
        call["id"] = id
        call["type"] = "function"
    if name is not None:
        call["function"]["name"] = name
    return chunk({"tool_calls": [call]}, **kwargs)


def finish_chunk(reason: str, **kwargs: Any) -> dict:
    return chunk({}, finish_reason=reason, **kwargs)


def usage_chunk(prompt_tokens: int, completion_tokens: int, *, model: str = "demo", id: str = "chatcmpl-demo") -> dict:
    return {
        "id": id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def sse(obj: dict | str) -> bytes:
    """One server-sent event line pair as the provider writes it."""
    data = obj if isinstance(obj, str) else json.dumps(obj, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


DONE = b"data: [DONE]\n\n"
