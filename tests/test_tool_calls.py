"""Tool calls through the real client and the stub: streamed, run server-side,
fed back to the model, shown live and stored in order."""

import asyncio
import json
import re

import pytest
from asgiref.sync import sync_to_async

from chat.models import Message, Status, ToolCall
from chat.rendering import render_message
from chat.tools import registry
from chat.tools.registry import Tool
from tests.conftest import HTMX, finished, read_stream, send, shown, texts
from tests.live_page import LivePage
from tests.openai_stub import Stream, ToolCallPart

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast")]


def calculator_round(expression: str, call_id: str = "call_1", index: int = 0) -> list[ToolCallPart]:
    """A tool call whose arguments arrive split across several chunks."""
    arguments = json.dumps({"expression": expression})
    third = len(arguments) // 3
    return [
        ToolCallPart(index, id=call_id, name="calculator"),
        ToolCallPart(index, arguments=arguments[:third]),
        ToolCallPart(index, arguments=arguments[third : 2 * third]),
        ToolCallPart(index, arguments=arguments[2 * third :]),
    ]


async def test_a_streamed_tool_call_runs_and_its_result_goes_back_to_the_model(stub, alice_async, conversation):
    stub.script(
        Stream(["Let me compute. ", *calculator_round("2 + 2 * 3")], finish_reason="tool_calls"),
        Stream(["The answer is ", "8."]),
    )
    message = await send(alice_async, conversation, "What is 2 + 2 * 3?")
    frames = await read_stream(alice_async, message)
    assert [f.event for f in frames] == ["text_delta", "tool_start", "tool_result", "text_delta", "text_delta", "done"]
    assert "calculator" in frames[1].data and "2 + 2 * 3" in frames[1].data and "running" in frames[1].data
    assert ">8</pre>" in frames[2].data and 'hx-swap-oob="outerHTML"' in frames[2].data
    assert texts(frames) == shown("Let me compute. ", "The answer is 8.")

    stored = await finished(message.pk)
    assert stored.content == "Let me compute. The answer is 8."
    call = await ToolCall.objects.aget(message=message)
    assert (call.call_id, call.name, call.state, call.result) == ("call_1", "calculator", "ok", "8")
    assert json.loads(call.arguments) == {"expression": "2 + 2 * 3"}
    assert call.finished_at >= call.started_at
    assert call.text_offset == len("Let me compute. ")
    assert (call.start_seq, call.result_seq) == (2, 3)

    followup = stub.requests[1]["messages"]
    assert followup[-2]["role"] == "assistant"
    assert followup[-2]["tool_calls"][0]["function"]["name"] == "calculator"
    assert followup[-1] == {"role": "tool", "tool_call_id": "call_1", "content": "8"}
    assert {t["function"]["name"] for t in stub.requests[0]["tools"]} >= {
        "calculator",
        "current_time",
        "search_conversations",
    }


async def test_two_parallel_calls_both_run(stub, alice_async, conversation):
    stub.script(
        Stream(
            [
                *calculator_round("1 + 1", "call_a", 0),
                ToolCallPart(1, id="call_b", name="current_time"),
                ToolCallPart(1, arguments='{"timezone": "Asia/Tokyo"}'),
            ],
            finish_reason="tool_calls",
        ),
        Stream(["Done."]),
    )
    message = await send(alice_async, conversation, "Two things")
    frames = await read_stream(alice_async, message)
    events = [f.event for f in frames]
    assert events[:2] == ["tool_start", "tool_start"]
    assert sorted(events[2:4]) == ["tool_result", "tool_result"]
    assert events[4:] == ["text_delta", "done"]
    await finished(message.pk)
    calls = [c async for c in ToolCall.objects.filter(message=message).order_by("start_seq")]
    assert [(c.call_id, c.name, c.state) for c in calls] == [
        ("call_a", "calculator", "ok"),
        ("call_b", "current_time", "ok"),
    ]
    assert calls[0].result == "2"
    assert "Asia/Tokyo" in calls[1].result
    tool_messages = [m for m in stub.requests[1]["messages"] if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in tool_messages] == ["call_a", "call_b"]


