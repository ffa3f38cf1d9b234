"""A Server-Sent Events parser that follows the browser's rules
(https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation),
so tests see exactly what an EventSource would dispatch."""

import re
from dataclasses import dataclass


@dataclass
class Frame:
    event: str
    data: str
    id: str | None


def parse(stream: str) -> list[Frame]:
    frames: list[Frame] = []
    event, data, last_id = "", [], None
    pending_id = None
    for line in re.split(r"\r\n|\r|\n", stream):
        if line == "":
            if data:
                frames.append(
                    Frame(event or "message", "\n".join(data), pending_id if pending_id is not None else last_id)
                )
                last_id = pending_id if pending_id is not None else last_id
            event, data, pending_id = "", [], None
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id" and "\0" not in value:
            pending_id = value
    return frames
