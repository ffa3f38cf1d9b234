"""Starting answers: a new prompt, Continue and Retry. Each checks the user's
limits, stores what it starts with, and hands off to a background generation."""

import logging
from datetime import timedelta

from django.conf import settings
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


async def _check_rate(user_id: int) -> None:
    streaming = await Message.objects.filter(
        conversation__owner_id=user_id, status=Status.STREAMING, heartbeat_at__gte=stale_before()
    ).acount()
    if streaming >= settings.CHAT_MAX_CONCURRENT_ANSWERS:
        raise Refused(
            f"You already have {streaming} answers being written (the limit is "
            f"{settings.CHAT_MAX_CONCURRENT_ANSWERS}). Wait for one to finish or stop it.",
            status=429,
        )
    # Every answer attempt is a provider request: Retry and Continue count like a
    # new prompt, or Stop-and-Retry would have no limit.
    recent = await Generation.objects.filter(
        message__conversation__owner_id=user_id,
        started_at__gte=timezone.now() - timedelta(minutes=1),
    ).acount()
    if recent >= settings.CHAT_PROMPTS_PER_MINUTE:
        raise Refused(
            f"You asked for {recent} answers in the last minute (the limit is {settings.CHAT_PROMPTS_PER_MINUTE}). "
            "Wait a moment, then send again.",
            status=429,
        )


async def _start(message: Message, *, text_offset: int) -> None:
    gen = await Generation.objects.acreate(
        message=message, text_offset=text_offset, start_seq=message.last_seq, model=message.model
    )
    try:
        await get_event_log().clear_stop(message.pk)
    except Exception:
        # The event log is unreachable (Redis down): the answer is still written
        # to the database, and its stream tells the viewer so.
        logger.warning("event log unreachable, answering anyway message=%s", message.pk, exc_info=True)
    generation.start(message.pk, gen.pk)


async def _new_assistant_message(conversation: Conversation) -> Message:
    now = timezone.now()
    return await Message.objects.acreate(
        conversation=conversation,
        role=Message.Role.ASSISTANT,
        status=Status.STREAMING,
        model=settings.CHAT_MODEL,
        created_at=now,
        heartbeat_at=now,
    )


async def send_prompt(conversation: Conversation, prompt: str) -> tuple[Message, Message]:
    prompt = clean_prompt(prompt)
    await _check_rate(conversation.owner_id)
    if await conversation.messages.filter(status=Status.STREAMING, heartbeat_at__gte=stale_before()).aexists():
        raise Refused("An answer is still being written in this conversation. Wait for it or stop it.", status=409)
    user_message = await Message.objects.acreate(conversation=conversation, role=Message.Role.USER, content=prompt)
    assistant = await _new_assistant_message(conversation)
    fields = {"updated_at": timezone.now()}
    if not await conversation.messages.filter(role=Message.Role.USER).exclude(pk=user_message.pk).aexists():
        fields["title"] = _title(prompt)
    await Conversation.objects.filter(pk=conversation.pk).aupdate(**fields)
    await _start(assistant, text_offset=0)
    return user_message, assistant


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


async def continue_answer(message: Message) -> Message:
    await _require_latest(message, "continued")
    await _check_rate(message.conversation.owner_id)
    now = timezone.now()
    # Conditional: a double click starts one generation, not two.
    claimed = await (
        Message.objects.filter(pk=message.pk, status__in=[Status.STOPPED, Status.ERROR, Status.INTERRUPTED])
        .exclude(stop_reason=StopReason.ANSWER_LIMIT)
        .aupdate(status=Status.STREAMING, stop_reason=StopReason.NONE, error="", finished_at=None, heartbeat_at=now)
    )
    if not claimed:
        raise Refused("This answer cannot be continued now.", status=409)
    await message.arefresh_from_db()
    await _start(message, text_offset=len(message.content))
    return message


async def retry_answer(message: Message) -> Message:
    await _require_latest(message, "retried")
    if message.is_streaming:
        raise Refused("Stop the answer before retrying it.", status=409)
    await _check_rate(message.conversation.owner_id)
    replacement = await _new_assistant_message(message.conversation)
    await Message.objects.filter(pk=message.pk).aupdate(superseded_by=replacement)
    await _start(replacement, text_offset=0)
    return replacement