async def test_calls_that_reuse_index_zero_are_told_apart_by_id(stub, alice_async, conversation):
    stub.script(
        Stream(
            calculator_round("3 * 3", "call_x", 0) + calculator_round("4 * 4", "call_y", 0), finish_reason="tool_calls"
        ),
        Stream(["9 and 16."]),
    )
    message = await send(alice_async, conversation, "Squares")
    await read_stream(alice_async, message)
    await finished(message.pk)
    results = [(c.call_id, c.result) async for c in ToolCall.objects.filter(message=message).order_by("start_seq")]
    assert results == [("call_x", "9"), ("call_y", "16")]


async def test_a_tool_error_goes_to_the_model_and_the_answer_goes_on(stub, alice_async, conversation):
    stub.script(Stream(calculator_round("1 / 0"), finish_reason="tool_calls"), Stream(["You cannot divide by zero."]))
    message = await send(alice_async, conversation, "1/0?")
    frames = await read_stream(alice_async, message)
    result = next(f for f in frames if f.event == "tool_result")
    assert "Division by zero." in result.data and "failed" in result.data
    assert frames[-1].event == "done"
    stored = await finished(message.pk)
    assert stored.status == "complete"
    call = await ToolCall.objects.aget(message=message)
    assert (call.state, call.error) == ("error", "Division by zero.")
    assert stub.requests[1]["messages"][-1]["content"] == "Error: Division by zero."


@pytest.fixture
def slow_tool():
    async def run(args, ctx):
        await asyncio.sleep(30)
        return "never"

    registry.register(Tool("slow_tool", "Takes too long.", {"type": "object", "properties": {}}, run))
    yield
    registry._REGISTRY.pop("slow_tool")


async def test_a_tool_that_runs_too_long_times_out(stub, alice_async, conversation, settings, slow_tool):
    settings.CHAT_TOOL_TIMEOUT = 0.2
    stub.script(
        Stream([ToolCallPart(0, id="call_s", name="slow_tool", arguments="{}")], finish_reason="tool_calls"),
        Stream(["It timed out."]),
    )
    message = await send(alice_async, conversation, "Be slow")
    frames = await read_stream(alice_async, message)
    result = next(f for f in frames if f.event == "tool_result")
    assert "longer than 0.2 seconds" in result.data
    stored = await finished(message.pk)
    assert stored.status == "complete" and stored.content == "It timed out."
    assert (await ToolCall.objects.aget(message=message)).state == "error"


async def test_an_unknown_tool_or_bad_arguments_are_reported(stub, alice_async, conversation):
    stub.script(
        Stream(
            [
                ToolCallPart(0, id="c1", name="no_such_tool", arguments="{}"),
                ToolCallPart(1, id="c2", name="calculator", arguments="{not json"),
            ],
            finish_reason="tool_calls",
        ),
        Stream(["Sorry."]),
    )
    message = await send(alice_async, conversation, "Break things")
    await read_stream(alice_async, message)
    await finished(message.pk)
    errors = [c.error async for c in ToolCall.objects.filter(message=message).order_by("start_seq")]
    assert errors == ["There is no tool named 'no_such_tool'.", "The arguments were not valid JSON."]


async def test_the_round_limit_ends_the_answer_with_a_clear_error(stub, alice_async, conversation, settings):
    settings.CHAT_MAX_TOOL_ROUNDS = 2
    stub.script(*[Stream(calculator_round("1 + 1", f"call_{i}"), finish_reason="tool_calls") for i in range(3)])
    message = await send(alice_async, conversation, "Loop")
    frames = await read_stream(alice_async, message)
    assert frames[-1].event == "error"
    assert "kept calling tools" in frames[-1].data
    stored = await finished(message.pk)
    assert (stored.status, stored.stop_reason) == ("error", "tool_round_limit")
    assert await ToolCall.objects.filter(message=message).acount() == 2


