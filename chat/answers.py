"""Starting answers: a new prompt, Continue and Retry. Each checks the user's
limits, stores what it starts with, and hands off to a background generation."""

import logging
from datetime import timedelta

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from chat import generation
from chat.eventlog import get_event_log
from chat.liveness import stale_before
from chat.models import Conversation, Generation, Message, Status, StopReason

logger = logging.getLogger("chat.answers")

TITLE_LENGTH = 60


class Refused(Exception):
    """A request the user must change; the message says how."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def clean_prompt(prompt: str) -> str:
    prompt = prompt.strip()
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
    recent = Generation.objects.filter(
        message__conversation__owner_id=user_id,
        started_at__gte=timezone.now() - timedelta(minutes=1),
    ).count()
    if recent >= settings.CHAT_PROMPTS_PER_MINUTE:
        raise Refused(
            f"You asked for {recent} answers in the last minute (the limit is {settings.CHAT_PROMPTS_PER_MINUTE}). "
            "Wait a moment, then send again.",
            status=429,
        )


async def _start(message: Message, gen: Generation) -> None:
    try:
        await get_event_log().clear_stop(message.pk)
    except Exception:
        # The event log is unreachable (Redis down): the answer is still written
        # to the database, and its stream tells the viewer so.
        logger.warning("event log unreachable, answering anyway message=%s", message.pk, exc_info=True)
    generation.start(message.pk, gen.pk)


def _new_generation(message: Message, *, text_offset: int) -> Generation:
    return Generation.objects.create(
        message=message, text_offset=text_offset, start_seq=message.last_seq, model=message.model
    )


def _new_assistant_message(conversation: Conversation) -> Message:
    now = timezone.now()
    return Message.objects.create(
        conversation=conversation,
        role=Message.Role.ASSISTANT,
        status=Status.STREAMING,
        model=settings.CHAT_MODEL,
        created_at=now,
        heartbeat_at=now,
    )


# The checks and rows of one prompt run in one transaction, in one trip to the
# database thread: the limits cannot be passed twice by two requests at once,
# and a failure leaves no half-stored prompt.


@sync_to_async
@transaction.atomic
def _store_prompt(conversation: Conversation | None, owner_id: int, prompt: str):
    _check_rate(owner_id)
    now = timezone.now()
    if conversation is None:
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
    return conversation, user_message, assistant, _new_generation(assistant, text_offset=0)


async def send_prompt(conversation: Conversation, prompt: str) -> tuple[Message, Message]:
    """A prompt in an existing conversation: its two messages, the answer started."""
    _, user_message, assistant, gen = await _store_prompt(conversation, conversation.owner_id, clean_prompt(prompt))
    await _start(assistant, gen)
    return user_message, assistant


async def start_conversation(owner_id: int, prompt: str) -> tuple[Conversation, Message, Message]:
    """A first prompt: the conversation, titled after it, and its two messages."""
    conversation, user_message, assistant, gen = await _store_prompt(None, owner_id, clean_prompt(prompt))
    await _start(assistant, gen)
    return conversation, user_message, assistant


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


@sync_to_async
@transaction.atomic
def _claim_for_continue(message: Message) -> Generation:
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
    message.refresh_from_db()
    return _new_generation(message, text_offset=len(message.content))


async def continue_answer(message: Message) -> Message:
    await _require_latest(message, "continued")
    await _start(message, await _claim_for_continue(message))
    return message


@sync_to_async
@transaction.atomic
def _replace(message: Message) -> tuple[Message, Generation]:
    _check_rate(message.conversation.owner_id)
    replacement = _new_assistant_message(message.conversation)
    Message.objects.filter(pk=message.pk).update(superseded_by=replacement)
    return replacement, _new_generation(replacement, text_offset=0)


async def retry_answer(message: Message) -> Message:
    await _require_latest(message, "retried")
    if message.is_streaming:
        raise Refused("Stop the answer before retrying it.", status=409)
    replacement, gen = await _replace(message)
    await _start(replacement, gen)
    return replacement
