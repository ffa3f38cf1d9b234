"""Batched persistence of an answer while it streams.

Text is written once the oldest unsaved part of it is one flush interval old
(250 ms): a crash loses at most that much, and the database sees fewer than
four writes a second whatever the token rate (while tokens flow, a write every
interval plus the gap to the next token). Never once per token. `last_seq` is
written in the same UPDATE as the text, so a page rendered from the row knows
exactly which event to resume the stream after.
"""

import asyncio
import contextlib
import logging
import time

from django.conf import settings
from django.utils import timezone

from chat.models import Message

logger = logging.getLogger("chat.recorder")


class Recorder:
    def __init__(self, message: Message) -> None:
        self.message_id = message.pk
        self._parts = [message.content]
        self.length = len(message.content)
        self.seq = message.last_seq
        self.first_token_at = message.first_token_at
        # When the oldest change not yet in the database was made (monotonic).
        self._unsaved_since: float | None = None
        self._changed = asyncio.Event()
        self._last_write = time.monotonic()
        self.writes = 0

    @property
    def content(self) -> str:
        if len(self._parts) > 1:
            self._parts = ["".join(self._parts)]
        return self._parts[0]

    def add_text(self, text: str, seq: int) -> None:
        if self.first_token_at is None:
            self.first_token_at = timezone.now()
        self._parts.append(text)
        self.length += len(text)
        self.seq = seq
        self._mark_unsaved()

    def advance(self, seq: int) -> None:
        """An event whose effect is stored elsewhere (a tool call row)."""
        self.seq = seq
        self._mark_unsaved()

    def _mark_unsaved(self) -> None:
        if self._unsaved_since is None:
            self._unsaved_since = time.monotonic()
            self._changed.set()

    async def flush(self) -> None:
        unsaved_since, self._unsaved_since = self._unsaved_since, None
        self._last_write = time.monotonic()
        self.writes += 1
        try:
            await Message.objects.filter(pk=self.message_id).aupdate(
                content=self.content,
                last_seq=self.seq,
                first_token_at=self.first_token_at,
                heartbeat_at=timezone.now(),
            )
        except Exception:
            # Not written: still owed, from when it was first owed (which is
            # before any change made while the write was tried).
            if unsaved_since is not None:
                self._unsaved_since = unsaved_since
            raise

    def _due(self) -> float:
        """When the next write is due: the oldest unsaved change is an interval
        old, or the heartbeat needs refreshing."""
        heartbeat = self._last_write + settings.CHAT_HEARTBEAT_INTERVAL
        if self._unsaved_since is None:
            return heartbeat
        return min(heartbeat, self._unsaved_since + settings.CHAT_FLUSH_INTERVAL)

    async def run(self) -> None:
        """Write when due; when nothing changes, still refresh the heartbeat so
        the answer is not taken for a dead one."""
        while True:
            wait = self._due() - time.monotonic()
            if wait > 0:
                if self._unsaved_since is None:
                    # Until the first change (which moves the due time) or the heartbeat.
                    self._changed.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(wait):
                            await self._changed.wait()
                else:
                    await asyncio.sleep(wait)
                continue
            try:
                await self.flush()
            except Exception:
                # A busy or briefly unreachable database: the text stays in
                # memory and a later flush (or the final save) writes it.
                logger.warning("flush failed message=%s", self.message_id, exc_info=True)
                await asyncio.sleep(settings.CHAT_FLUSH_INTERVAL)
