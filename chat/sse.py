"""Server-Sent Events framing (https://html.spec.whatwg.org/multipage/server-sent-events.html)."""

import re

# The SSE parser ends a line at CRLF, CR or LF; str.splitlines() would also split
# on characters such as U+2028 that the browser keeps inside a line.
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def frame(event: str, data: str, *, id: int | None = None) -> str:
    """One event. Every event carries at least one data line: the browser never
    dispatches an event without data, so `sse-close` would never fire."""
    parts = []
    if id is not None:
        parts.append(f"id: {id}\n")
    parts.append(f"event: {event}\n")
    for line in _LINE_BREAK.split(data):
        parts.append(f"data: {line}\n")
    parts.append("\n")
    return "".join(parts)


def retry(milliseconds: int) -> str:
    return f"retry: {milliseconds}\n\n"


PING = ": ping\n\n"
