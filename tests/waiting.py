"""Waiting in a test for something to happen: poll the condition until a
deadline, never a fixed sleep. The machine is shared: a sleep long enough for a
busy day makes every other run slow, and one short enough for a quiet day fails
on a busy one.

    stored = wait_until(lambda: server.message(message_id)["content"], message="no text was stored")
    message = await wait_until_async(stored_message, message="no text was stored")
"""

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

TIMEOUT = 10
INTERVAL = 0.05


def wait_until(
    condition: Callable[[], T], *, timeout: float = TIMEOUT, interval: float = INTERVAL, message: str = ""
) -> T:
    """The first true value of `condition()`; fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, message or f"not true within {timeout:g} s"
        time.sleep(interval)
    return value


async def wait_until_async(
    condition: Callable[[], T | Awaitable[T]],
    *,
    timeout: float = TIMEOUT,
    interval: float = INTERVAL,
    message: str = "",
) -> T:
    """wait_until on the event loop; `condition` may be a coroutine function."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        assert time.monotonic() < deadline, message or f"not true within {timeout:g} s"
        await asyncio.sleep(interval)
