"""The provider's streamed chat completion: the request as the wire format, the
body read as plain chunks (dicts).

The request goes through the `openai` client's documented `post` for requests it
has no typed method for: authentication, retries until the response starts, and
status errors raised as `openai` exceptions. What it skips is the typed layer:
`chat.completions.create` walks every parameter against its type definitions on
each request (0.8 ms of CPU with the tools' schemas, more than the rest of the
request), and its stream builds a pydantic object for every chunk, which on a busy
server costs more than everything else done per token, while `json.loads` of the
chunk costs a few microseconds. The body built in chat/provider/reply.py is the wire
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


class TooLarge(Exception):
    """The provider sent more than the caller allows: the provider decides how
    much it sends, and a broken or hostile one sends without end."""


class LineTooLong(TooLarge):
    """A line or an event of the stream."""


class ResponseTooLarge(TooLarge):
    """The whole response."""


@asynccontextmanager
async def completion(client: openai.AsyncOpenAI, body: dict) -> AsyncIterator[httpx2.Response]:
    """POST /chat/completions with `body`; the response, its body not read yet."""
    response = await client.post("/chat/completions", cast_to=httpx2.Response, body=body, stream=True)
    try:
        yield response
    finally:
        await response.aclose()


async def chunks(http_response: httpx2.Response, *, max_line_bytes: int, max_bytes: int) -> AsyncIterator[dict]:
    """The JSON chunks of a streamed chat completion. A line or an event longer
    than `max_line_bytes` raises LineTooLong; a body longer than `max_bytes`,
    ResponseTooLarge."""
    events = _events(http_response.aiter_bytes(), max_line_bytes, max_bytes)
    async for event, data in events:
        if data.startswith(b"[DONE]"):
            # Read to the end of the body so the connection can be reused.
            async for _ in events:
                pass
            return
        try:
            chunk = json.loads(data)
        except (ValueError, RecursionError) as exc:
            # Its beginning, for the log and staff: what the provider sent instead.
            raise ValueError(f"a chunk of the stream is not JSON ({exc}): {data[:200]!r}") from None
        if not isinstance(chunk, dict):
            raise ValueError("a chunk of the stream is not a JSON object")
        if event == b"error" or chunk.get("error"):
            raise openai.APIError(_error_message(chunk), request=http_response.request, body=chunk.get("error", chunk))
        yield chunk


async def _events(
    pieces: AsyncIterator[bytes], max_line_bytes: int, max_bytes: int
) -> AsyncIterator[tuple[bytes, bytes]]:
    """(event type, data) for every event of an SSE body, in order.

    The work is linear in the body however it is cut into pieces: a piece with
    no line end is only put aside, and an unfinished line is joined once, when
    its end comes. (Searching the whole buffer again for every piece took 17 s
    for a 40 MB line.)"""
    unfinished: list[bytes] = []  # pieces of a line whose end has not come yet
    unfinished_size = 0
    event, data, size = b"", [], 0
    received = 0
    async for piece in pieces:
        received += len(piece)
        if received > max_bytes:
            raise ResponseTooLarge(f"more than {received} bytes")
        if b"\n" not in piece and b"\r" not in piece and not (unfinished and unfinished[-1].endswith(b"\r")):
            unfinished.append(piece)
            unfinished_size += len(piece)
            if unfinished_size > max_line_bytes:
                raise LineTooLong(f"a line of more than {unfinished_size} bytes")
            continue
        unfinished.append(piece)
        *lines, rest = _lines(b"".join(unfinished))
        unfinished, unfinished_size = ([rest], len(rest)) if rest else ([], 0)
        if unfinished_size > max_line_bytes:
            raise LineTooLong(f"a line of more than {unfinished_size} bytes")
        for line in lines:
            if not line:
                if data:
                    yield event or b"message", b"\n".join(data)
                event, data, size = b"", [], 0
                continue
            if len(line) > max_line_bytes:
                raise LineTooLong(f"a line of {len(line)} bytes")
            name, _, value = line.partition(b":")
            if value.startswith(b" "):
                value = value[1:]
            if name == b"data":
                size += len(value)
                if size > max_line_bytes:
                    raise LineTooLong(f"an event of more than {size} bytes")
                data.append(value)
            elif name == b"event":
                event = value
            # Comments (": keep-alive"), id: and retry: change nothing here.
    # An event cut off by the end of the body is dropped, as a browser would.


def _lines(buffer: bytes) -> list[bytes]:
    """The lines of `buffer` (ending in LF, CRLF or CR), then what follows the
    last line end. A CR at the very end may be the first half of a CRLF: it stays
    there, for the next piece to tell."""
    if b"\r" in buffer:
        keep_cr = buffer.endswith(b"\r")
        buffer = buffer[:-1] if keep_cr else buffer
        buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n") + (b"\r" if keep_cr else b"")
    return buffer.split(b"\n")


def _error_message(chunk: dict) -> str:
    error = chunk.get("error")
    message = error.get("message") if isinstance(error, dict) else None
    return message if isinstance(message, str) and message else "An error occurred during streaming"
