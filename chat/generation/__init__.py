"""Generating answers: each attempt runs as a background task of its own, apart
from any request, and ends stored whatever happens.

- `tasks`: starting an attempt and the attempts running in this process;
- `answer`: one attempt, from the model's first reply to its end;
- `publisher`: its events, numbered and published to the event log;
- `recorder`: its text, written to the database in batches;
- `tool_calls`: the tools its replies ask for;
- `ending`: its end, stored and rendered;
- `liveness`: an answer whose process died becomes interrupted.
"""

from chat.generation.tasks import running_task, start

__all__ = ["running_task", "start"]
