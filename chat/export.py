"""Stored conversations as files for review outside the admin.

JSON is the faithful copy: every stored field of the conversation, its messages,
their tool calls, generations and feedback, keyed by the field's column name
(`conversation_id`, `parent_id`), with datetimes in full ISO 8601. The tree is
there whole: each message's `parent_id`, each conversation's `active_leaf_id`
(the end of the branch its user has on screen), every branch's messages. The one
exception is the provider's own account of a failure (`error_detail`): it may hold
masked keys, organisation ids and internal host names, and stays in admin.

CSV is for spreadsheets: one row per message of every branch, with its
`parent_id`, whether it is on the branch the user has on screen, and a reasoning
model's thinking (`reasoning`, and how long it thought) next to its answer. A
cell that starts like a formula (`=`, `+`, `-`, `@`, tab, carriage return) gets a
leading `'` so opening the file cannot run model or user text as a formula; use
the JSON for exact text.
"""

import csv
import io
import json
from datetime import datetime

from django.db.models import Model, Prefetch, QuerySet

from chat.models import Conversation, Generation, Message, ToolCall

CSV_COLUMNS = [
    "conversation_id",
    "conversation_title",
    "owner",
    "message_id",
    "role",
    "status",
    "stop_reason",
    "model",
    "prompt_tokens",
    "completion_tokens",
    "created_at",
    "first_token_at",
    "finished_at",
    "parent_id",
    "on_active_branch",
    "flagged",
    "feedback_rating",
    "error",
    "reasoning_seconds",
    "reasoning",
    "content",
]

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

# Stored for staff in admin, never in a file that leaves it.
NOT_EXPORTED = frozenset({"error_detail"})


def conversations_as_json(queryset: QuerySet[Conversation]) -> str:
    conversations = []
    for conversation in _with_everything(queryset):
        data = _fields(conversation)
        data["owner_username"] = conversation.owner.get_username()
        data["messages"] = [_message(m) for m in conversation.messages.all()]
        conversations.append(data)
    return json.dumps({"conversations": conversations}, ensure_ascii=False, indent=2)


def conversations_as_csv(queryset: QuerySet[Conversation]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for conversation in _with_everything(queryset):
        messages = list(conversation.messages.all())
        shown = _active_branch(conversation, messages)
        for m in messages:
            feedback = _feedback_of(m)
            writer.writerow(
                [
                    conversation.pk,
                    _cell(conversation.title),
                    _cell(conversation.owner.get_username()),
                    m.pk,
                    m.role,
                    m.status,
                    m.stop_reason,
                    _cell(m.model),
                    _blank_if_none(m.prompt_tokens),
                    _blank_if_none(m.completion_tokens),
                    _iso(m.created_at),
                    _iso(m.first_token_at),
                    _iso(m.finished_at),
                    _blank_if_none(m.parent_id),
                    int(m.pk in shown),
                    int(m.flagged),
                    "" if feedback is None else feedback.rating,
                    _cell(m.error),
                    _blank_if_none(m.reasoning_seconds),
                    _cell(m.reasoning),
                    _cell(m.content),
                ]
            )
    return out.getvalue()


def _active_branch(conversation: Conversation, messages: list[Message]) -> set[int]:
    """The ids on the path from the root to the conversation's active leaf."""
    parents = {m.pk: m.parent_id for m in messages}
    shown, at = set(), conversation.active_leaf_id
    while at in parents:
        shown.add(at)
        at = parents[at]
    return shown


def _with_everything(queryset: QuerySet[Conversation]) -> QuerySet[Conversation]:
    messages = Message.objects.order_by("created_at", "id").select_related("feedback")
    return (
        queryset.select_related("owner")
        .order_by("pk")
        .prefetch_related(
            Prefetch("messages", queryset=messages),
            Prefetch("messages__tool_calls", queryset=ToolCall.objects.order_by("start_seq", "id")),
            Prefetch("messages__generations", queryset=Generation.objects.order_by("started_at", "id")),
        )
    )


def _message(message: Message) -> dict:
    data = _fields(message)
    data["tool_calls"] = [_fields(c) for c in message.tool_calls.all()]
    data["generations"] = [_fields(g) for g in message.generations.all()]
    feedback = _feedback_of(message)
    data["feedback"] = None if feedback is None else _fields(feedback)
    return data


def _fields(obj: Model) -> dict:
    """Every stored column of a row (but NOT_EXPORTED), foreign keys as ids."""
    return {
        f.attname: _json_value(getattr(obj, f.attname))
        for f in obj._meta.concrete_fields
        if f.attname not in NOT_EXPORTED
    }


def _json_value(value):
    return value.isoformat() if isinstance(value, datetime) else value


def _feedback_of(message: Message):
    try:
        return message.feedback
    except Message.feedback.RelatedObjectDoesNotExist:
        return None


def _iso(value: datetime | None) -> str:
    return "" if value is None else value.isoformat()


def _blank_if_none(value) -> object:
    return "" if value is None else value


def _cell(text: str) -> str:
    return "'" + text if text.startswith(_FORMULA_STARTS) else text
