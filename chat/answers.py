"""Starting answers: a new prompt, an edited prompt, Continue and Retry.

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

from chat import generation, quotas, usage
from chat.eventlog import get_event_log
from chat.generation.answer import Setup
from chat.generation.liveness import stale_before
from chat.models import Conversation, Generation, Message, Status, StopReason, UsageEntry
from chat.provider import catalog
from chat.provider.catalog import ModelChoice
from chat.provider.prompt import load_system_prompt
from chat.storable import storable
from chat.tree import leaf_of

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
    # new prompt, or Stop-and-Retry would have no limit. Counted in the usage
    # ledger, which deleting conversations does not shorten.
    recent = UsageEntry.objects.filter(
        user_id=user_id, kind=UsageEntry.Kind.ANSWER, created_at__gte=timezone.now() - timedelta(minutes=1)
    ).count()
    if recent >= settings.CHAT_PROMPTS_PER_MINUTE:
        raise Refused(
            f"You asked for {recent} answers in the last minute (the limit is {settings.CHAT_PROMPTS_PER_MINUTE}). "
            "Wait a moment, then send again.",
            status=429,
        )
    try:
        quotas.check(user_id)
    except quotas.QuotaReached as exc:
        raise Refused(str(exc), status=429) from None


@dataclass
class Exchange:
    """What a request starts an answer with."""

    conversation: Conversation
    answer: Message
    generation: Generation
    prompt: Message | None = None
    # The messages before the answer, when the request knows them without a query.
    earlier: list[Message] | None = None
    # Its model and instructions, read in the start's transaction.
    setup: Setup | None = None


async def start(exchange: Exchange) -> None:
    """Generate the stored exchange's answer in the background."""
    message = exchange.answer
    try:
        await get_event_log().clear_stop(message.pk)
    except Exception:
        # The event log is unreachable (Redis down): the answer is still written
        # to the database, and its stream tells the viewer so.
        logger.warning("event log unreachable, answering anyway message=%s", message.pk, exc_info=True)
    generation.start(exchange.generation, exchange.earlier, exchange.setup)


def _exchange(
    conversation: Conversation,
    answer: Message,
    choice: ModelChoice,
    offered: list[tuple[str, str]],
    *,
    text_offset: int,
    prompt: Message | None = None,
    earlier: list[Message] | None = None,
) -> Exchange:
    """The exchange of `answer`, written by `choice`, with the instructions its
    owner's answers are sent."""
    setup = Setup(choice, load_system_prompt(conversation.owner_id), offered)
    return Exchange(conversation, answer, _new_generation(answer, text_offset=text_offset), prompt, earlier, setup)


def _new_generation(message: Message, *, text_offset: int) -> Generation:
    """The attempt's row, and its entry in the usage ledger."""
    owner_id = message.conversation.owner_id
    usage.record_start(owner_id, message.model, conversation_id=message.conversation_id, message_id=message.pk)
    return Generation.objects.create(
        message=message,
        owner_id=message.conversation.owner_id,
        text_offset=text_offset,
        start_seq=message.last_seq,
        model=message.model,
    )


def _new_assistant_message(conversation: Conversation, prompt: Message, choice: ModelChoice) -> Message:
    """The answer to `prompt` by `choice`, streaming; it becomes the end of the
    branch on screen."""
    now = timezone.now()
    message = Message.objects.create(
        conversation=conversation,
        parent_id=prompt.pk,
        role=Message.Role.ASSISTANT,
        status=Status.STREAMING,
        model=choice.model,
        model_option=choice.option,
        created_at=now,
        heartbeat_at=now,
    )
    message.assume_no_feedback()
    _show(conversation, message.pk)
    return message


# The checks and rows of one start run in one transaction that begins with
# `_check_rate`: a user's starts take turns, so every check sees what the start
# before it stored, and a failure leaves no half-stored prompt.


def _refuse_while_answering(conversation_id: int) -> None:
    """One answer at a time in a conversation, whichever branch it is on: a second
    click, a Continue and a Retry of the same answer, or a prompt sent while the
    answer streams, are refused rather than started twice."""
    streaming = Message.objects.filter(
        conversation_id=conversation_id, status=Status.STREAMING, heartbeat_at__gte=stale_before()
    )
    if streaming.exists():
        raise Refused("An answer is still being written in this conversation. Wait for it or stop it.", status=409)


def store_prompt(
    conversation: Conversation, prompt: str, after: int | None = None, model: str | None = None
) -> Exchange:
    """A prompt in an existing conversation, and its answer. It follows the answer
    `after` (the last one of the branch on the sender's screen), or the active leaf.
    `model`, the picker's value, becomes the conversation's model (None: unchanged)."""
    return _store_prompt(conversation, conversation.owner_id, clean_prompt(prompt), after=after, model=model)