async def test_a_reopened_conversation_shows_cards_in_order(stub, alice_async, conversation):
    stub.script(
        Stream(["Before. ", *calculator_round("6 * 7")], finish_reason="tool_calls"),
        Stream(["After."]),
    )
    message = await send(alice_async, conversation, "6*7")
    await read_stream(alice_async, message)
    await finished(message.pk)
    page = (await alice_async.get(f"/c/{conversation.pk}/")).content.decode()
    before, card, after = page.index("Before."), page.index('data-tool="calculator"'), page.index("After.")
    assert before < card < after
    assert ">42</pre>" in page


async def test_continue_does_not_run_tools_again(stub, alice_async, conversation):
    stub.script(
        Stream(calculator_round("5 + 5"), finish_reason="tool_calls"),
        Stream(["Ten, because"], drop=True),
        Stream([" five and five make ten."]),
    )
    message = await send(alice_async, conversation, "5+5")
    await read_stream(alice_async, message)
    assert (await finished(message.pk)).status == "error"
    response = await alice_async.post(f"/c/{conversation.pk}/m/{message.pk}/continue/", headers=HTMX)
    assert response.status_code == 200
    await read_stream(alice_async, message, after=(await Message.objects.aget(pk=message.pk)).last_seq)
    stored = await finished(message.pk)
    assert stored.content == "Ten, because five and five make ten."
    assert await ToolCall.objects.filter(message=message).acount() == 1
    sent = stub.requests[-1]["messages"]
    assert [m["role"] for m in sent[-4:]] == ["assistant", "tool", "assistant", "user"]
    assert sent[-3] == {"role": "tool", "tool_call_id": "call_1", "content": "10"}
    assert sent[-2] == {"role": "assistant", "content": "Ten, because"}


async def test_a_cursor_inside_a_tool_call_resumes_with_its_result(stub, alice_async, conversation):
    stub.script(Stream(["Hm. ", *calculator_round("7 * 6")], finish_reason="tool_calls"), Stream(["42."]))
    message = await send(alice_async, conversation, "7*6")
    everything = await read_stream(alice_async, message)
    await finished(message.pk)
    start = next(f for f in everything if f.event == "tool_start")
    frames = await read_stream(alice_async, message, after=int(start.id))
    assert [f.event for f in frames] == ["tool_result", "text_delta", "done"]
    assert [f.id for f in frames] == [f.id for f in everything[int(start.id) :]]


async def test_the_stream_builds_the_page_rendered_at_its_last_event_tool_cards_in_place(
    stub, alice_async, conversation
):
    stub.script(
        Stream(
            ["Let me **compute**", " it:\n\n- first\n", "- sec", "ond", *calculator_round("2 + 2 * 3")],
            finish_reason="tool_calls",
        ),
        Stream(["The answer is **8**.\n\n", "```\n2 + 2 * 3\n```\n", "Done."]),
    )
    message = await send(alice_async, conversation, "What is 2 + 2 * 3?")
    frames = await read_stream(alice_async, message)
    stored = await finished(message.pk)
    calls = [c async for c in ToolCall.objects.filter(message=stored).order_by("start_seq")]
    # The page a reload would have shown just before `done`: the same text and
    # cards, the answer still streaming at its last event.
    stored.status, stored.last_seq = Status.STREAMING, stored.last_seq - 1
    page = LivePage.from_page(await sync_to_async(render_message)(stored, tool_calls=calls), stored.pk)
    built = LivePage.from_frames(frames)
    # (The event's duration and the stored one are measured apart.)
    assert re.sub(r"in \d+ ms", "", built.html()) == re.sub(r"in \d+ ms", "", page.html())
    # The text before the card settled with it, rendered; the card sits between blocks.
    assert built.settled.index("<strong>compute</strong>") < built.settled.index("<li>second</li>")
    assert built.settled.index("<li>second</li>") < built.settled.index('class="tool-card tool-ok"')
    assert built.settled.index('class="tool-card tool-ok"') < built.settled.index("<strong>8</strong>")
