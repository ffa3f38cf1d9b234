"""The event vocabulary of an answer, shared by the generation, the event log and
the stream view. Every event of a message has a contiguous sequence number from 1."""

import json
from dataclasses import dataclass, field
from typing import Any

TEXT_DELTA = "text_delta"
TOOL_START = "tool_start"
TOOL_RESULT = "tool_result"
ERROR = "error"
DONE = "done"

TYPES = (TEXT_DELTA, TOOL_START, TOOL_RESULT, ERROR, DONE)
# After one of these the answer's stream closes.
TERMINAL = (ERROR, DONE)


@dataclass(frozen=True, slots=True)
class Event:
    seq: int
    type: str
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def is_terminal(self) -> bool:
        return self.type in TERMINAL

    def to_json(self) -> str:
        return json.dumps({"seq": self.seq, "type": self.type, "data": self.data}, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> "Event":
        obj = json.loads(raw)
        return cls(seq=int(obj["seq"]), type=obj["type"], data=obj["data"])