def store_new_conversation(owner_id: int, prompt: str, model: str | None = None) -> Exchange:
    """A first prompt: the conversation, titled after it, and its two messages."""
    return _store_prompt(None, owner_id, clean_prompt(prompt), model=model)


def _picked(model: str, offered: list[tuple[str, str]]) -> int | None:
    try:
        return catalog.picked(model, offered)
    except catalog.NotOffered:
        raise Refused("The model you chose is not offered any more. Reload the page and choose another.") from None


def store_edit(original: Message, prompt: str) -> Exchange:
    """An edited prompt: a sibling of `original`, and its answer, on a new branch."""
    return _store_prompt(original.conversation, original.conversation.owner_id, clean_prompt(prompt), edit=original)


@transaction.atomic
def _store_prompt(
    conversation: Conversation | None,
    owner_id: int,
    prompt: str,
    *,
    after: int | None = None,
    edit: Message | None = None,
    model: str | None = None,
) -> Exchange:
    _check_rate(owner_id)
    now = timezone.now()
    new = conversation is None
    parent_id = None
    offered = catalog.options()
    option_id = _picked(model, offered) if model is not None else None
    if new:
        conversation = Conversation.objects.create(
            owner_id=owner_id, title=_title(prompt), updated_at=now, model_option_id=option_id
        )
    else:
        _refuse_while_answering(conversation.pk)
        parent_id = edit.parent_id if edit is not None else _parent_for_prompt(conversation, after)
        fields = {"updated_at": now}
        if not conversation.messages.filter(role=Message.Role.USER).exists():
            fields["title"] = _title(prompt)
        if model is not None:
            fields["model_option_id"] = conversation.model_option_id = option_id
        Conversation.objects.filter(pk=conversation.pk).update(**fields)
    choice = catalog.resolve(conversation.model_option_id, offered)
    user_message = Message.objects.create(
        conversation=conversation, role=Message.Role.USER, content=prompt, parent_id=parent_id
    )
    assistant = _new_assistant_message(conversation, user_message, choice)
    return _exchange(
        conversation,
        assistant,
        choice,
        offered,
        text_offset=0,
        prompt=user_message,
        # A first prompt's history is itself: the generation need not read it back.
        earlier=[user_message] if parent_id is None else None,
    )


def _parent_for_prompt(conversation: Conversation, after: int | None) -> int | None:
    """What a new prompt follows: the answer `after`, if it is one of this
    conversation's (a page sends the end of the branch it shows, so a prompt sent
    from a tab showing another branch lands in that branch), else the active leaf."""
    if after is not None and conversation.messages.filter(pk=after, role=Message.Role.ASSISTANT).exists():
        return after
    return leaf_of(conversation)


def _title(prompt: str) -> str:
    line = " ".join(prompt.split())
    return line if len(line) <= TITLE_LENGTH else line[: TITLE_LENGTH - 1].rstrip() + "…"


@transaction.atomic
def store_continue(message: Message) -> Exchange:
    """The stopped or interrupted answer, claimed for a generation that goes on
    from its end, by the model that wrote it (the default, if that one is no
    longer offered)."""
    _check_rate(message.conversation.owner_id)
    _refuse_while_answering(message.conversation_id)
    # Continued text would not fit the prompts that already follow the answer.
    if message.children.exists():
        raise Refused("Only the last answer of a branch can be continued.", status=409)
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
    _show(conversation, message.pk)
    offered = catalog.options()
    choice = catalog.resolve(message.model_option_id, offered)
    if choice.option_id != message.model_option_id or choice.model != message.model:
        Message.objects.filter(pk=message.pk).update(model=choice.model, model_option=choice.option)
    message.refresh_from_db()
    message.conversation = conversation  # refresh_from_db() forgets it
    message.model_option = choice.option
    return _exchange(conversation, message, choice, offered, text_offset=len(message.content))


@transaction.atomic
def store_retry(message: Message, model: str | None = None) -> Exchange:
    """A new answer to the prompt of `message`: its sibling, on a new branch,
    written by the conversation's model, or by `model` (a "Retry with" choice,
    which leaves the conversation's model as it was)."""
    _check_rate(message.conversation.owner_id)
    # Checked in the user's turn: a second click, or a Continue of the same
    # answer, has stored what makes this one refused.
    _refuse_while_answering(message.conversation_id)
    offered = catalog.options()
    option_id = _picked(model, offered) if model else message.conversation.model_option_id
    choice = catalog.resolve(option_id, offered)
    prompt = Message(pk=message.parent_id, conversation=message.conversation)
    answer = _new_assistant_message(message.conversation, prompt, choice)
    return _exchange(message.conversation, answer, choice, offered, text_offset=0)


def _show(conversation: Conversation, leaf_id: int) -> None:
    """Make `leaf_id` the end of the branch on screen, for every tab and device."""
    Conversation.objects.filter(pk=conversation.pk).update(active_leaf_id=leaf_id)
    conversation.active_leaf_id = leaf_id
