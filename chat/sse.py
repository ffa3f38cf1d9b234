"""Server-Sent Events framing (https://html.spec.whatwg.org/multipage/server-sent-events.html)."""

import re

# The SSE parser ends a line at CRLF, CR or LF; str.splitlines() would also split
# on characters such as U+2028 that the browser keeps inside a line.
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def frame(event: str, data: str, *, id: int | None = None) -> str:
    """One event. Every event carries at least one data line: the browser never
    dispatches an event without data, so `sse-close` would never fire."""
    head = f"id: {id}\nevent: {event}\n" if id is not None else f"event: {event}\n"
    if "\n" not in data and "\r" not in data:
        # The common case, a token's fragment: one line, no split needed. It is
        # what every frame of a streaming answer takes, once per token.
        return f"{head}data: {data}\n\n"
    lines = "".join(f"data: {line}\n" for line in _LINE_BREAK.split(data))
    return f"{head}{lines}\n"


def retry(milliseconds: int) -> str:
    return f"retry: {milliseconds}\n\n"


PING = ": ping\n\n"
