"""Numbering and publishing one answer's events.

Every event of an answer gets the next sequence number and goes to the event
log in that order. A caller that must store something in the same turn as the
event it announces (a tool call's row, with the event's number) holds `turn`
and uses `publish_in_turn`.

A log in another process (Redis) is not waited for event by event: a round trip
per token would cost Redis three commands per token and hold the answer up for
each. The first event goes at once; those that come while it is under way go
together in the next write, and so on: one write per round trip, however fast
the model streams, and no added wait while it streams slowly. `flush` waits until
everything published is written; `finish` does, so the end of an answer is in
the log before the answer ends. Nothing else needs to: what is stored with an
event's number (a tool call's row in the same turn, the text the recorder saves)
may reach the database a moment before the event reaches the log, and a page
rendered from the database streams the events after that number, which the log
gets in order.
"""

import asyncio
import logging

from django.conf import settings

from chat.eventlog import EventLog
from chat.events import Event

logger = logging.getLogger("chat.generation")


class Publisher:
    def __init__(self, log: EventLog, message_id: int, last_seq: int) -> None:
        self.log = log
        self.message_id = message_id
        # The number of the last event published.
        self.seq = last_seq
        self.turn = asyncio.Lock()
        self._failed = False
        # Events published and not yet handed to a remote log, and the task that
        # writes them while there are any.
        self._unsent: list[Event] = []
        self._writer: asyncio.Task | None = None

    @property
    def next_seq(self) -> int:
        return self.seq + 1

    async def publish(self, event_type: str, data: dict) -> Event:
        async with self.turn:
            return await self.publish_in_turn(event_type, data)

    async def publish_in_turn(self, event_type: str, data: dict) -> Event:
        """The caller holds `turn`: sequence numbers reach the log in order. A
        remote log has the event on its way, not yet written, when this returns."""
        self.seq += 1
        event = Event(self.seq, event_type, data)
        if not self.log.remote:
            await self._write([event])
            return event
        self._unsent.append(event)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(
                self._write_unsent(), name=f"event-log-writer-{self.message_id}"
            )
        return event

    async def _write_unsent(self) -> None:
        # A pause after each write (CHAT_EVENT_LOG_COALESCE_MS, none by default)
        # bounds an answer's writes per second whatever the round trip takes.
        pause = settings.CHAT_EVENT_LOG_COALESCE_MS / 1000
        while self._unsent:
            batch, self._unsent = self._unsent, []
            await self._write(batch)
            if pause:
                await asyncio.sleep(pause)

    async def _write(self, events: list[Event]) -> None:
        try:
            await self.log.publish(self.message_id, *events)
        except Exception:
            # The log is unreachable (Redis down): the text still reaches the
            # database, and viewers are told by their stream. Said once per answer,
            # not once per token.
            if not self._failed:
                self._failed = True
                logger.warning(
                    "event log publish failed message=%s seq=%s", self.message_id, events[-1].seq, exc_info=True
                )

    async def flush(self) -> None:
        """Return once every event published so far was written (or failed to be)."""
        # asyncio.wait: a caller cancelled here leaves the writer writing.
        while self._writer is not None and not self._writer.done():
            await asyncio.wait([self._writer])

    async def finish(self) -> None:
        """No more events: the log may let go of the answer once it has them all."""
        await self.flush()
        try:
            await self.log.finish(self.message_id)
        except Exception:
            logger.warning("event log finish failed message=%s", self.message_id, exc_info=True)
