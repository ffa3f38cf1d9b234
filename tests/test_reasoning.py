"""A reasoning model's thinking, through the real `openai` client from the local
stub: its own event next to the five, numbered with the answer's; stored with
the answer and shown above it; resumed exactly after a reload mid-thought;
never sent back to the model unless asked for."""

import csv
import io
import json
import re

import pytest

from chat.eventlog import get_event_log
from chat.export import conversations_as_csv, conversations_as_json
from chat.models import Conversation, Message, OfferedModel, Provider, Status, ToolCall
from tests.conftest import HTMX, finished, live_page, read_stream, send, shown, texts
from tests.live_page import LivePage
from tests.openai_stub import Reasoning, Stream
from tests.test_tool_calls import calculator_round
from tests.waiting import wait_until_async

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast")]


def _article(page: str, message_id: int) -> str:
    return re.search(rf'<article[^>]*id="msg-{message_id}".*?</article>', page, re.S).group(0)


async def test_thinking_streams_as_its_own_event_numbered_with_the_answer(stub, alice_async, conversation):
    stub.script(
        Stream([Reasoning("Let me "), Reasoning("think.\n"), Reasoning("Done."), "The ", "answer."], delay=0.01)
    )
    message = await send(alice_async, conversation, "Think first")
    frames = await read_stream(alice_async, message)
    assert [f.event for f in frames] == ["reasoning_delta"] * 3 + ["text_delta"] * 2 + ["done"]
    assert [int(f.id) for f in frames] == list(range(1, 7))
    stored = await finished(message.pk)
    assert (stored.reasoning, stored.content) == ("Let me think.\nDone.", "The answer.")
    assert stored.reasoning_seconds is not None and stored.reasoning_seconds >= 0
    assert stored.last_seq == 6

    # The events' data: the first piece of thinking starts it, the first text ends it.
    events = await get_event_log().read_after(message.pk, 0, 0)
    assert [e.data for e in events[:3]] == [
        {"text": "Let me ", "started": True},
        {"text": "think.\n"},
        {"text": "Done."},
    ]
    assert events[3].data == {"text": "The ", "thought_seconds": stored.reasoning_seconds}
    assert "thought_seconds" not in events[4].data

    page = LivePage.from_frames(frames)
    assert page.reasoning_text() == stored.reasoning
    assert texts(frames) == shown("The answer.")
    assert not page.thinking and page.label.startswith("Thought for")
    # A client that knows only the five events: `done` shows the thinking anyway, closed.
    assert '<details class="thinking"' in frames[-1].data and " open>" not in frames[-1].data
    assert "Let me think.\nDone." in frames[-1].data


async def test_think_tags_in_the_content_are_thinking_not_text(stub, alice_async, conversation):
    stub.script(Stream(["  <thi", "nk>Plan", " <it>.</th", "ink>\n\n", "Answer."]))
    message = await send(alice_async, conversation, "Tags")
    frames = await read_stream(alice_async, message)
    stored = await finished(message.pk)
    assert (stored.reasoning, stored.content) == ("Plan <it>.", "Answer.")
    assert LivePage.from_frames(frames).reasoning == "Plan &lt;it&gt;."
    assert "think" not in texts(frames)


