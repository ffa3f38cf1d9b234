"""Batched persistence of answers while they stream.

An answer's text (and a reasoning model's thinking, and how long it thought)
is written once the oldest unsaved part of it is one flush interval old
(250 ms): a crash loses at most that much. Never once per token.

The answers of a process are written together. One task per event loop (the
writer) wakes when the first answer falls due and writes every answer with
anything unsaved, in one transaction and one trip to the database thread. While
answers stream the database sees about four commits a second whatever the
token rate and however many answers there are, and the database thread (which
takes turns with the event loop on the interpreter lock) is woken once per
batch, not once per answer.

`last_seq` is written in the same row as the text and the reasoning, so a page
rendered from the row knows exactly which event to resume the stream after. A
row is written only if that does not take its `last_seq` back: an answer's final
save may overtake a batch already on its way.

A batch that fails is written again row by row when a row may be the cause (the
database refused a value) or the connection was lost (a new one may work): the
rows written are saved, and an answer whose row the database refuses on its own
fails (`Recorder.refused`) without holding up the others. When the database
itself fails (unreachable, locked, full), the text stays in memory and a later
batch, or the final save, writes it.
"""

import asyncio
import contextlib
import contextvars
import logging
import math
import time
import weakref

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.utils import timezone

from chat.models import Message
from chat.serving.db_threads import shared_context
from chat.storable import reason, refused

logger = logging.getLogger("chat.recorder")


class Recorder:
    """What one answer has produced, and what of it the database has yet to see."""

    def __init__(self, message: Message) -> None:
        self.message_id = message.pk
        self._parts = [message.content]
        self.length = len(message.content)
        self._reasoning_parts = [message.reasoning]
        self.reasoning_length = len(message.reasoning)
        # None while the page shows "Thinking…": set by the text that ends it.
        self.reasoning_seconds = message.reasoning_seconds
        self.seq = message.last_seq
        self.first_token_at = message.first_token_at
        # When the oldest change not yet in the database was made (monotonic).
        self._unsaved_since: float | None = None
        self._last_write = time.monotonic()
        self._writer: _Writer | None = None
        # Writes of this answer's row (alone or in a batch).
        self.writes = 0
        # Done, with the exception, once the database refuses this answer's row
        # (its text cannot be stored): the writer has let go of it.
        self.refused: asyncio.Future | None = None

    @property
    def content(self) -> str:
        if len(self._parts) > 1:
            self._parts = ["".join(self._parts)]
        return self._parts[0]

    @property
    def reasoning(self) -> str:
        if len(self._reasoning_parts) > 1:
            self._reasoning_parts = ["".join(self._reasoning_parts)]
        return self._reasoning_parts[0]

    def start(self) -> None:
        """Have the writer of this event loop keep the row up to date."""
        loop = asyncio.get_running_loop()
        self.refused = loop.create_future()
        self._writer = _writers.setdefault(loop, _Writer())
        self._writer.add(self)

    def stop(self) -> None:
        """The answer ends: its final save writes the rest."""
        if self._writer is not None:
            self._writer.discard(self)
            self._writer = None

    def add_text(self, text: str, seq: int, thought_seconds: float | None = None) -> None:
        """Text of the answer; `thought_seconds` when it ends a stretch of thinking."""
        if self.first_token_at is None:
            self.first_token_at = timezone.now()
        self._parts.append(text)
        self.length += len(text)
        if thought_seconds is not None:
            self.reasoning_seconds = thought_seconds
        self.seq = seq
        self._mark_unsaved()

    def add_reasoning(self, text: str, seq: int, started: bool) -> None:
        """Reasoning; `started` when it starts a stretch of thinking (the page
        shows "Thinking…" again until text ends it)."""
        self._reasoning_parts.append(text)
        self.reasoning_length += len(text)
        if started:
            self.reasoning_seconds = None
        self.seq = seq
        self._mark_unsaved()

    def advance(self, seq: int) -> None:
        """An event whose effect is stored elsewhere (a tool call row)."""
        self.seq = seq
        self._mark_unsaved()

    def _mark_unsaved(self) -> None:
        if self._unsaved_since is None:
            self._unsaved_since = time.monotonic()
            if self._writer is not None:
                self._writer.due_by(self._unsaved_since + settings.CHAT_FLUSH_INTERVAL)

    def due(self) -> float:
        """When the next write is due: the oldest unsaved change is an interval
        old, or the heartbeat needs refreshing."""
        heartbeat = self._last_write + settings.CHAT_HEARTBEAT_INTERVAL
        if self._unsaved_since is None:
            return heartbeat
        return min(heartbeat, self._unsaved_since + settings.CHAT_FLUSH_INTERVAL)

    def _take(self, now) -> tuple[list, float | None]:
        """The row's values for a write (which clears what is owed), and what to
        restore if the write fails."""
        owed_since, self._unsaved_since = self._unsaved_since, None
        self._last_write = time.monotonic()
        self.writes += 1
        row = [
            self.content,
            self.reasoning,
            self.reasoning_seconds,
            self.seq,
            self.first_token_at,
            now,
            self.message_id,
        ]
        return row, owed_since

    def _restore(self, owed_since: float | None) -> None:
        """A write failed: still owed, from when it was first owed (which is
        before any change made while the write was tried)."""
        if owed_since is not None and (self._unsaved_since is None or owed_since < self._unsaved_since):
            self._unsaved_since = owed_since

    def _refuse(self, exc: Exception) -> None:
        """The database refuses this answer's row: nothing more of it is written."""
        logger.warning("the text of answer %s cannot be stored: %s", self.message_id, reason(exc))
        self.stop()
        if self.refused is not None and not self.refused.done():
            self.refused.set_result(exc)

    async def flush(self) -> None:
        """Write this answer's row now (the text before a tool card is stored
        before the card). If the database fails, the writer tries again."""
        failure = await _write([self])
        if failure is not None:
            logger.warning("writing answer %s failed", self.message_id, exc_info=failure)


