"""The offline demo model answers through the real `openai` client code path,
thinks aloud first as a reasoning model does, and calls the built-in tools when
a prompt asks for what they do."""

import pytest

from chat.models import ToolCall
from tests.conftest import finished, read_stream, send, shown, texts
from tests.live_page import LivePage

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast")]


async def test_it_streams_a_markdown_answer_in_many_deltas(alice_async, conversation):
    message = await send(alice_async, conversation, "Tell me about streaming")
    frames = await read_stream(alice_async, message)
    assert frames[-1].event == "done"
    assert "<pre>" in frames[-1].data or 'class="highlight"' in frames[-1].data
    stored = await finished(message.pk)
    assert stored.status == "complete" and stored.model == "demo"
    assert texts(frames) == shown(stored.content)
    # One event per delta (a late reader may get them joined, the log does not).
    assert stored.last_seq > 20
    assert stored.completion_tokens > 0


async def test_it_thinks_before_it_answers(alice_async, conversation):
    message = await send(alice_async, conversation, "Tell me about streaming")
    frames = await read_stream(alice_async, message)
    events = [f.event for f in frames]
    first_text = events.index("text_delta")
    # Thinking in many pieces (a late reader gets them joined), all before the answer's text.
    assert set(events[:first_text]) == {"reasoning_delta"} and int(frames[first_text - 1].id) > 10
    assert "reasoning_delta" not in events[first_text:]
    stored = await finished(message.pk)
    page = LivePage.from_frames(frames)
    assert page.reasoning_text() == stored.reasoning and "demo model" in stored.reasoning
    assert not page.thinking and page.label.startswith("Thought for")
    assert stored.reasoning_seconds is not None


@pytest.mark.parametrize(
    ("prompt", "tool", "result"),
    [
        ("what is 12 * (3 + 4)?", "calculator", "84"),
        ("What time is it in Tokyo?", "current_time", "Asia/Tokyo"),
        ("what did I say about holidays?", "search_conversations", "No earlier messages"),
    ],
)
async def test_it_calls_the_tool_the_prompt_asks_for(alice_async, conversation, prompt, tool, result):
    message = await send(alice_async, conversation, prompt)
    frames = await read_stream(alice_async, message)
    # It thinks about which tool to call, then calls it.
    assert frames[0].event == "reasoning_delta"
    assert [f.event for f in frames if f.event != "reasoning_delta"][:2] == ["tool_start", "tool_result"]
    assert frames[-1].event == "done"
    call = await ToolCall.objects.aget(message=message)
    assert call.name == tool and call.state == "ok"
    assert result in call.result
    assert result in texts(frames)


async def test_the_page_says_it_is_the_demo_model(alice_async):
    page = (await alice_async.get("/")).content.decode()
    assert "Demo model" in page
