"""Batched persistence of an answer while it streams.

The answer's text reaches the database at most once per flush interval (and at
least that often while it changes), never once per token. `last_seq` is written
in the same UPDATE as the text, so a page rendered from the row knows exactly
which event to resume the stream after.
"""

import asyncio
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
        self._dirty = False
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
        self._dirty = True

    def advance(self, seq: int) -> None:
        """An event whose effect is stored elsewhere (a tool call row)."""
        self.seq = seq
        self._dirty = True

    async def flush(self) -> None:
        self._dirty = False
        self._last_write = time.monotonic()
        self.writes += 1
        await Message.objects.filter(pk=self.message_id).aupdate(
            content=self.content,
            last_seq=self.seq,
            first_token_at=self.first_token_at,
            heartbeat_at=timezone.now(),
        )

    async def run(self) -> None:
        """Flush what changed every interval; when nothing changes, still refresh
        the heartbeat so the answer is not taken for a dead one."""
        interval = settings.CHAT_FLUSH_INTERVAL
        while True:
            await asyncio.sleep(interval)
            idle = time.monotonic() - self._last_write
            if self._dirty or idle >= settings.CHAT_HEARTBEAT_INTERVAL:
                try:
                    await self.flush()
                except Exception:
                    # A busy or briefly unreachable database: the text stays in
                    # memory and the next flush (or the final save) writes it.
                    self._dirty = True
                    logger.warning("flush failed message=%s", self.message_id, exc_info=True)
