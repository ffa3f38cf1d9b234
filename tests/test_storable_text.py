"""Text a database cannot store never reaches it: a NUL (PostgreSQL refuses it in
text) and lone surrogates (neither database can encode them in UTF-8) become
U+FFFD wherever text comes in: prompts, titles, renames, feedback, the model's
text, tool calls and their results, and provider errors. Streamed and stored
text agree, so a reload shows what was streamed.

Persona: `alice` writes the prompts; the model and the tools are the hostile part.
"""

import json
import logging

import pytest

from chat.models import Conversation, Feedback, Generation, Message, ToolCall
from chat.tools import registry
from chat.tools.registry import Tool
from tests.conftest import HTMX, finished, read_stream, send, texts
from tests.openai_stub import Stream, ToolCallPart

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast")]

# What the model or a user sends, and what is stored and shown instead.
HOSTILE = "nul\x00 high\ud800 low\udfff end"
STORED = "nul\ufffd high\ufffd low\ufffd end"


async def test_a_nul_in_a_first_prompt_is_stored_as_a_replacement_character(stub, alice, alice_async):
    stub.script(Stream(["Fine."]))
    response = await alice_async.post("/c/new/", {"prompt": "Hello\x00world"}, headers=HTMX)
    assert response.status_code == 200, response.content
    conversation = await Conversation.objects.aget(owner=alice)
    prompt = await conversation.messages.filter(role="user").aget()
    assert (conversation.title, prompt.content) == ("Hello\ufffdworld", "Hello\ufffdworld")
    answer = await conversation.messages.filter(role="assistant").aget()
    assert (await finished(answer.pk)).status == "complete"


async def test_a_nul_in_a_later_prompt_is_stored_as_a_replacement_character(stub, alice_async, conversation):
    stub.script(Stream(["Fine."]))
    answer = await send(alice_async, conversation, "Again\x00")
    prompt = await conversation.messages.filter(role="user").aget()
    assert prompt.content == "Again\ufffd"
    assert (await finished(answer.pk)).status == "complete"


def test_a_rename_and_a_feedback_comment_store_a_nul_as_a_replacement_character(alice_client, conversation):
    response = alice_client.post(f"/c/{conversation.pk}/rename/", {"title": "Trip\x00 plans"}, headers=HTMX)
    assert response.status_code == 200
    conversation.refresh_from_db()
    assert conversation.title == "Trip\ufffd plans"

    answer = Message.objects.create(
        conversation=conversation, role="assistant", status="complete", content="An answer."
    )
    url = f"/c/{conversation.pk}/m/{answer.pk}/feedback/"
    response = alice_client.post(url, {"rating": "-1", "comment": "Wrong\x00"}, headers=HTMX)
    assert response.status_code == 200
    assert Feedback.objects.get(message=answer).comment == "Wrong\ufffd"


async def test_model_text_that_cannot_be_stored_streams_and_is_stored_replaced(stub, alice_async, conversation):
    stub.script(Stream(["Before. ", HOSTILE, " After."], delay=0.02))
    message = await send(alice_async, conversation, "Say something odd")
    frames = await read_stream(alice_async, message)
    assert frames[-1].event == "done", frames[-1].data
    assert texts(frames) == f"Before. {STORED} After."
    stored = await finished(message.pk)
    assert (stored.status, stored.content) == ("complete", f"Before. {STORED} After.")


@pytest.fixture
def echo_tool():
    """A tool whose output is whatever the model asked for: tool output is untrusted."""

    async def run(args, ctx):
        if args.get("fail"):
            raise registry.ToolError(f"Cannot echo {args['text']}")
        return args["text"]

    registry.register(Tool("echo", "Echoes its text.", {"type": "object", "properties": {}}, run))
    yield
    registry._REGISTRY.pop("echo")


async def test_tool_calls_and_results_that_cannot_be_stored_are_stored_replaced(
    stub, alice_async, conversation, echo_tool
):
    escaped = json.dumps({"text": HOSTILE})  # \u0000 and \ud800 as JSON escapes, as a provider sends them
    stub.script(
        Stream(
            [
                ToolCallPart(0, id="call\x00a", name="echo", arguments=escaped),
                ToolCallPart(1, id="call_b", name="echo", arguments=json.dumps({"text": HOSTILE, "fail": True})),
                ToolCallPart(2, id="call_c", name="ec\x00ho", arguments="{\x00}"),
                ToolCallPart(3, id="call_d", name="search_conversations", arguments=json.dumps({"query": "nul\x00"})),
            ],
            finish_reason="tool_calls",
        ),
        Stream(["Done."]),
    )
    message = await send(alice_async, conversation, "Echo")
    frames = await read_stream(alice_async, message)
    assert frames[-1].event == "done", frames[-1].data
    assert all("\x00" not in f.data for f in frames)
    stored = await finished(message.pk)
    assert stored.status == "complete"
    calls = [c async for c in ToolCall.objects.filter(message=message).order_by("start_seq")]
    assert [(c.call_id, c.name, c.state) for c in calls] == [
        ("call\ufffda", "echo", "ok"),
        ("call_b", "echo", "error"),
        ("call_c", "ec\ufffdho", "error"),
        ("call_d", "search_conversations", "ok"),
    ]
    assert calls[0].arguments == escaped and calls[0].result == STORED
    assert calls[1].error == f"Cannot echo {STORED}"
    assert calls[2].arguments == "{\ufffd}"
    # The model is told what was stored.
    results = [m for m in stub.requests[1]["messages"] if m["role"] == "tool"]
    assert results[0] == {"role": "tool", "tool_call_id": "call\ufffda", "content": STORED}


async def test_a_provider_error_that_cannot_be_stored_is_stored_replaced(stub, alice_async, conversation, caplog):
    caplog.set_level(logging.WARNING, logger="chat.generation")
    stub.script(Stream(["Partial."], error=HOSTILE))
    message = await send(alice_async, conversation, "Fail oddly")
    frames = await read_stream(alice_async, message)
    assert frames[-1].event == "error"
    stored = await finished(message.pk)
    assert (stored.status, stored.content) == ("error", "Partial.")
    # Users read a fixed sentence; the provider's own words are for staff.
    assert STORED not in stored.error
    attempt = await Generation.objects.aget(message=stored)
    assert STORED in attempt.error_detail
    # The log says them as stored too: a lone surrogate cannot be written to a UTF-8 log file.
    failures = [r.getMessage() for r in caplog.records if r.getMessage().startswith("provider failed")]
    assert len(failures) == 1 and failures[0].endswith(STORED), failures


async def test_token_counts_too_large_to_store_are_stored_as_the_largest_count(stub, alice_async, conversation):
    """A provider's usage is a number from outside too: 10**20 fits no integer column."""
    stub.script(Stream(["Counted."], usage=(10**20, 10**20)))
    message = await send(alice_async, conversation, "Count a lot")
    frames = await read_stream(alice_async, message)
    assert frames[-1].event == "done", frames[-1].data
    stored = await finished(message.pk)
    assert (stored.status, stored.content) == ("complete", "Counted.")
    assert stored.prompt_tokens == stored.completion_tokens == 2**31 - 1
