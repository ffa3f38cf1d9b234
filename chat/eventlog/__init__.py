"""Where an answer's events live between the generation that publishes them and
the stream views that read them, and who is reading them.

One small interface, two homes: in this process (the default), or Redis Streams
when REDIS_URL is set so that every worker sees every answer. The database stays
the fallback for anything the log no longer holds.
"""

import functools
from typing import Protocol

from django.conf import settings

from chat.events import Event


class EventLog(Protocol):
    # Whether a write is a round trip to another process (Redis): the Publisher
    # then does not wait for each event, and sends those of an answer that come
    # while a write is under way together, in one publish.
    remote: bool

    async def publish(self, message_id: int, *events: Event) -> None:
        """Append `events`, in order, in one write; the first one's seq is one
        more than the last one published."""

    async def read_after(self, message_id: int, cursor: int, timeout: float) -> list[Event]:
        """The events with seq > cursor, waiting up to `timeout` seconds for the
        first one; [] when none came (or the log does not hold the message)."""

    async def finish(self, message_id: int) -> None:
        """The answer ended: keep its events for late readers, then let them go."""

    async def request_stop(self, message_id: int) -> None:
        """Ask the generation of `message_id`, wherever it runs, to stop."""

    async def wait_for_stop(self, message_id: int) -> None:
        """Return once a stop was requested for `message_id`."""

    async def clear_stop(self, message_id: int) -> None:
        """Forget a stop request, before a new generation of the message starts."""

    async def announce_decision(self, message_id: int, call_id: int) -> None:
        """Wake the generation waiting for the user's decision on tool call
        `call_id` (stored in the database first), wherever it runs."""

    async def wait_for_decision(self, message_id: int, call_id: int, timeout: float) -> None:
        """Return once a decision was announced, or after about `timeout` seconds
        (the caller reads the decision from the database either way)."""

    async def touch_viewer(self, message_id: int) -> None:
        """Note that somebody is watching the answer now."""

    async def seconds_since_viewed(self, message_id: int) -> float | None:
        """How long ago somebody last watched, or None if nobody ever did."""

    async def open_stream(self, user_id: int, stream_id: str, limit: int) -> list[str]:
        """Count a stream of the user's as open, wherever it runs. Returns the
        streams it replaces: the user's oldest, beyond `limit` open ones."""

    async def is_stream_open(self, user_id: int, stream_id: str) -> bool:
        """False once a newer stream of the user's replaced it."""

    async def close_stream(self, user_id: int, stream_id: str) -> None:
        """The stream ended: it no longer counts."""


@functools.cache
def get_event_log() -> EventLog:
    if settings.REDIS_URL:
        from chat.eventlog.redis import RedisEventLog

        return RedisEventLog(settings.REDIS_URL)
    from chat.eventlog.memory import MemoryEventLog

    return MemoryEventLog()