async def _write(recorders: list[Recorder]) -> Exception | None:
    """Write the rows of `recorders`. Those the database refuses are refused;
    the others that failed stay owed. The failure of the database, if any."""
    now = timezone.now()
    taken = [recorder._take(now) for recorder in recorders]
    try:
        failures = await sync_to_async(_update_batch)([row for row, _ in taken])
    except BaseException:
        for recorder, (_, owed_since) in zip(recorders, taken, strict=True):
            recorder._restore(owed_since)
        raise
    failed = None
    for recorder, (_, owed_since), failure in zip(recorders, taken, failures, strict=True):
        if failure is None:
            continue
        if refused(failure):
            recorder._refuse(failure)
        else:
            recorder._restore(owed_since)
            failed = failure
    return failed


def _update_batch(rows: list[list]) -> list[Exception | None]:
    """Every row in one transaction; if that fails because of a row, or on a
    lost connection, each row alone. What failed for each row, if anything."""
    used = connection.connection
    try:
        _update_rows(rows)
        return [None] * len(rows)
    except Exception as exc:
        if not (refused(exc) or _lost(used)):
            # The database fails (locked, read-only, full): every row would, alike.
            return [exc] * len(rows)
    failures: list[Exception | None] = []
    for row in rows:
        try:
            _update_rows([row])
            failures.append(None)
        except Exception as exc:
            failures.append(exc)
            if not refused(exc):
                # The database fails: the other rows wait for the next batch.
                failures += [exc] * (len(rows) - len(failures))
                break
    return failures


def _lost(used) -> bool:
    """After a statement failed on `used` (this thread's connection before it, or
    None): whether that connection is gone, so that the next statement runs on
    a new one. A dead one is closed here: Django checks only at a request's
    start and end, and the writer runs in between."""
    current = connection.connection
    if current is not None and current is used and not connection.is_usable():
        connection.close()
        current = None
    return current is not used


