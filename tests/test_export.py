"""Exports of stored conversations: JSON keeps every stored field, CSV has a row
per message and is safe to open in a spreadsheet."""

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chat.export import CSV_COLUMNS, NOT_EXPORTED, conversations_as_csv, conversations_as_json
from chat.models import Conversation, Feedback, Generation, Message, Status, StopReason, ToolCall

# Microseconds on purpose: the export must not round timestamps.
T0 = datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)


def stored(obj) -> dict:
    """Every stored column of a row as the ORM has it, but the staff-only ones."""
    return {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields if f.attname not in NOT_EXPORTED}


def assert_round_trips(exported: dict, obj) -> None:
    """The exported row equals the stored one, field by field (datetimes parsed)."""
    for name, value in stored(obj).items():
        got = exported[name]
        if isinstance(value, datetime):
            got = datetime.fromisoformat(got)
        assert (name, got) == (name, value)


@pytest.fixture
def full_conversation(alice, admin_user) -> Conversation:
    conversation = Conversation.objects.create(
        owner=alice,
        title='Quotes "and", commas\nnewlines',
        created_at=T0,
        updated_at=T0 + timedelta(hours=1),
        flagged=True,
        review_note="look",
        reviewed_by=admin_user,
        reviewed_at=T0 + timedelta(days=1),
    )
    prompt = Message.objects.create(
        conversation=conversation, role="user", content="=1+1 and <b>html</b>", created_at=T0
    )
    failed = Message.objects.create(
        conversation=conversation,
        role="assistant",
        content="Half",
        status=Status.ERROR,
        stop_reason=StopReason.PROVIDER_ERROR,
        error="timeout",
        model="gpt-x",
        prompt_tokens=5,
        completion_tokens=1,
        created_at=T0 + timedelta(seconds=1),
        last_seq=3,
    )
    answer = Message.objects.create(
        conversation=conversation,
        role="assistant",
        content="First, then\nsecond.",
        model="gpt-x",
        prompt_tokens=11,
        completion_tokens=22,
        created_at=T0 + timedelta(seconds=2),
        first_token_at=T0 + timedelta(seconds=2.25),
        finished_at=T0 + timedelta(seconds=4),
        heartbeat_at=T0 + timedelta(seconds=4),
        last_seq=9,
        flagged=True,
    )
    # Two attempts at one prompt (a Retry): siblings, the second on screen.
    Message.objects.filter(pk__in=[failed.pk, answer.pk]).update(parent=prompt)
    Conversation.objects.filter(pk=conversation.pk).update(active_leaf=answer)
    owner_id = answer.conversation.owner_id
    Generation.objects.create(
        message=answer,
        owner_id=owner_id,
        text_offset=0,
        start_seq=0,
        model="gpt-x",
        started_at=T0,
        status=Status.STOPPED,
        stop_reason=StopReason.USER_STOP,
        completion_tokens=3,
        error_detail="RateLimitError status=429: org-Kq7TzXw2",
    )
    Generation.objects.create(
        message=answer,
        owner_id=owner_id,
        text_offset=6,
        start_seq=4,
        model="gpt-x",
        started_at=T0 + timedelta(seconds=3),
        status=Status.COMPLETE,
    )
    ToolCall.objects.create(
        message=answer,
        call_id="call_1",
        name="calculator",
        arguments='{"expression": "2+2"}',
        result="4",
        state="ok",
        started_at=T0,
        finished_at=T0 + timedelta(milliseconds=5),
        text_offset=6,
        start_seq=5,
        result_seq=6,
    )
    ToolCall.objects.create(
        message=answer,
        call_id="call_2",
        name="current_time",
        arguments="{}",
        error="no clock",
        state="error",
        start_seq=7,
        result_seq=8,
    )
    Feedback.objects.create(message=answer, user=alice, rating=-1, comment="wrong", created_at=T0)
    conversation.refresh_from_db()
    return conversation