async def test_a_page_reloaded_mid_thought_resumes_the_thinking_exactly(stub, alice_async, conversation):
    steps = [Reasoning(f"step{i} ") for i in range(40)]
    stub.script(Stream([*steps, "The ", "answer."], delay=0.03))
    message = await send(alice_async, conversation, "Think long")

    async def thinking_stored():
        row = await Message.objects.aget(pk=message.pk)
        return row if row.last_seq >= 5 and not row.content else None

    await wait_until_async(thinking_stored, timeout=10)
    page = (await alice_async.get(f"/c/{conversation.pk}/")).content.decode()
    article = _article(page, message.pk)
    cursor = int(re.search(r'sse-connect="[^"]*\?after=(\d+)"', article).group(1))
    assert 5 <= cursor < 40
    body = LivePage.from_page(article, message.pk)
    # Open, saying "Thinking…", with what was thought up to the cursor, once.
    assert body.thinking and body.label == "Thinking…"
    assert re.search(rf'<details class="thinking" id="msg-{message.pk}-thinking" open>', article)
    assert body.reasoning_text() == "".join(f"step{i} " for i in range(cursor))
    assert article.count("step0 ") == 1

    for frame in await read_stream(alice_async, message, after=cursor):
        body.apply(frame)
    stored = await finished(message.pk)
    assert body.reasoning_text() == stored.reasoning == "".join(s.text for s in steps)
    assert not body.thinking and body.label.startswith("Thought for")
    assert body.html() == live_page("The answer.").html()


async def test_thinking_between_tool_rounds_adds_up_and_leaves_tool_offsets_alone(stub, alice_async, conversation):
    stub.script(
        Stream([Reasoning("Arithmetic."), "Let me compute. ", *calculator_round("6 * 7")], finish_reason="tool_calls"),
        Stream([Reasoning("It gave 42."), "It is 42."]),
    )
    message = await send(alice_async, conversation, "6 * 7?")
    frames = await read_stream(alice_async, message)
    assert [f.event for f in frames] == [
        "reasoning_delta",
        "text_delta",
        "tool_start",
        "tool_result",
        "reasoning_delta",
        "text_delta",
        "done",
    ]
    events = await get_event_log().read_after(message.pk, 0, 0)
    # Each stretch of thinking opens the block and the text after it closes it.
    assert events[0].data.get("started") and events[4].data.get("started")
    assert "thought_seconds" in events[1].data and "thought_seconds" in events[5].data
    assert events[5].data["thought_seconds"] >= events[1].data["thought_seconds"]
    stored = await finished(message.pk)
    assert stored.reasoning == "Arithmetic.\n\nIt gave 42."
    assert stored.content == "Let me compute. It is 42."
    call = await ToolCall.objects.aget(message=message)
    assert call.text_offset == len("Let me compute. ")
    assert stored.reasoning_seconds == events[5].data["thought_seconds"]


async def test_continue_appends_its_thinking_to_the_same_message(stub, alice_async, conversation):
    stub.script(Stream([Reasoning("First thought."), "Half"], finish_reason="length"))
    message = await send(alice_async, conversation, "Go")
    first = await finished(message.pk)
    assert first.status == Status.STOPPED and first.reasoning_seconds is not None

    stub.script(Stream([Reasoning("Second thought."), " and the rest."]))
    response = await alice_async.post(f"/c/{conversation.pk}/m/{message.pk}/continue/", headers=HTMX)
    fragment = response.content.decode()
    cursor = int(re.search(r"after=(\d+)", fragment).group(1))
    body = LivePage.from_page(fragment, message.pk)
    assert body.reasoning_text() == "First thought." and body.label.startswith("Thought for")
    for frame in await read_stream(alice_async, message, after=cursor):
        body.apply(frame)
    done = await finished(message.pk)
    assert done.reasoning == "First thought.\n\nSecond thought."
    assert done.content == "Half and the rest."
    assert body.reasoning_text() == done.reasoning
    assert done.reasoning_seconds >= first.reasoning_seconds


async def test_a_backlog_of_thinking_is_sent_joined(stub, alice_async, conversation):
    stub.script(Stream([Reasoning(f"r{i} ") for i in range(120)] + ["a ", "b"]))
    message = await send(alice_async, conversation, "Lots")
    stored = await finished(message.pk)
    frames = await read_stream(alice_async, message)
    assert [(f.event, int(f.id)) for f in frames] == [("reasoning_delta", 120), ("text_delta", 122), ("done", 123)]
    page = LivePage.from_frames(frames)
    assert page.reasoning_text() == stored.reasoning
    assert not page.thinking and page.label.startswith("Thought for")


