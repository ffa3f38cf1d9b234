"""One structured log line per answer, for operators: who, which message, which
model, tokens, time to first token, duration and outcome; never what the user
wrote, never a secret."""

import json
import logging
from datetime import timedelta

import pytest
from django.utils import timezone

from chat.models import Message
from tests.conftest import HTMX, finished, read_stream, send
from tests.openai_stub import Status, Stream

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast")]

PROMPT = "Canary prompt 7f3c9e: my bank PIN is 4821, keep it secret"
API_KEY = "sk-canary-key-0d5b81a4e6f2"
KEYS = {
    "user_id",
    "message_id",
    "model",
    "prompt_tokens",
    "completion_tokens",
    "first_token_s",
    "duration_s",
    "outcome",
}


@pytest.fixture
def logs(caplog, stub, settings):
    """Every record at the level production runs at (INFO; DEBUG for our own loggers)."""
    settings.OPENAI_API_KEY = API_KEY
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="chat")
    caplog.clear()
    return caplog


def answer_lines(caplog) -> list[dict]:
    lines = [r for r in caplog.records if r.name == "chat.generation" and r.getMessage().startswith("answer ")]
    return [json.loads(r.getMessage().removeprefix("answer ")) for r in lines]


def assert_no_secrets(caplog) -> None:
    assert caplog.records, "nothing was logged"
    for record in caplog.records:
        for text in (record.getMessage(), str(record.args), record.exc_text or ""):
            for secret in (PROMPT, "7f3c9e", "4821", API_KEY, "0d5b81a4e6f2"):
                assert secret not in text, f"{secret!r} in log record {record.name}: {text[:200]!r}"
    for secret in (PROMPT, "7f3c9e", API_KEY):
        assert secret not in caplog.text


async def test_a_completed_answer_logs_one_structured_line(logs, stub, alice, alice_async, conversation):
    stub.script(Stream(["Hello", " there"], first_delay=0.05, usage=(12, 34)))
    message = await send(alice_async, conversation, PROMPT)
    await read_stream(alice_async, message)
    await finished(message.pk)
    # The prompt did reach the model, with the key: the log is quiet by choice.
    assert stub.requests[0]["messages"][-1]["content"] == PROMPT

    [line] = answer_lines(logs)
    assert set(line) >= KEYS
    assert line["user_id"] == alice.pk
    assert line["message_id"] == message.pk
    assert line["model"] == "stub-model"
    assert (line["prompt_tokens"], line["completion_tokens"]) == (12, 34)
    assert line["outcome"] == "complete"
    assert 0 < line["first_token_s"] <= line["duration_s"] + 1
    assert line["duration_s"] > 0
    assert_no_secrets(logs)


async def test_a_failed_answer_logs_one_line_with_its_outcome(logs, stub, alice_async, conversation):
    stub.script(Status(500, "upstream exploded"))
    message = await send(alice_async, conversation, PROMPT)
    stored = await finished(message.pk)
    assert stored.status == "error"

    [line] = answer_lines(logs)
    assert set(line) >= KEYS
    assert (line["message_id"], line["outcome"], line["reason"]) == (message.pk, "error", "provider_error")
    assert line["first_token_s"] is None
    assert_no_secrets(logs)


async def test_a_continue_logs_its_own_time_to_first_token(logs, stub, alice_async, conversation):
    long_ago = timezone.now() - timedelta(hours=1)
    await Message.objects.acreate(conversation=conversation, role="user", content=PROMPT, created_at=long_ago)
    cut = await Message.objects.acreate(
        conversation=conversation,
        role="assistant",
        content="Half an ans",
        status="stopped",
        stop_reason="user_stop",
        model="stub-model",
        created_at=long_ago,
        first_token_at=long_ago + timedelta(seconds=50),
        last_seq=2,
    )
    stub.script(Stream(["wer."]))
    response = await alice_async.post(f"/c/{conversation.pk}/m/{cut.pk}/continue/", headers=HTMX)
    assert response.status_code == 200
    assert (await finished(cut.pk)).status == "complete"

    [line] = answer_lines(logs)
    assert line["outcome"] == "complete"
    # Seconds from this attempt's start, not from the message's first run an hour ago.
    assert 0 < line["first_token_s"] <= line["duration_s"] < 30
    assert_no_secrets(logs)
