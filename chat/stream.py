"""The SSE stream of one answer: a read-only tail of its event log.

It replays the events after the client's cursor, follows live ones, and closes
after `done` or `error`. It never produces anything: the generation runs apart,
so a reload, a dropped connection or a second tab changes nothing about it.

A user has at most CHAT_MAX_STREAMS_PER_USER streams open, across workers: a
newer one replaces the oldest, which ends with a notice to reload instead of
being refused. A reload must always get its stream (the old page's connection
may not have been noticed closing yet), and a refused EventSource would be
retried by htmx-ext-sse forever; a stream that ends with the notice swaps its
message for one without a stream, so the old page does not reconnect.
"""

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError, close_old_connections
from django.http import HttpRequest, StreamingHttpResponse
from django.views.decorators.http import require_GET

from chat import sse
from chat.eventlog import EventLog, get_event_log
from chat.events import ERROR as sse_error
from chat.events import REASONING_DELTA, TEXT_DELTA, Event
from chat.generation.liveness import interrupt_if_stale
from chat.live_markdown import merged
from chat.models import Message, Status
from chat.ownership import aanswer_for
from chat.rendering import event_fragment, render_message, terminal_event_type
from chat.serving.login import login_required

logger = logging.getLogger("chat.stream")

# A backlog this long is sent with its consecutive text (and reasoning) deltas joined.
COALESCE_BACKLOG = 100
# How often a stream tells the generation somebody is still watching.
VIEWER_TOUCH_INTERVAL = 5.0

LOG_UNREACHABLE = "Lost the live connection to this answer. It is still being saved: reload the page to see it."
REPLACED = (
    "This answer stopped updating here: you have too many answers open in other tabs or windows. "
    "It is still being saved: reload the page to follow it here."
)


def _cursor(request: HttpRequest) -> int:
    """The last event the client has: Last-Event-ID (the browser's own reconnect)
    or `after` (htmx-ext-sse reconnects with a new EventSource, which drops the
    header, so the page keeps the cursor in the URL)."""
    cursor = 0
    for raw in (request.headers.get("Last-Event-ID"), request.GET.get("after")):
        with contextlib.suppress(ValueError):
            cursor = max(cursor, int(raw or 0))
    return cursor