def test_stored_thinking_is_shown_on_the_page_in_admin_and_in_exports(alice, alice_client, admin_client):
    conversation = Conversation.objects.create(owner=alice, title="Thought")
    prompt = Message.objects.create(conversation=conversation, role="user", content="Why?")
    answer = Message.objects.create(
        conversation=conversation,
        role="assistant",
        parent=prompt,
        content="Because.",
        reasoning="Weigh <b>this</b>\nthen that.",
        reasoning_seconds=4.2,
        last_seq=3,
    )
    Conversation.objects.filter(pk=conversation.pk).update(active_leaf=answer)

    page = alice_client.get(f"/c/{conversation.pk}/").content.decode()
    article = _article(page, answer.pk)
    # Closed, above the answer, escaped, line breaks kept.
    assert f'<details class="thinking" id="msg-{answer.pk}-thinking"><summary>' in article
    assert "Thought for 4 s" in article
    assert "Weigh &lt;b&gt;this&lt;/b&gt;\nthen that." in article
    assert article.index("thinking-text") < article.index('class="msg-body')

    transcript = admin_client.get(f"/admin/chat/conversation/{conversation.pk}/change/").content.decode()
    assert "Weigh &lt;b&gt;this&lt;/b&gt;<br>then that." in transcript
    assert "thought for 4.2 s" in transcript
    review = admin_client.get(f"/admin/chat/message/{answer.pk}/change/").content.decode()
    assert "thought for 4.20 s" in review and "Weigh &lt;b&gt;this&lt;/b&gt;<br>then that." in review

    rows = list(csv.DictReader(io.StringIO(conversations_as_csv(Conversation.objects.filter(pk=conversation.pk)))))
    assert (rows[1]["reasoning"], rows[1]["reasoning_seconds"]) == ("Weigh <b>this</b>\nthen that.", "4.2")
    exported = json.loads(conversations_as_json(Conversation.objects.filter(pk=conversation.pk)))
    [_, message] = exported["conversations"][0]["messages"]
    assert (message["reasoning"], message["reasoning_seconds"]) == ("Weigh <b>this</b>\nthen that.", 4.2)


def test_an_answer_without_thinking_has_no_block(alice, alice_client):
    conversation = Conversation.objects.create(owner=alice, title="Plain")
    answer = Message.objects.create(conversation=conversation, role="assistant", content="Plain.")
    Conversation.objects.filter(pk=conversation.pk).update(active_leaf=answer)
    page = alice_client.get(f"/c/{conversation.pk}/").content.decode()
    assert "thinking" not in _article(page, answer.pk)


async def test_thinking_is_not_sent_back_unless_asked_for(stub, alice_async, conversation):
    stub.script(Stream([Reasoning("Secret plan."), "First answer"]), Stream(["Second answer"]))
    first = await send(alice_async, conversation, "First question")
    await finished(first.pk)
    second = await send(alice_async, conversation, "Second question")
    await finished(second.pk)
    # By default: the earlier answer's text only.
    request = stub.requests[1]
    assert ("assistant", "First answer") in [(m["role"], m.get("content")) for m in request["messages"]]
    assert "Secret plan." not in json.dumps(request)
    assert not any("reasoning_content" in m for m in request["messages"])

    # A provider that wants it gets it as `reasoning_content` on the assistant's turn.
    provider = await Provider.objects.acreate(name="Wants thinking", base_url=stub.base_url, send_reasoning=True)
    model = await OfferedModel.objects.acreate(provider=provider, model_id="thinker", label="Thinker")
    stub.script(Stream(["ok"]))
    response = await alice_async.post(
        f"/c/{conversation.pk}/send/", {"prompt": "Third question", "model": model.pk}, headers=HTMX
    )
    assert response.status_code == 200
    await finished((await Message.objects.filter(role="assistant").alatest("id")).pk)
    sent = stub.requests[-1]["messages"]
    assert {"role": "assistant", "content": "First answer", "reasoning_content": "Secret plan."} in sent