@pytest.mark.django_db
def test_json_round_trips_every_stored_field(full_conversation):
    data = json.loads(conversations_as_json(Conversation.objects.all()))

    [exported] = data["conversations"]
    assert_round_trips(exported, full_conversation)
    assert exported["owner_username"] == "alice"
    messages = list(Message.objects.filter(conversation=full_conversation).order_by("created_at", "id"))
    assert [m["id"] for m in exported["messages"]] == [m.pk for m in messages]
    # The tree: both attempts under the prompt, the end of the branch on screen.
    prompt, _, answer = messages
    assert [m["parent_id"] for m in exported["messages"]] == [None, prompt.pk, prompt.pk]
    assert exported["active_leaf_id"] == answer.pk
    for row, message in zip(exported["messages"], messages, strict=True):
        assert_round_trips(row, message)
        calls = list(message.tool_calls.order_by("start_seq", "id"))
        assert len(row["tool_calls"]) == len(calls)
        for exported_call, call in zip(row["tool_calls"], calls, strict=True):
            assert_round_trips(exported_call, call)
        generations = list(message.generations.order_by("started_at", "id"))
        assert len(row["generations"]) == len(generations)
        for exported_generation, generation in zip(row["generations"], generations, strict=True):
            assert_round_trips(exported_generation, generation)
        if hasattr(message, "feedback"):
            assert_round_trips(row["feedback"], message.feedback)
        else:
            assert row["feedback"] is None
    assert sum(len(m["tool_calls"]) for m in exported["messages"]) == 2
    # The provider's own account of a failure stays in admin.
    assert {"error_detail"} == NOT_EXPORTED
    assert "org-Kq7TzXw2" not in json.dumps(data)


@pytest.mark.django_db
def test_csv_has_a_row_per_message(full_conversation):
    rows = list(csv.DictReader(io.StringIO(conversations_as_csv(Conversation.objects.all()))))

    messages = list(Message.objects.filter(conversation=full_conversation).order_by("created_at", "id"))
    assert list(rows[0]) == CSV_COLUMNS
    assert [int(r["message_id"]) for r in rows] == [m.pk for m in messages]
    for row, message in zip(rows, messages, strict=True):
        assert int(row["conversation_id"]) == full_conversation.pk
        assert row["conversation_title"] == full_conversation.title
        assert row["owner"] == "alice"
        assert (row["role"], row["status"], row["stop_reason"], row["model"]) == (
            message.role,
            message.status,
            message.stop_reason,
            message.model,
        )
        assert row["prompt_tokens"] == ("" if message.prompt_tokens is None else str(message.prompt_tokens))
        assert row["created_at"] == message.created_at.isoformat()
        assert row["error"] == message.error
    assert rows[2]["content"] == "First, then\nsecond."
    assert rows[2]["feedback_rating"] == "-1"
    assert rows[1]["parent_id"] == rows[2]["parent_id"] == rows[0]["message_id"]
    assert [r["on_active_branch"] for r in rows] == ["1", "0", "1"]


@pytest.mark.django_db
def test_csv_defuses_spreadsheet_formulas(full_conversation):
    rows = list(csv.DictReader(io.StringIO(conversations_as_csv(Conversation.objects.all()))))

    assert rows[0]["content"] == "'=1+1 and <b>html</b>"


@pytest.mark.django_db
def test_exports_take_a_constant_number_of_queries(full_conversation, alice):
    def queries() -> tuple[int, int]:
        with CaptureQueriesContext(connection) as json_queries:
            conversations_as_json(Conversation.objects.all())
        with CaptureQueriesContext(connection) as csv_queries:
            conversations_as_csv(Conversation.objects.all())
        return len(json_queries), len(csv_queries)

    few = queries()
    for i in range(5):
        conversation = Conversation.objects.create(owner=alice, title=f"more {i}")
        answer = Message.objects.create(conversation=conversation, role="assistant", content="x")
        ToolCall.objects.create(message=answer, call_id="c", name="calculator")
    assert queries() == few