@require_GET
@login_required
async def stream(request: HttpRequest, conversation_id: int, message_id: int) -> StreamingHttpResponse:
    message = await aanswer_for(request, conversation_id, message_id)
    response = StreamingHttpResponse(answer_events(message, _cursor(request)), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


@dataclass(eq=False)
class _Reader:
    """One open stream that waits for events, as the user's streams count it."""

    user_id: int
    id: str = field(default_factory=lambda: secrets.token_hex(8))
    replaced: bool = False
    # When it last asked the event log whether it still counts.
    checked: float = field(default_factory=time.monotonic)
    # The wait for events in progress, which replace() cuts short.
    _waiting: asyncio.Timeout | None = field(default=None, init=False, repr=False)

    def replace(self) -> None:
        """End the stream now: a newer stream of the user's took its place."""
        self.replaced = True
        if self._waiting is not None:
            self._waiting.reschedule(asyncio.get_running_loop().time())

    async def read(self, log: EventLog, message_id: int, cursor: int, wait: float) -> list[Event]:
        """log.read_after(), cut short by replace()."""
        if self.replaced:
            return []
        try:
            async with asyncio.timeout(None) as self._waiting:
                return await log.read_after(message_id, cursor, wait)
        except TimeoutError:
            if not self.replaced:
                raise
            return []
        finally:
            self._waiting = None

    async def check(self, log: EventLog) -> None:
        """A stream on another worker may have replaced this one."""
        self.checked = time.monotonic()
        if not self.replaced and not await log.is_stream_open(self.user_id, self.id):
            self.replaced = True


# The readers of this process, so that a newer stream ends the one it replaces
# at once when that one runs here too.
_readers: dict[str, _Reader] = {}


async def _open_reader(log: EventLog, user_id: int) -> _Reader:
    reader = _Reader(user_id)
    _readers[reader.id] = reader
    try:
        replaced = await log.open_stream(user_id, reader.id, settings.CHAT_MAX_STREAMS_PER_USER)
    except BaseException:
        del _readers[reader.id]
        raise
    for stream_id in replaced:
        if other := _readers.get(stream_id):
            other.replace()
    return reader


async def _close_reader(log: EventLog, reader: _Reader) -> None:
    _readers.pop(reader.id, None)
    try:
        await log.close_stream(reader.user_id, reader.id)
    except Exception:
        # The id stays in the user's list until newer streams push it out.
        logger.warning("event log unreachable, stream not closed user=%s", reader.user_id, exc_info=True)


async def answer_events(message: Message, cursor: int) -> AsyncIterator[str]:
    log = get_event_log()
    yield sse.retry(settings.CHAT_SSE_RETRY_MS)
    await interrupt_if_stale(message)
    last_sent = time.monotonic()
    touched = 0.0
    touch_every = min(VIEWER_TOUCH_INTERVAL, settings.CHAT_UNWATCHED_LIMIT / 4)
    # Counted among the user's streams once it waits: a stream of a finished
    # answer ends without waiting.
    reader: _Reader | None = None
    try:
        while True:
            try:
                if reader is None and message.status == Status.STREAMING:
                    reader = await _open_reader(log, message.conversation.owner_id)
                if time.monotonic() - touched >= touch_every:
                    await log.touch_viewer(message.pk)
                    touched = time.monotonic()
                wait = 0 if message.status != Status.STREAMING else settings.CHAT_STREAM_POLL
                if reader is None:
                    batch = await log.read_after(message.pk, cursor, wait)
                else:
                    if time.monotonic() - reader.checked >= touch_every:
                        await reader.check(log)
                    batch = await reader.read(log, message.pk, cursor, wait)
            except Exception:
                logger.warning("event log unreachable message=%s", message.pk, exc_info=True)
                yield await _terminal_frame(message, notice=LOG_UNREACHABLE)
                return
            if reader is not None and reader.replaced:
                yield await _terminal_frame(message, notice=REPLACED)
                return
            if batch:
                frames = []
                for event in _coalesced(batch) if len(batch) >= COALESCE_BACKLOG else batch:
                    if event.is_terminal:
                        html = event.data.get("html")
                        frames.append(
                            sse.frame(event.type, html, id=event.seq) if html else await _terminal_frame(message)
                        )
                        yield "".join(frames)
                        return
                    frames.append(_event_frame(message.pk, event))
                    cursor = event.seq
                # Everything that was waiting goes out as one write: a slow client
                # gets fewer, larger writes, never different text.
                yield "".join(frames)
                last_sent = time.monotonic()
                continue
            # Nothing new: the log may not hold this answer (finished long ago, a
            # restart, another process without a shared log). The database decides.
            try:
                await message.arefresh_from_db(fields=["status", "last_seq", "heartbeat_at"])
                await interrupt_if_stale(message)
            except DatabaseError:
                # The database went away under the stream (a restart, a killed
                # connection). The response ends; the browser reconnects from its
                # cursor, and that request gets a working connection.
                logger.warning("database unreachable, stream ended message=%s", message.pk, exc_info=True)
                await sync_to_async(close_old_connections)()
                return
            if message.status != Status.STREAMING:
                yield await _terminal_frame(message)
                return
            if time.monotonic() - last_sent >= settings.CHAT_PING_INTERVAL:
                yield sse.PING
                last_sent = time.monotonic()
    finally:
        if reader is not None:
            # In a task of its own: whatever is raised and caught while closing
            # must not take the exception that ends this stream as its context,
            # nor, through its traceback, the request. (redis-py raises and keeps
            # in a cycle a ResponseError on each new connection to a Redis that
            # lacks CLIENT MAINT_NOTIFICATIONS, and a cancelled read costs a
            # connection.)
            await asyncio.create_task(_close_reader(log, reader))


def _coalesced(batch: list[Event]) -> Iterator[Event]:
    """A reader far behind (a reconnect to a long answer, a slow client) gets the
    text deltas that waited together as one event with the id of the last: the
    same text and blocks, one swap in the page instead of hundreds. Reasoning
    deltas likewise."""
    run: list[Event] = []
    for event in batch:
        if run and event.type != run[-1].type:
            yield _joined(run)
            run = []
        if event.type in (TEXT_DELTA, REASONING_DELTA):
            run.append(event)
        else:
            yield event
    if run:
        yield _joined(run)


def _joined(run: list[Event]) -> Event:
    if len(run) == 1:
        return run[0]
    datas = [e.data for e in run]
    if run[0].type == REASONING_DELTA:
        # Only the first of a run can start a stretch of thinking (text ends one).
        data = {"text": "".join(d["text"] for d in datas), **({"started": True} if datas[0].get("started") else {})}
    else:
        data = merged(datas)
        # The first text after thinking closes its block: at most one per run.
        thought = [d["thought_seconds"] for d in datas if "thought_seconds" in d]
        if thought:
            data["thought_seconds"] = thought[-1]
    return Event(run[-1].seq, run[0].type, data)


def _event_frame(message_id: int, event: Event) -> str:
    return sse.frame(event.type, event_fragment(message_id, event), id=event.seq)


async def _terminal_frame(message: Message, notice: str = "") -> str:
    """`done` or `error` carries the whole answer as stored, rendered: whatever
    the client missed, it ends up with exactly the saved answer. The generation
    renders it once into its terminal event; this renders it from the database
    when the event has no HTML or the log no longer holds it."""
    fresh = await Message.objects.select_related("conversation", "feedback", "model_option").aget(pk=message.pk)
    html = await sync_to_async(render_message)(fresh, notice=notice)
    event_type = sse_error if notice else terminal_event_type(fresh.status)
    return sse.frame(event_type, html, id=fresh.last_seq)
