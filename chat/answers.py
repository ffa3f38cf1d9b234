"""Starting answers: a new prompt, Continue and Retry.

Each `store_*` function checks the user's limits and stores what the answer starts
with, in one transaction, and returns the `Exchange`; `start()` then hands it to a
background generation. The caller may render the exchange in between (in the same
trip to the database thread): once started, the rows are the generation's."""

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from chat import generation
from chat.eventlog import get_event_log
from chat.generation.liveness import stale_before
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
    """Refuse an answer over the user's limits. The first step of every start,
    inside its transaction: it holds the user's turn until the transaction ends."""
    # Counting the user's answers and adding one must be a single step, or two
    # requests both count the same rows and both start (READ COMMITTED reads
    # only what is committed). A lock on the user's row makes the second request
    # wait for the first to commit, then count its answer too; NO KEY UPDATE,
    # so rows that merely refer to the user are not held up. SQLite has no row
    # locks and needs none: its transactions begin IMMEDIATE (settings.py),
    # holding the database's only write lock.
    get_user_model().objects.select_for_update(no_key=True).filter(pk=user_id).values_list("pk").first()
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


async def start(exchange: Exchange) -> None:
    """Generate the stored exchange's answer in the background."""
    message = exchange.answer
    try:
        await get_event_log().clear_stop(message.pk)
    except Exception:
        # The event log is unreachable (Redis down): the answer is still written
        # to the database, and its stream tells the viewer so.
        logger.warning("event log unreachable, answering anyway message=%s", message.pk, exc_info=True)
    generation.start(exchange.generation, exchange.earlier)


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


# The checks and rows of one start run in one transaction that begins with
# `_check_rate`: a user's starts take turns, so every check sees what the start
# before it stored, and a failure leaves no half-stored prompt.


def store_prompt(conversation: Conversation, prompt: str) -> Exchange:
    """A prompt in an existing conversation, and its answer."""
    return _store_prompt(conversation, conversation.owner_id, clean_prompt(prompt))


def store_new_conversation(owner_id: int, prompt: str) -> Exchange:
    """A first prompt: the conversation, titled after it, and its two messages."""
    return _store_prompt(None, owner_id, clean_prompt(prompt))


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


def _title(prompt: str) -> str:
    line = " ".join(prompt.split())
    return line if len(line) <= TITLE_LENGTH else line[: TITLE_LENGTH - 1].rstrip() + "…"


def _require_latest(message: Message, action: str) -> Message:
    """The message as stored now, if it is still its conversation's latest answer."""
    latest = (
        Message.objects.filter(
            conversation_id=message.conversation_id, role=Message.Role.ASSISTANT, superseded_by__isnull=True
        )
        .order_by("-id")
        .first()
    )
    if latest is None or latest.pk != message.pk:
        raise Refused(f"Only the latest answer can be {action}.", status=409)
    return latest


@transaction.atomic
def store_continue(message: Message) -> Exchange:
    """The stopped or interrupted answer, claimed for a generation that goes on
    from its end."""
    _check_rate(message.conversation.owner_id)
    _require_latest(message, "continued")
    # Conditional: a double click starts one generation, not two.
    claimed = (
        Message.objects.filter(pk=message.pk, status__in=[Status.STOPPED, Status.ERROR, Status.INTERRUPTED])
        .exclude(stop_reason=StopReason.ANSWER_LIMIT)
        .update(
            status=Status.STREAMING,
            stop_reason=StopReason.NONE,
            error="",
            finished_at=None,
            heartbeat_at=timezone.now(),
        )
    )
    if not claimed:
        raise Refused("This answer cannot be continued now.", status=409)
    conversation = message.conversation
    message.refresh_from_db()
    message.conversation = conversation  # refresh_from_db() forgets it
    return Exchange(conversation, message, _new_generation(message, text_offset=len(message.content)))


@transaction.atomic
def store_retry(message: Message) -> Exchange:
    """A new answer in place of `message`, which it supersedes."""
    _check_rate(message.conversation.owner_id)
    # Checked in the user's turn: a second click, or a Continue of the same
    # answer, has stored what makes this one refused.
    if _require_latest(message, "retried").is_streaming:
        raise Refused("Stop the answer before retrying it.", status=409)
    replacement = _new_assistant_message(message.conversation)
    Message.objects.filter(pk=message.pk).update(superseded_by=replacement)
    return Exchange(message.conversation, replacement, _new_generation(replacement, text_offset=0))
