"""What the model is sent: the conversation so far as chat-completions messages,
with earlier tool calls and their results in the places they happened."""

import json

from django.conf import settings

from chat.demo_model import CONTINUE_MARKER
from chat.models import Message, ToolCall

SYSTEM_PROMPT = (
    "You are a helpful assistant in a chat application. Answer in Markdown. "
    "Use the tools when they help: calculator for arithmetic, current_time for dates and times, "
    "search_conversations to recall what the user said in earlier chats."
)
CONTINUE_PROMPT = (
    f"{CONTINUE_MARKER}: your previous answer was cut off. Go on from its last character, "
    "without repeating anything and without any preamble."
)


def build_messages(message: Message) -> list[dict]:
    """The request for generating `message` (an assistant message). When it has
    text or tool calls already, this is a Continue: the partial answer is the
    assistant's turn and the model is asked to go on from there."""
    earlier = (
        Message.objects.filter(conversation_id=message.conversation_id, superseded_by__isnull=True, id__lt=message.id)
        .prefetch_related("tool_calls")
        .order_by("id")
    )
    turns: list[list[dict]] = []
    for m in earlier:
        if m.role == Message.Role.USER:
            turns.append([{"role": "user", "content": m.content}])
        elif turns:
            turns[-1].extend(assistant_turn(m, list(m.tool_calls.all())))
    turns = _trim(turns)
    out = [{"role": "system", "content": settings.CHAT_SYSTEM_PROMPT or SYSTEM_PROMPT}]
    for turn in turns:
        out.extend(turn)
    own_calls = list(message.tool_calls.all())
    if message.content or own_calls:
        out.extend(assistant_turn(message, own_calls))
        out.append({"role": "user", "content": CONTINUE_PROMPT})
    return out


def _trim(turns: list[list[dict]]) -> list[list[dict]]:
    """Drop the oldest turns until the history fits CHAT_MAX_CONTEXT_CHARS, keeping
    at least the latest prompt, so a long conversation never overflows the
    provider's context window."""
    budget = settings.CHAT_MAX_CONTEXT_CHARS
    sizes = [sum(len(json.dumps(m)) for m in turn) for turn in turns]
    while len(turns) > 1 and sum(sizes) > budget:
        turns, sizes = turns[1:], sizes[1:]
    if turns and sizes[0] > budget:
        # One prompt alone is too long: keep its end, where the question usually is.
        first = dict(turns[0][0])
        first["content"] = first["content"][-budget:]
        turns = [[first, *turns[0][1:]], *turns[1:]]
    return turns


def assistant_turn(message: Message, tool_calls: list[ToolCall]) -> list[dict]:
    """An assistant message as chat-completions messages: the text before each
    round of tool calls, the calls, their results, then the rest of the text."""
    out: list[dict] = []
    content = message.content
    position = 0
    rounds: dict[int, list[ToolCall]] = {}
    for call in tool_calls:
        rounds.setdefault(call.text_offset, []).append(call)
    for offset in sorted(rounds):
        calls = rounds[offset]
        text = content[position:offset]
        out.append(
            {
                "role": "assistant",
                "content": text or None,
                "tool_calls": [
                    {"id": c.call_id, "type": "function", "function": {"name": c.name, "arguments": c.arguments or "{}"}}
                    for c in calls
                ],
            }
        )
        for c in calls:
            out.append({"role": "tool", "tool_call_id": c.call_id, "content": tool_output_for_model(c)})
        position = offset
    if content[position:]:
        out.append({"role": "assistant", "content": content[position:]})
    return out


def tool_output_for_model(call: ToolCall) -> str:
    if call.state == ToolCall.State.OK:
        return call.result
    if call.state == ToolCall.State.ERROR:
        return f"Error: {call.error}"
    return "Error: the tool did not finish (the answer was interrupted)."
