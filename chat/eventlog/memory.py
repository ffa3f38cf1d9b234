"""The event log inside this process: nothing to install, one process only."""

import asyncio
import itertools
import time
from collections import deque
from dataclasses import dataclass, field

from django.conf import settings

from chat.events import Event


@dataclass
class _Answer:
    events: list[Event] = field(default_factory=list)
    # A finished answer's events, kept for late readers as JSON: strings are not
    # tracked by the garbage collector, so the finished answers of the last
    # minutes (hundreds of thousands of events) do not lengthen every full
    # collection, which pauses all streams (measured: ~300 ms pauses with a few
    # hundred finished answers of 500 tokens, against ~40 ms).
    finished: list[str] | None = None
    waiters: list[asyncio.Future] = field(default_factory=list)
    stop_waiters: list[asyncio.Future] = field(default_factory=list)
    stop_requested: bool = False
    # Tool calls decided, and the generation's waits for a decision.
    decided: set[int] = field(default_factory=set)
    decision_waiters: list[asyncio.Future] = field(default_factory=list)
    viewed_at: float | None = None
    expires_at: float | None = None


def _wake(futures: list[asyncio.Future]) -> None:
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    for future in futures:
        loop = future.get_loop()
        if loop is running:
            # The usual case: resolve it here. call_soon_threadsafe would also
            # write to the loop's self-pipe, a system call per event and viewer.
            _resolve(future)
        else:
            # Futures may belong to another event loop (tests run several).
            loop.call_soon_threadsafe(_resolve, future)
    futures.clear()


def _from_cursor(kept: list, first: int, cursor: int) -> list:
    """What `kept` (the events from seq `first` on) holds after `cursor`; nothing
    when it does not reach back to the cursor (the caller falls back to the
    database)."""
    if not kept or cursor + 1 < first:
        return []
    return kept[max(cursor + 1 - first, 0) :]


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


class MemoryEventLog:
    # A write is a few list operations: the Publisher waits for each, and
    # readers are woken as soon as an event exists.
    remote = False

    def __init__(self) -> None:
        self._answers: dict[int, _Answer] = {}
        # (expires_at, message_id) in the order the times were set: a sweep looks
        # only at the front, so starting an answer does not walk the finished
        # answers of the last minutes (thousands on a busy server).
        self._expiries: deque[tuple[float, int]] = deque()
        # The open streams of each user, oldest first (a dict keeps its order).
        self._streams: dict[int, dict[str, None]] = {}

    def _answer(self, message_id: int) -> _Answer:
        answer = self._answers.get(message_id)
        if answer is None:
            self._sweep()
            answer = self._answers[message_id] = _Answer()
            # A reader of an answer this log never saw (it finished before a
            # restart) must not leave an entry behind forever; publish clears it.
            self._expire_later(message_id, answer)
        return answer

    def _expire_later(self, message_id: int, answer: _Answer) -> None:
        answer.expires_at = time.monotonic() + settings.CHAT_EVENT_LOG_TTL
        self._expiries.append((answer.expires_at, message_id))

    def _sweep(self) -> None:
        now = time.monotonic()
        while self._expiries and self._expiries[0][0] < now:
            expires_at, message_id = self._expiries.popleft()
            answer = self._answers.get(message_id)
            # Published again since (no expiry), or finished again (a later one).
            if answer is not None and answer.expires_at == expires_at:
                del self._answers[message_id]

    async def publish(self, message_id: int, *events: Event) -> None:
        answer = self._answer(message_id)
        # A new attempt (Continue) after the answer finished: readers from before
        # it fall back to the database.
        answer.finished = None
        for event in events:
            if answer.events and event.seq != answer.events[-1].seq + 1:
                # A new generation of the message after the old events expired,
                # or a Continue: restart the log from the new sequence number.
                answer.events.clear()
            answer.events.append(event)
        answer.expires_at = None
        _wake(answer.waiters)

    async def read_after(self, message_id: int, cursor: int, timeout: float) -> list[Event]:
        answer = self._answer(message_id)
        events = self._after(answer, cursor)
        if events or timeout <= 0:
            return events
        await _woken(answer.waiters, timeout)
        return self._after(answer, cursor)

    @staticmethod
    def _after(answer: _Answer, cursor: int) -> list[Event]:
        if answer.finished:
            first = Event.from_json(answer.finished[0]).seq
            return [Event.from_json(raw) for raw in _from_cursor(answer.finished, first, cursor)]
        return _from_cursor(answer.events, answer.events[0].seq if answer.events else 0, cursor)

    async def finish(self, message_id: int) -> None:
        answer = self._answer(message_id)
        self._expire_later(message_id, answer)
        answer.finished = [event.to_json() for event in answer.events]
        answer.events = []

    async def request_stop(self, message_id: int) -> None:
        answer = self._answer(message_id)
        answer.stop_requested = True
        _wake(answer.stop_waiters)

    async def wait_for_stop(self, message_id: int) -> None:
        answer = self._answer(message_id)
        while not answer.stop_requested:
            future = asyncio.get_running_loop().create_future()
            answer.stop_waiters.append(future)
            try:
                await future
            finally:
                if future in answer.stop_waiters:
                    answer.stop_waiters.remove(future)

    async def clear_stop(self, message_id: int) -> None:
        self._answer(message_id).stop_requested = False

    async def announce_decision(self, message_id: int, call_id: int) -> None:
        answer = self._answer(message_id)
        answer.decided.add(call_id)
        _wake(answer.decision_waiters)

    async def wait_for_decision(self, message_id: int, call_id: int, timeout: float) -> None:
        answer = self._answer(message_id)
        if call_id in answer.decided:
            return
        await _woken(answer.decision_waiters, timeout)

    async def touch_viewer(self, message_id: int) -> None:
        self._answer(message_id).viewed_at = time.monotonic()

    async def seconds_since_viewed(self, message_id: int) -> float | None:
        viewed_at = self._answer(message_id).viewed_at
        return None if viewed_at is None else time.monotonic() - viewed_at

    async def open_stream(self, user_id: int, stream_id: str, limit: int) -> list[str]:
        streams = self._streams.setdefault(user_id, {})
        streams[stream_id] = None
        replaced = list(itertools.islice(streams, max(len(streams) - limit, 0)))
        for old in replaced:
            del streams[old]
        return replaced

    async def is_stream_open(self, user_id: int, stream_id: str) -> bool:
        return stream_id in self._streams.get(user_id, ())

    async def close_stream(self, user_id: int, stream_id: str) -> None:
        streams = self._streams.get(user_id)
        if streams is not None:
            streams.pop(stream_id, None)
            if not streams:
                del self._streams[user_id]


async def _woken(waiters: list[asyncio.Future], timeout: float) -> None:
    """Wait until a future put in `waiters` is resolved, or `timeout` passes."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    waiters.append(future)
    # A timer that resolves the same future: wait_for would add a second
    # future and its callbacks to every wait.
    timer = loop.call_later(timeout, _resolve, future)
    try:
        await future
    finally:
        timer.cancel()
        if future in waiters:
            waiters.remove(future)
