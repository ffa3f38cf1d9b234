"""The event log inside this process: nothing to install, one process only."""

import asyncio
import time
from dataclasses import dataclass, field

from django.conf import settings

from chat.events import Event


@dataclass
class _Answer:
    events: list[Event] = field(default_factory=list)
    waiters: list[asyncio.Future] = field(default_factory=list)
    stop_waiters: list[asyncio.Future] = field(default_factory=list)
    stop_requested: bool = False
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


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


class MemoryEventLog:
    def __init__(self) -> None:
        self._answers: dict[int, _Answer] = {}

    def _answer(self, message_id: int) -> _Answer:
        answer = self._answers.get(message_id)
        if answer is None:
            self._sweep()
            answer = self._answers[message_id] = _Answer()
        return answer

    def _sweep(self) -> None:
        now = time.monotonic()
        for message_id in [k for k, a in self._answers.items() if a.expires_at and a.expires_at < now]:
            del self._answers[message_id]

    async def publish(self, message_id: int, event: Event) -> None:
        answer = self._answer(message_id)
        if answer.events and event.seq != answer.events[-1].seq + 1:
            # A new generation of the message after the old events expired, or
            # a Continue: restart the log from the new sequence number.
            answer.events.clear()
        answer.events.append(event)
        answer.expires_at = None
        _wake(answer.waiters)

    async def read_after(self, message_id: int, cursor: int, timeout: float) -> list[Event]:
        answer = self._answer(message_id)
        events = self._after(answer, cursor)
        if events or timeout <= 0:
            return events
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        answer.waiters.append(future)
        # A timer that resolves the same future: wait_for would add a second
        # future and its callbacks to every wait.
        timer = loop.call_later(timeout, _resolve, future)
        try:
            await future
        finally:
            timer.cancel()
            if future in answer.waiters:
                answer.waiters.remove(future)
        return self._after(answer, cursor)

    @staticmethod
    def _after(answer: _Answer, cursor: int) -> list[Event]:
        if not answer.events:
            return []
        first = answer.events[0].seq
        if cursor + 1 < first:
            # The log does not reach back to the cursor: the caller falls back
            # to the database.
            return []
        return answer.events[max(cursor + 1 - first, 0) :]

    async def finish(self, message_id: int) -> None:
        self._answer(message_id).expires_at = time.monotonic() + settings.CHAT_EVENT_LOG_TTL

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

    async def touch_viewer(self, message_id: int) -> None:
        self._answer(message_id).viewed_at = time.monotonic()

    async def seconds_since_viewed(self, message_id: int) -> float | None:
        viewed_at = self._answer(message_id).viewed_at
        return None if viewed_at is None else time.monotonic() - viewed_at
