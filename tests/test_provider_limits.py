"""A broken or hostile provider cannot exhaust a worker: what it sends is bounded
as it arrives (tool calls per round, their names and arguments, the lines of its
stream, usage counts, nesting). Each limit ends the answer with a clear error and
keeps the text already streamed; a tool's oversized result is cut with a note.

Through the real `openai` client and the local stub over HTTP.
"""

import time

import pytest

from chat.models import Message, ToolCall
from chat.tools import registry
from chat.tools.registry import Tool
from tests.conftest import HTMX, finished, read_stream, send, texts
from tests.openai_stub import Stream, ToolCallPart

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast")]

BEFORE = "Some text first. "
# The largest count the token columns hold (PostgreSQL's integer).
MAX_TOKENS_STORED = 2**31 - 1


def call(index: int, arguments: str = '{"expression": "1 + 1"}') -> ToolCallPart:
    return ToolCallPart(index, id=f"call_{index}", name="calculator", arguments=arguments)


async def ended_by_limit(client, message: Message, said: str) -> Message:
    """The answer ended with the error `said`, and kept the text before it."""
    frames = await read_stream(client, message)
    assert frames[-1].event == "error"
    assert said in frames[-1].data
    assert texts(frames) == BEFORE
    assert BEFORE.strip() in frames[-1].data
    stored = await finished(message.pk)
    assert (stored.status, stored.stop_reason) == ("error", "output_limit")
    assert said in stored.error
    assert stored.content == BEFORE
    page = (await client.get(f"/c/{message.conversation_id}/")).content.decode()
    assert BEFORE.strip() in page and said in page
    return stored


# Tool calls per round


async def test_hundreds_of_tool_calls_in_one_round_end_the_answer_and_none_runs(stub, alice_async, conversation):
    stub.script(Stream([BEFORE, *[call(i) for i in range(300)]], finish_reason="tool_calls"))
    message = await send(alice_async, conversation, "Compute a lot")
    await ended_by_limit(alice_async, message, "The model asked for more than 16 tool calls at once")
    assert await ToolCall.objects.filter(message=message).acount() == 0
    assert len(stub.requests) == 1


async def test_tool_calls_up_to_the_limit_all_run(stub, alice_async, conversation, settings):
    settings.CHAT_MAX_TOOL_CALLS = 3
    stub.script(Stream([call(i) for i in range(3)], finish_reason="tool_calls"), Stream(["All three."]))
    message = await send(alice_async, conversation, "Three things")
    await read_stream(alice_async, message)
    assert (await finished(message.pk)).status == "complete"
    assert await ToolCall.objects.filter(message=message, state="ok").acount() == 3

    stub.script(Stream([BEFORE, *[call(i) for i in range(4)]], finish_reason="tool_calls"))
    message = await send(alice_async, conversation, "Four things")
    await ended_by_limit(alice_async, message, "more than 3 tool calls at once")


# Tool call arguments and names


async def test_a_5_mb_tool_argument_ends_the_answer_and_is_not_stored(stub, alice_async, conversation):
    pieces = [ToolCallPart(0, arguments="x" * 65536) for _ in range(80)]
    stub.script(
        Stream([BEFORE, ToolCallPart(0, id="call_big", name="calculator"), *pieces], finish_reason="tool_calls")
    )
    message = await send(alice_async, conversation, "Something big")
    await ended_by_limit(alice_async, message, "The model sent tool arguments longer than 50,000 characters")
    assert await ToolCall.objects.filter(message=message).acount() == 0


@pytest.mark.parametrize(("length", "runs"), [(100, True), (101, False)], ids=["at-the-limit", "past-the-limit"])
async def test_arguments_in_pieces_count_whole(stub, alice_async, conversation, settings, length, runs):
    settings.CHAT_MAX_TOOL_ARGUMENT_CHARS = 100
    arguments = '{"expression": "1 + 1"}'.ljust(length)
    pieces = [ToolCallPart(0, arguments=arguments[i : i + 10]) for i in range(0, length, 10)]
    stub.script(
        Stream([BEFORE, ToolCallPart(0, id="call_1", name="calculator"), *pieces], finish_reason="tool_calls"),
        Stream(["Two."]),
    )
    message = await send(alice_async, conversation, "1 + 1?")
    if runs:
        await read_stream(alice_async, message)
        assert (await finished(message.pk)).content == BEFORE + "Two."
        assert (await ToolCall.objects.aget(message=message)).arguments == arguments
    else:
        await ended_by_limit(alice_async, message, "tool arguments longer than 100 characters")


async def test_a_tool_name_sent_in_endless_pieces_ends_the_answer(stub, alice_async, conversation):
    pieces = [ToolCallPart(0, name="calc" * 10) for _ in range(1000)]
    stub.script(Stream([BEFORE, ToolCallPart(0, id="call_1"), *pieces], finish_reason="tool_calls"))
    message = await send(alice_async, conversation, "Calculate")
    await ended_by_limit(alice_async, message, "The model sent a tool name longer than 100 characters")


# Lines of the provider's stream


