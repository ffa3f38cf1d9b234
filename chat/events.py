"""The event vocabulary of an answer, shared by the generation, the event log and
the stream view. Every event of a message has a contiguous sequence number from 1.

text_delta     a piece of the answer's text
tool_start     a tool call begins (its card, running); "server" names an MCP server
tool_approval  a call of a tool that asks first waits for the user ("approval":
               "pending", with Approve / Deny), or was approved ("approved") and
               runs; "id" is the call's row. A denied or timed-out call has none:
               its tool_result says so. A client that knows only the other five
               sees tool_start, then tool_result.
tool_result    the call ended: "result", or "error"
error, done    the answer ended (terminal)
"""

import json
from dataclasses import dataclass, field
from typing import Any

TEXT_DELTA = "text_delta"
TOOL_START = "tool_start"
TOOL_RESULT = "tool_result"
TOOL_APPROVAL = "tool_approval"
ERROR = "error"
DONE = "done"

TYPES = (TEXT_DELTA, TOOL_START, TOOL_APPROVAL, TOOL_RESULT, ERROR, DONE)
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
