"""Starting answers: a new prompt, Continue and Retry. Each checks the user's
limits, stores what it starts with, and hands off to a background generation."""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from chat import generation
from chat.eventlog import get_event_log
from chat.liveness import stale_before
from chat.models import Conversation, Generation, Message, Status, StopReason
from chat.storable import storable

logger = logging.getLogger("chat.answers")

TITLE_LENGTH = 60


class Refused(Exception):
    """A request the user must change; the message says how."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def clean_prompt(prompt: str) -> str:
    # The title is made from the cleaned prompt: it is storable too.
    prompt = storable(prompt).strip()
    if not prompt:
        raise Refused("Type a message first.")
    if len(prompt) > settings.CHAT_MAX_PROMPT_CHARS:
        raise Refused(
            f"That message is {len(prompt):,} characters long; the limit is {settings.CHAT_MAX_PROMPT_CHARS:,}. "
            "Shorten it or split it into several messages."
        )
    return prompt


def _check_rate(user_id: int) -> None:
    streaming = Message.objects.filter(
        conversation__owner_id=user_id, status=Status.STREAMING, heartbeat_at__gte=stale_before()
    ).count()
    if streaming >= settings.CHAT_MAX_CONCURRENT_ANSWERS:
        raise Refused(
            f"You already have {streaming} answers being written (the limit is "
            f"{settings.CHAT_MAX_CONCURRENT_ANSWERS}). Wait for one to finish or stop it.",
            status=429,
        )
    # Every answer attempt is a provider request: Retry and Continue count like a
    # new prompt, or Stop-and-Retry would have no limit.
    recent = Generation.objects.filter(owner_id=user_id, started_at__gte=timezone.now() - timedelta(minutes=1)).count()
    if recent >= settings.CHAT_PROMPTS_PER_MINUTE:
        raise Refused(
            f"You asked for {recent} answers in the last minute (the limit is {settings.CHAT_PROMPTS_PER_MINUTE}). "
            "Wait a moment, then send again.",
            status=429,
        )


@dataclass
class Exchange:
    """What a request starts an answer with."""

    conversation: Conversation
    answer: Message
    generation: Generation
    prompt: Message | None = None
    # The messages before the answer, when the request knows them without a query.
    earlier: list[Message] | None = None


# Renders the fragment that shows a started exchange. It runs in the same trip to
# the database thread as the storing, before the generation starts: the rows are
# the generation's from then on.
Render = Callable[[Exchange], str]


async def _start(exchange: Exchange) -> None:
    message = exchange.answer
    try:
        await get_event_log().clear_stop(message.pk)
    except Exception:
        # The event log is unreachable (Redis down): the answer is still written
        # to the database, and its stream tells the viewer so.
        logger.warning("event log unreachable, answering anyway message=%s", message.pk, exc_info=True)
    generation.start(exchange.generation, exchange.earlier)


async def _begin(store: Callable[[], Exchange], render: Render) -> tuple[Exchange, str]:
    """Store (checks and rows, in one transaction) and render in one trip to the
    database thread, then start the generation: the started exchange and its HTML."""
    exchange, html = await sync_to_async(_stored_and_rendered)(store, render)
    await _start(exchange)
    return exchange, html


def _stored_and_rendered(store: Callable[[], Exchange], render: Render) -> tuple[Exchange, str]:
    exchange = store()
    return exchange, render(exchange)


def _new_generation(message: Message, *, text_offset: int) -> Generation:
    return Generation.objects.create(
        message=message,
        owner_id=message.conversation.owner_id,
        text_offset=text_offset,
        start_seq=message.last_seq,
        model=message.model,
    )


def _new_assistant_message(conversation: Conversation) -> Message:
    now = timezone.now()
    message = Message.objects.create(
        conversation=conversation,
        role=Message.Role.ASSISTANT,
        status=Status.STREAMING,
        model=settings.CHAT_MODEL,
        created_at=now,
        heartbeat_at=now,
    )
    message.assume_no_feedback()
    return message


# The checks and rows of one prompt run in one transaction: the limits cannot be
# passed twice by two requests at once, and a failure leaves no half-stored prompt.


@transaction.atomic
def _store_prompt(conversation: Conversation | None, owner_id: int, prompt: str) -> Exchange:
    _check_rate(owner_id)
    now = timezone.now()
    new = conversation is None
    if new:
        conversation = Conversation.objects.create(owner_id=owner_id, title=_title(prompt), updated_at=now)
    else:
        if conversation.messages.filter(status=Status.STREAMING, heartbeat_at__gte=stale_before()).exists():
            raise Refused("An answer is still being written in this conversation. Wait for it or stop it.", status=409)
        fields = {"updated_at": now}
        if not conversation.messages.filter(role=Message.Role.USER).exists():
            fields["title"] = _title(prompt)
        Conversation.objects.filter(pk=conversation.pk).update(**fields)
    user_message = Message.objects.create(conversation=conversation, role=Message.Role.USER, content=prompt)
    assistant = _new_assistant_message(conversation)
    return Exchange(
        conversation,
        assistant,
        _new_generation(assistant, text_offset=0),
        prompt=user_message,
        # A new conversation's history is its prompt: the generation need not read it back.
        earlier=[user_message] if new else None,
    )


async def send_prompt(conversation: Conversation, prompt: str, render: Render) -> tuple[Exchange, str]:
    """A prompt in an existing conversation: it and its answer stored and shown
    by `render`, the answer started."""
    prompt = clean_prompt(prompt)
    return await _begin(lambda: _store_prompt(conversation, conversation.owner_id, prompt), render)


async def start_conversation(owner_id: int, prompt: str, render: Render) -> tuple[Exchange, str]:
    """A first prompt: the conversation, titled after it, and its two messages,
    shown by `render`; the answer started."""
    prompt = clean_prompt(prompt)
    return await _begin(lambda: _store_prompt(None, owner_id, prompt), render)


def _title(prompt: str) -> str:
    line = " ".join(prompt.split())
    return line if len(line) <= TITLE_LENGTH else line[: TITLE_LENGTH - 1].rstrip() + "…"


async def latest_assistant(conversation_id: int) -> Message | None:
    return (
        await Message.objects.filter(
            conversation_id=conversation_id, role=Message.Role.ASSISTANT, superseded_by__isnull=True
        )
        .order_by("-id")
        .afirst()
    )


async def _require_latest(message: Message, action: str) -> None:
    latest = await latest_assistant(message.conversation_id)
    if latest is None or latest.pk != message.pk:
        raise Refused(f"Only the latest answer can be {action}.", status=409)


@transaction.atomic
def _claim_for_continue(message: Message) -> Exchange:
    _check_rate(message.conversation.owner_id)
    # Conditional: a double click starts one generation, not two.
    claimed = (
        Message.objects.filter(pk=message.pk, status__in=[Status.STOPPED, Status.ERROR, Status.INTERRUPTED])
        .exclude(stop_reason=StopReason.ANSWER_LIMIT)
        .update(
            status=Status.STREAMING, stop_reason=StopReason.NONE, error="", finished_at=None, heartbeat_at=timezone.now()
        )
    )
    if not claimed:
        raise Refused("This answer cannot be continued now.", status=409)
    conversation = message.conversation
    message.refresh_from_db()
    message.conversation = conversation  # refresh_from_db() forgets it
    return Exchange(conversation, message, _new_generation(message, text_offset=len(message.content)))


async def continue_answer(message: Message, render: Render) -> tuple[Exchange, str]:
    await _require_latest(message, "continued")
    return await _begin(lambda: _claim_for_continue(message), render)


@transaction.atomic
def _replace(message: Message) -> Exchange:
    _check_rate(message.conversation.owner_id)
    replacement = _new_assistant_message(message.conversation)
    Message.objects.filter(pk=message.pk).update(superseded_by=replacement)
    return Exchange(message.conversation, replacement, _new_generation(replacement, text_offset=0))


async def retry_answer(message: Message, render: Render) -> tuple[Exchange, str]:
    await _require_latest(message, "retried")
    if message.is_streaming:
        raise Refused("Stop the answer before retrying it.", status=409)
    return await _begin(lambda: _replace(message), render)
