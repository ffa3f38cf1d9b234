"""The offline demo model answers through the real `openai` client code path and
calls the built-in tools when a prompt asks for what they do."""

import pytest

from chat.models import ToolCall
from tests.conftest import finished, read_stream, send, shown, texts

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
    assert [f.event for f in frames][:2] == ["tool_start", "tool_result"]
    assert frames[-1].event == "done"
    call = await ToolCall.objects.aget(message=message)
    assert call.name == tool and call.state == "ok"
    assert result in call.result
    assert result in texts(frames)


async def test_the_page_says_it_is_the_demo_model(alice_async):
    page = (await alice_async.get("/")).content.decode()
    assert "Demo model" in page
