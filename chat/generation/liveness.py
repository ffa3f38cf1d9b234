"""An answer whose generation died (server restart, crash) must not spin forever:
a message still `streaming` whose heartbeat is stale is marked interrupted."""

import logging
from datetime import timedelta

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from chat import events, usage
from chat.eventlog import get_event_log
from chat.events import Event
from chat.generation.tasks import running_task
from chat.models import Generation, Message, Status, StopReason, ToolCall

logger = logging.getLogger("chat.liveness")

INTERRUPTED_ERROR = "The server stopped while this answer was being written. Continue picks up where it stopped."


def stale_before():
    return timezone.now() - timedelta(seconds=settings.CHAT_HEARTBEAT_STALE)


def _stale_filter() -> Q:
    before = stale_before()
    return Q(status=Status.STREAMING) & (
        Q(heartbeat_at__lt=before) | Q(heartbeat_at__isnull=True, created_at__lt=before)
    )


async def interrupt_if_stale(message: Message) -> bool:
    """Mark `message` interrupted if its generation is gone. True if it was.

    The update is conditional on the stale heartbeat, so a generation that is in
    fact alive (it just wrote) is never overruled.
    """
    if message.status != Status.STREAMING or running_task(message.pk) is not None:
        return False
    now = timezone.now()
    changed = await Message.objects.filter(_stale_filter(), pk=message.pk).aupdate(
        status=Status.INTERRUPTED,
        stop_reason=StopReason.SERVER_RESTART,
        error=INTERRUPTED_ERROR,
        finished_at=now,
        # The error that ends the open streams gets a sequence number of its own.
        last_seq=F("last_seq") + 1,
    )
    if not changed:
        return False
    attempts = Generation.objects.filter(message_id=message.pk, status=Status.STREAMING)
    # The usage ledger counts the attempt as interrupted (its tokens died with it).
    ended = [attempt async for attempt in attempts.only("owner_id", "started_at")]
    await attempts.aupdate(
        status=Status.INTERRUPTED, stop_reason=StopReason.SERVER_RESTART, error=INTERRUPTED_ERROR, finished_at=now
    )
    for attempt in ended:
        await sync_to_async(usage.record_end)(
            message,
            owner_id=attempt.owner_id,
            status=Status.INTERRUPTED,
            prompt_tokens=0,
            completion_tokens=0,
            first_token_at=None,
            started_at=attempt.started_at,
            now=now,
        )
    await ToolCall.objects.filter(message_id=message.pk, state=ToolCall.State.RUNNING).aupdate(
        state=ToolCall.State.ERROR, error="The server stopped before the tool finished.", finished_at=now
    )
    await message.arefresh_from_db()
    await _end_the_log(message)
    return True


async def _end_the_log(message: Message) -> None:
    """A shared log (Redis) outlives the worker that died, with events it never
    stored: the interruption ends it, so no reader is served them."""
    data = {"status": message.status, "reason": message.stop_reason, "message": message.error}
    try:
        await get_event_log().publish(message.pk, Event(message.last_seq, events.ERROR, data))
        await get_event_log().finish(message.pk)
    except Exception:
        logger.warning("event log unreachable message=%s", message.pk, exc_info=True)
