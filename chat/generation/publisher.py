"""Numbering and publishing one answer's events.

Every event of an answer gets the next sequence number and goes to the event
log in that order. A caller that must store something in the same turn as the
event it announces (a tool call's row, with the event's number) holds `turn`
and uses `publish_in_turn`."""

import asyncio
import logging

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

    @property
    def next_seq(self) -> int:
        return self.seq + 1

    async def publish(self, event_type: str, data: dict) -> Event:
        async with self.turn:
            return await self.publish_in_turn(event_type, data)

    async def publish_in_turn(self, event_type: str, data: dict) -> Event:
        """The caller holds `turn`: sequence numbers reach the log in order."""
        self.seq += 1
        event = Event(self.seq, event_type, data)
        try:
            await self.log.publish(self.message_id, event)
        except Exception:
            # The log is unreachable (Redis down): the text still reaches the
            # database, and viewers are told by their stream. Said once per answer,
            # not once per token.
            if not self._failed:
                self._failed = True
                logger.warning("event log publish failed message=%s seq=%s", self.message_id, self.seq, exc_info=True)
        return event

    async def finish(self) -> None:
        """No more events: the log may let go of the answer."""
        try:
            await self.log.finish(self.message_id)
        except Exception:
            logger.warning("event log finish failed message=%s", self.message_id, exc_info=True)
