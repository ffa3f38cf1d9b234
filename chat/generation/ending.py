"""The end of an answer attempt: its rows stored in one transaction, and the
answer rendered once as every viewer's terminal frame shows it.

`store_end` is plain synchronous code (run in the database thread, testable
without an event loop). `store_end_with_retries` tries it again while the
database fails, and ends the answer with what was stored when the database
refuses its text.
"""

import asyncio
import logging
import time
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections, transaction

from chat import usage
from chat.generation.tool_calls import UNFINISHED_TOOL
from chat.models import Generation, Message, Status, StopReason, ToolCall
from chat.rendering import render_message
from chat.storable import reason, refused, storable

logger = logging.getLogger("chat.generation")

UNSTORABLE = "The rest of this answer could not be saved, so it was stopped here. What was saved is kept."


@dataclass
class Outcome:
    status: str
    reason: str = StopReason.NONE
    error: str = ""


class MessageGone(Exception):
    """The answer's rows were deleted (its conversation was) while it ran."""


@dataclass
class AttemptEnd:
    """What one attempt leaves to be stored when it ends."""

    message: Message
    generation: Generation
    content: str
    first_token_at: object
    # The terminal event's number: the stored text includes every event before it.
    last_seq: int
    # This attempt's counts (the message's are summed over its attempts).
    prompt_tokens: int
    completion_tokens: int
    # The provider's own account of its failure, for staff.
    error_detail: str
    tool_calls: list[ToolCall]
    # This attempt started a tool call (and may have left it running).
    tool_calls_started: bool
    # The database refused the text: the end keeps what was stored.
    text_refused: bool = False
    # A reasoning model's thinking (all attempts') and how long it thought.
    reasoning: str = ""
    reasoning_seconds: float | None = None
    # The models the finished answer offers to retry with (rendered without a query).
    retry_models: list[tuple[str, str]] = field(default_factory=list)


def store_end(end: AttemptEnd, outcome: Outcome, now) -> tuple[int, str | None]:
    """The rows in one transaction, then the answer rendered, in one trip to the
    database thread. The statements that wrote, and the HTML (None if it could
    not be rendered: viewers render their own)."""
    try:
        try:
            writes = save_end(end, outcome, now)
        except MessageGone:
            # The conversation was deleted: the attempt's usage is kept anyway.
            _record_usage(end, outcome, now)
            raise
        html = render_end(end, now)
    finally:
        # The generation is done with its thread's connection (rendering may
        # still read feedback): kept or closed as at the end of a request, in this
        # trip rather than one more.
        close_old_connections()
    return writes, html


def save_end(end: AttemptEnd, outcome: Outcome, now) -> int:
    """The rows, in one transaction; the statements that wrote. The message
    takes the values stored once they are."""
    message = end.message
    fields = {
        "content": end.content,
        "reasoning": end.reasoning,
        "reasoning_seconds": end.reasoning_seconds,
        "status": outcome.status,
        "stop_reason": outcome.reason,
        "error": storable(outcome.error),
        "finished_at": now,
        "heartbeat_at": now,
        "first_token_at": end.first_token_at,
        "last_seq": end.last_seq,
        "prompt_tokens": (message.prompt_tokens or 0) + end.prompt_tokens,
        "completion_tokens": (message.completion_tokens or 0) + end.completion_tokens,
    }
    with transaction.atomic():
        row = Message.objects.filter(pk=message.pk)
        if end.text_refused:
            # The text as last stored: what came after, the database refused.
            stored = row.values_list("content", "reasoning").first() or (None, "")
            fields["content"], fields["reasoning"] = stored
        if fields["content"] is None or not row.update(**fields):
            raise MessageGone
        Generation.objects.filter(pk=end.generation.pk).update(
            status=outcome.status,
            stop_reason=outcome.reason,
            error=fields["error"],
            error_detail=end.error_detail,
            finished_at=now,
            first_token_at=end.first_token_at if end.generation.text_offset == 0 else None,
            prompt_tokens=end.prompt_tokens,
            completion_tokens=end.completion_tokens,
        )
        _record_usage(end, outcome, now)
        writes = 3
        if end.tool_calls_started:
            # Only this attempt can have left a call running: a crashed one's were
            # closed when its message was marked interrupted.
            ToolCall.objects.filter(message_id=message.pk, state=ToolCall.State.RUNNING).update(
                state=ToolCall.State.ERROR, error=UNFINISHED_TOOL, finished_at=now
            )
            writes += 1
    for name, value in fields.items():
        setattr(message, name, value)
    return writes


def _record_usage(end: AttemptEnd, outcome: Outcome, now) -> None:
    generation = end.generation
    usage.record_end(
        end.message,
        owner_id=generation.owner_id,
        status=outcome.status,
        prompt_tokens=end.prompt_tokens,
        completion_tokens=end.completion_tokens,
        # A Continue's first token is the answer's, long before this attempt.
        first_token_at=end.first_token_at if generation.text_offset == 0 else None,
        started_at=generation.started_at,
        now=now,
    )


def render_end(end: AttemptEnd, now) -> str | None:
    for call in end.tool_calls:
        if call.state == ToolCall.State.RUNNING:  # as save_end stored it
            call.state, call.error, call.finished_at = ToolCall.State.ERROR, UNFINISHED_TOOL, now
    try:
        return render_message(end.message, tool_calls=end.tool_calls, retry_models=end.retry_models)
    except Exception:
        logger.exception("rendering the finished answer failed message=%s", end.message.pk)
        return None


def render_unsaved(end: AttemptEnd, notice: str) -> str | None:
    """The answer as it was streamed, ended by `notice`: what viewers are shown
    when its end could not be stored (rendered without the database)."""
    end.message.content = end.content
    end.message.reasoning = end.reasoning
    end.message.reasoning_seconds = end.reasoning_seconds
    try:
        return render_message(end.message, notice=notice, tool_calls=end.tool_calls, retry_models=end.retry_models)
    except Exception:
        logger.exception("rendering the unsaved answer failed message=%s", end.message.pk)
        return None


async def store_end_with_retries(end: AttemptEnd, outcome: Outcome, now) -> tuple[Outcome, int, str | None]:
    """store_end(), tried again while the database fails (Django replaces a lost
    connection), for about as long as a heartbeat takes to go stale. A text the
    database refuses ends the answer with what was stored instead. The outcome
    stored, the statements that wrote and the HTML; raises if the end could not
    be stored."""
    deadline = time.monotonic() + settings.CHAT_HEARTBEAT_STALE
    # The first try again is at once: a connection killed while the answer
    # streamed fails its first statement, and viewers wait for the end.
    delay = 0.0
    while True:
        try:
            writes, html = await sync_to_async(store_end)(end, outcome, now)
        except MessageGone:
            raise
        except Exception as exc:
            if refused(exc) and not end.text_refused:
                logger.warning("the text of answer %s cannot be stored: %s", end.message.pk, reason(exc))
                end.text_refused = True
                outcome = Outcome(Status.ERROR, StopReason.INTERNAL_ERROR, UNSTORABLE)
                continue
            if refused(exc) or time.monotonic() + delay > deadline:
                raise
            logger.warning("saving the end of answer %s failed, trying again", end.message.pk, exc_info=True)
            await asyncio.sleep(delay)
            delay = max(delay * 2, settings.CHAT_FLUSH_INTERVAL)
            continue
        return outcome, writes, html