@pytest.mark.parametrize(
    "junk",
    [
        b"data: " + b"x" * 8_000_000,
        b"data: " + b"x" * 600_000 + b"\ndata: " + b"x" * 600_000 + b"\n\n",
        b": " + b"x" * 2_000_000 + b"\n\n",
    ],
    ids=["8 MB line without a newline", "event of two 600 kB lines", "2 MB comment"],
)
async def test_an_oversized_line_or_event_ends_the_answer_soon(stub, alice_async, conversation, junk):
    stub.script(Stream([BEFORE, junk, "never shown"]))
    started = time.monotonic()
    message = await send(alice_async, conversation, "Talk")
    await ended_by_limit(alice_async, message, "The model provider sent more than 1,000,000 bytes in one piece")
    assert time.monotonic() - started < 5


async def test_an_endless_reply_ends_the_answer(stub, alice_async, conversation, settings):
    settings.CHAT_MAX_PROVIDER_RESPONSE_BYTES = 100_000
    # Chunks with nothing in them, more than 100 kB of them.
    stub.script(Stream([BEFORE, *[""] * 1000]))
    message = await send(alice_async, conversation, "Talk")
    await ended_by_limit(alice_async, message, "The model provider sent more than 100,000 bytes in one reply")


async def test_deeply_nested_json_is_an_unreadable_answer_not_a_server_error(stub, alice_async, conversation):
    stub.script(Stream([BEFORE, b"data: " + b"[" * 100_000 + b"]" * 100_000 + b"\n\n"]))
    message = await send(alice_async, conversation, "Talk")
    frames = await read_stream(alice_async, message)
    assert texts(frames) == BEFORE
    stored = await finished(message.pk)
    assert (stored.status, stored.stop_reason) == ("error", "provider_error")
    assert "could not be read" in stored.error
    assert stored.content == BEFORE


# Usage counts


async def test_absurd_usage_counts_are_stored_within_their_columns(stub, alice_async, conversation):
    stub.script(Stream(["Hi."], usage=(10**30, 2**40)))
    message = await send(alice_async, conversation, "Hi")
    await read_stream(alice_async, message)
    stored = await finished(message.pk)
    assert stored.status == "complete"
    assert (stored.prompt_tokens, stored.completion_tokens) == (MAX_TOKENS_STORED, MAX_TOKENS_STORED)

    # A Continue adds its counts to the message's, still within the column.
    await Message.objects.filter(pk=message.pk).aupdate(status="stopped", stop_reason="user_stop", prompt_tokens=5)
    stub.script(Stream([" More."], usage=(MAX_TOKENS_STORED, 3)))
    response = await alice_async.post(f"/c/{conversation.pk}/m/{message.pk}/continue/", headers=HTMX)
    assert response.status_code == 200
    stored = await finished(message.pk)
    assert stored.status == "complete"
    assert (stored.prompt_tokens, stored.completion_tokens) == (MAX_TOKENS_STORED, MAX_TOKENS_STORED)


# Tool results and arguments the page shows


@pytest.fixture
def verbose_tool():
    async def run(args, ctx):
        return "y" * 50_000

    registry.register(Tool("verbose_tool", "Says a lot.", {"type": "object", "properties": {}}, run))
    yield
    registry._REGISTRY.pop("verbose_tool")


async def test_a_tool_result_longer_than_the_limit_is_cut_with_a_note(stub, alice_async, conversation, verbose_tool):
    stub.script(
        Stream([ToolCallPart(0, id="call_v", name="verbose_tool", arguments="{}")], finish_reason="tool_calls"),
        Stream(["It said a lot."]),
    )
    message = await send(alice_async, conversation, "Say a lot")
    frames = await read_stream(alice_async, message)
    assert (await finished(message.pk)).status == "complete"
    note = "\n[Cut here: the result was 50,000 characters long; only the first 20,000 are given.]"
    call = await ToolCall.objects.aget(message=message)
    assert call.result == "y" * 20_000 + note
    # The model is told, and the page shows what the model got.
    assert stub.requests[1]["messages"][-1] == {"role": "tool", "tool_call_id": "call_v", "content": call.result}
    result = next(f for f in frames if f.event == "tool_result")
    assert "Cut here: the result was 50,000 characters long" in result.data
    assert "y" * 20_001 not in result.data


async def test_deeply_nested_tool_arguments_are_refused_and_the_page_still_shows(stub, alice_async, conversation):
    nested = "[" * 20_000 + "]" * 20_000
    stub.script(Stream([BEFORE, call(0, nested)], finish_reason="tool_calls"), Stream(["Never mind."]))
    message = await send(alice_async, conversation, "Nest")
    frames = await read_stream(alice_async, message)
    assert [f.event for f in frames] == ["text_delta", "tool_start", "tool_result", "text_delta", "done"]
    assert (await finished(message.pk)).status == "complete"
    assert (await ToolCall.objects.aget(message=message)).error == "The arguments are nested too deeply."
    response = await alice_async.get(f"/c/{conversation.pk}/")
    assert response.status_code == 200
    assert "nested too deeply" in response.content.decode()


async def test_a_deeply_nested_markdown_answer_still_shows(stub, alice_async, conversation):
    answer = "- " * 1500 + "deep"
    stub.script(Stream([answer]))
    message = await send(alice_async, conversation, "Nest")
    frames = await read_stream(alice_async, message)
    assert frames[-1].event == "done" and "deep" in frames[-1].data
    assert (await finished(message.pk)).content == answer
    response = await alice_async.get(f"/c/{conversation.pk}/")
    assert response.status_code == 200
    assert "deep" in response.content.decode()
