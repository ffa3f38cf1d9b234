"""The provider's streamed chat completion: the request as the wire format, the
body read as plain chunks (dicts).

The request goes through the `openai` client's documented `post` for requests it
has no typed method for: authentication, retries until the response starts, and
status errors raised as `openai` exceptions. What it skips is the typed layer:
`chat.completions.create` walks every parameter against its type definitions on
each request (0.8 ms of CPU with the tools' schemas, more than the rest of the
request), and its stream builds a pydantic object for every chunk, which on a busy
server costs more than everything else done per token, while `json.loads` of the
chunk costs a few microseconds. The body built in chat/generation.py is the wire
format already.

The body is server-sent events (https://html.spec.whatwg.org/multipage/server-sent-events.html):
`data:` lines ending in a blank line, `data: [DONE]` at the end, and an error
either as a chunk with an `error` member or as an `event: error`.
"""

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx2
import openai


@asynccontextmanager
async def completion(client: openai.AsyncOpenAI, body: dict) -> AsyncIterator[httpx2.Response]:
    """POST /chat/completions with `body`; the response, its body not read yet."""
    response = await client.post("/chat/completions", cast_to=httpx2.Response, body=body, stream=True)
    try:
        yield response
    finally:
        await response.aclose()


async def chunks(http_response: httpx2.Response) -> AsyncIterator[dict]:
    """The JSON chunks of a streamed chat completion."""
    events = _events(http_response.aiter_bytes())
    async for event, data in events:
        if data.startswith(b"[DONE]"):
            # Read to the end of the body so the connection can be reused.
            async for _ in events:
                pass
            return
        chunk = json.loads(data)
        if not isinstance(chunk, dict):
            raise ValueError("a chunk of the stream is not a JSON object")
        if event == b"error" or chunk.get("error"):
            raise openai.APIError(_error_message(chunk), request=http_response.request, body=chunk.get("error", chunk))
        yield chunk


async def _events(pieces: AsyncIterator[bytes]) -> AsyncIterator[tuple[bytes, bytes]]:
    """(event type, data) for every event of an SSE body, in order."""
    buffer = b""
    event, data = b"", []
    async for piece in pieces:
        buffer += piece
        if b"\r" in buffer:
            # Lines may end in CRLF or CR too. A CR at the very end may be the
            # first half of a CRLF: it waits for the next piece.
            keep_cr = buffer.endswith(b"\r")
            buffer = buffer[:-1] if keep_cr else buffer
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n") + (b"\r" if keep_cr else b"")
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if not line:
                if data:
                    yield event or b"message", b"\n".join(data)
                event, data = b"", []
                continue
            name, _, value = line.partition(b":")
            if value.startswith(b" "):
                value = value[1:]
            if name == b"data":
                data.append(value)
            elif name == b"event":
                event = value
            # Comments (": keep-alive"), id: and retry: change nothing here.
    # An event cut off by the end of the body is dropped, as a browser would.


def _error_message(chunk: dict) -> str:
    error = chunk.get("error")
    message = error.get("message") if isinstance(error, dict) else None
    return message if isinstance(message, str) and message else "An error occurred during streaming"
