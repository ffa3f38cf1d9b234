"""Generations as background tasks of this process: started apart from the
request that asked for them, kept so that they are not garbage-collected (and
so that the liveness check and tests can see them), supervised so that nothing
they raise goes unsaid."""

import asyncio
import contextvars
import logging

from asgiref.sync import sync_to_async
from django.db import close_old_connections

from chat.generation.answer import Answer, Setup
from chat.models import Generation, Message
from chat.serving.db_threads import shared_context

logger = logging.getLogger("chat.generation")

_running: dict[int, asyncio.Task] = {}


def start(generation: Generation, earlier: list[Message] | None, setup: Setup) -> asyncio.Task:
    """Start generating in the background. `generation.message` (with its
    conversation) is the generation's from now on; `earlier`, the messages before
    it, when the caller knows them; `setup`, its model and instructions. A fresh
    context: the task must not inherit the request's (its thread-sensitive ORM
    executor ends with it)."""
    message_id = generation.message_id
    task = asyncio.get_running_loop().create_task(
        _run(generation, earlier, setup), context=contextvars.Context(), name=f"generation-{message_id}"
    )
    _running[message_id] = task
    task.add_done_callback(lambda t: _running.pop(message_id, None) if _running.get(message_id) is t else None)
    return task


def running_task(message_id: int) -> asyncio.Task | None:
    return _running.get(message_id)


async def _run(generation: Generation, earlier: list[Message] | None, setup: Setup) -> None:
    async with shared_context():
        try:
            await Answer(generation, earlier, setup).run()
        except BaseException as exc:
            # The final save releases the thread's connection in its own trip
            # (ending.store_end); an answer that failed before or during it, here.
            await sync_to_async(close_old_connections)()
            if not isinstance(exc, Exception):
                raise
            # Answer.run() ends every answer itself; should that fail, it is said
            # here, not by asyncio when the task is collected.
            logger.exception("generation failed message=%s", generation.message_id)