def _update_rows(rows: list[list]) -> None:
    """One statement executed for every row, in one transaction. Plain SQL: the
    ORM would compile an UPDATE per row (~0.2 ms of Python each)."""
    q = connection.ops.quote_name
    field = Message._meta.get_field
    names = ("content", "reasoning", "reasoning_seconds", "last_seq", "first_token_at", "heartbeat_at")
    columns = [q(field(name).column) for name in names]
    last_seq, pk = q(field("last_seq").column), q(field("id").column)
    sql = (
        f"UPDATE {q(Message._meta.db_table)} SET {', '.join(f'{c} = %s' for c in columns)} "
        f"WHERE {pk} = %s AND {last_seq} <= %s"
    )
    first_token_at, heartbeat_at = field("first_token_at"), field("heartbeat_at")
    params = [
        (
            content,
            reasoning,
            seconds,
            seq,
            first_token_at.get_db_prep_value(first, connection),
            heartbeat_at.get_db_prep_value(now, connection),
            pk,
            seq,
        )
        for content, reasoning, seconds, seq, first, now, pk in rows
    ]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(sql, params)


class _Writer:
    """Writes the rows of every streaming answer of one event loop, together.
    Its task runs while it has answers and ends with the last one."""

    def __init__(self) -> None:
        self.recorders: set[Recorder] = set()
        self._wake = asyncio.Event()
        # When the task means to wake next (inf while it is writing).
        self._next = math.inf
        self._task: asyncio.Task | None = None

    def add(self, recorder: Recorder) -> None:
        self.recorders.add(recorder)
        if self._task is None:
            self._start_task()
        self.due_by(recorder.due())

    def _start_task(self) -> None:
        # A fresh context: the writer outlives the generation that started it.
        self._task = asyncio.get_running_loop().create_task(
            self._run(), context=contextvars.Context(), name="recorder-writer"
        )
        self._task.add_done_callback(self._ended)

    def discard(self, recorder: Recorder) -> None:
        self.recorders.discard(recorder)
        if not self.recorders:
            self._wake.set()

    def due_by(self, when: float) -> None:
        if when < self._next:
            self._wake.set()

    def _ended(self, task: asyncio.Task) -> None:
        self._task = None
        if not task.cancelled() and task.exception() is not None:
            # Said here rather than by asyncio when the task is collected.
            logger.error("the writer of streaming answers failed", exc_info=task.exception())
        if self.recorders:
            # An answer arrived as the task was ending.
            self._start_task()

    async def _run(self) -> None:
        async with shared_context():
            try:
                await self._write_while_streaming()
            finally:
                # Its thread's connection is kept or closed as a request's would be.
                await sync_to_async(close_old_connections)()

    async def _write_while_streaming(self) -> None:
        while self.recorders:
            due = min(recorder.due() for recorder in self.recorders)
            wait = due - time.monotonic()
            if wait > 0:
                self._next = due
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._wake.wait()
                self._next = math.inf
                continue
            await self._write_due()

    async def _write_due(self) -> None:
        # Every write that would fall due before the next batch goes now: each
        # answer with unsaved text (it is due within an interval of its first
        # change) and each heartbeat that close. One commit instead of several.
        soon = time.monotonic() + settings.CHAT_FLUSH_INTERVAL
        batch = [r for r in self.recorders if r.due() <= soon]
        try:
            failure = await _write(batch)
        except Exception as exc:
            failure = exc
        if failure is not None:
            # A busy or briefly unreachable database: the text stays in memory
            # and a later batch (or the final save) writes it.
            logger.warning("writing %d streaming answers failed", len(batch), exc_info=failure)
            await asyncio.sleep(settings.CHAT_FLUSH_INTERVAL)


_writers: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Writer]" = weakref.WeakKeyDictionary()
