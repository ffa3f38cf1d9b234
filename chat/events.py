"""The event vocabulary of an answer, shared by the generation, the event log and
the stream view. Every event of a message has a contiguous sequence number from 1.

The five public events: `text_delta`, `tool_start`, `tool_result`, `error`,
`done`. Next to them, `reasoning_delta` carries a reasoning model's thinking
(`{"text": ...}`, with `"started": true` on the first piece of each stretch of
thinking). It is an event of its own, not text: a client that knows only the
five ignores a named event it does not listen for (and the final `done`/`error`
HTML shows the thinking anyway), the thinking is stored apart from the answer
(Message.reasoning) and never sent back to the model as answer text, and the
text offsets of tool cards count answer text only. The `text_delta` that ends a
stretch of thinking carries `thought_seconds`, the total time thought so far.
"""

import json
from dataclasses import dataclass, field
from typing import Any

TEXT_DELTA = "text_delta"
TOOL_START = "tool_start"
TOOL_RESULT = "tool_result"
ERROR = "error"
DONE = "done"
REASONING_DELTA = "reasoning_delta"

TYPES = (TEXT_DELTA, TOOL_START, TOOL_RESULT, ERROR, DONE, REASONING_DELTA)
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
