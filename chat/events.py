"""The event vocabulary of an answer, shared by the generation, the event log and
the stream view. Every event of a message has a contiguous sequence number from 1.

text_delta       a piece of the answer's text; the one that ends a stretch of
                 thinking carries "thought_seconds", the total time thought so far
tool_start       a tool call begins (its card, running); "server" names an MCP server
tool_result      the call ended: "result", or "error"
error, done      the answer ended (terminal)

Next to those five, two events a client that knows only the five may ignore (it
does not listen for a named event it does not know, and the final done/error
HTML shows what they showed):

reasoning_delta  a reasoning model's thinking ({"text": ...}, with "started": true
                 on the first piece of each stretch). An event of its own, not
                 text: the thinking is stored apart from the answer
                 (Message.reasoning), never sent back to the model as answer
                 text, and the text offsets of tool cards count answer text only.
tool_approval    a call of a tool that asks first waits for the user ("approval":
                 "pending", with Approve / Deny), or was approved ("approved") and
                 runs; "id" is the call's row. A denied or timed-out call has none:
                 its tool_result says so. A five-event client sees tool_start,
                 then tool_result.
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
REASONING_DELTA = "reasoning_delta"

TYPES = (TEXT_DELTA, TOOL_START, TOOL_APPROVAL, TOOL_RESULT, ERROR, DONE, REASONING_DELTA)
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
