"""What the model is sent: one system message (the site's instructions, then the
user's own), then the conversation so far as chat-completions messages, with
earlier tool calls and their results in the places they happened."""

import json

from django.conf import settings
from django.db.models import Value

from chat.models import Message, SiteSettings, ToolCall, UserSettings
from chat.tree import path_to

# How a Continue asks the model to go on; the demo model recognises it.
CONTINUE_MARKER = "Continue exactly where you stopped"

SYSTEM_PROMPT = (
    "You are a helpful assistant in a chat application. Answer in Markdown. "
    "Use the tools when they help: calculator for arithmetic, current_time for dates and times, "
    "search_conversations to recall what the user said in earlier chats."
)
# The history's budget never goes below this, however long the instructions are.
MIN_HISTORY_CHARS = 500
# How the user's own instructions are introduced, after the site's.
PERSONAL_INTRODUCTION = (
    "The user has set these personal instructions for all their conversations. "
    "Follow them where they do not conflict with the instructions above:"
)
CONTINUE_PROMPT = (
    f"{CONTINUE_MARKER}: your previous answer was cut off. Go on from its last character, "
    "without repeating anything and without any preamble."
)


def load_history(message: Message) -> tuple[list[Message], dict[int, list[ToolCall]]]:
    """The path from the root to the prompt of `message` (an assistant message):
    never a sibling of any of them nor anything under one. With the tool calls of
    the path and of `message` itself, in two queries."""
    earlier = list(path_to(message.parent_id)) if message.parent_id is not None else []
    ids = [m.pk for m in earlier if m.role == Message.Role.ASSISTANT]
    if message.last_seq:
        ids.append(message.pk)
    return earlier, _tool_calls(ids) if ids else {}


def system_prompt(site: str, personal: str) -> str:
    """The one system message (some chat templates refuse several): the site's
    instructions (staff's, else CHAT_SYSTEM_PROMPT, else SYSTEM_PROMPT), then the
    user's own, introduced as theirs."""
    text = site.strip() or settings.CHAT_SYSTEM_PROMPT or SYSTEM_PROMPT
    if personal.strip():
        text += f"\n\n{PERSONAL_INTRODUCTION}\n\n{personal.strip()}"
    return text


def load_system_prompt(owner_id: int) -> str:
    """The system message for `owner_id`'s answers, in one query."""
    site = SiteSettings.objects.annotate(kind=Value("site")).values_list("kind", "instructions")
    own = UserSettings.objects.filter(user_id=owner_id).annotate(kind=Value("own")).values_list("kind", "instructions")
    found = dict(site.union(own, all=True))
    return system_prompt(found.get("site", ""), found.get("own", ""))


def build_messages(
    message: Message,
    earlier: list[Message],
    calls: dict[int, list[ToolCall]],
    *,
    system: str | None = None,
    context_chars: int | None = None,
    send_reasoning: bool = False,
) -> list[dict]:
    """The request for generating `message` (an assistant message): the system
    message `system`, then the history within its budget: `context_chars`
    characters of JSON for the whole request when the model's context is known,
    else CHAT_MAX_CONTEXT_CHARS for the history alone. When the answer has text
    or tool calls already, this is a Continue: the partial answer is the
    assistant's turn and the model is asked to go on from there. Earlier
    reasoning goes back to the model only with `send_reasoning` (see
    `assistant_turn`)."""
    turns: list[list[dict]] = []
    for m in earlier:
        if m.role == Message.Role.USER:
            turns.append([{"role": "user", "content": m.content}])
        elif turns:
            turns[-1].extend(assistant_turn(m, calls.get(m.pk, []), send_reasoning=send_reasoning))
    out = [{"role": "system", "content": system if system is not None else system_prompt("", "")}]
    if context_chars is None:
        budget = settings.CHAT_MAX_CONTEXT_CHARS
    else:
        budget = max(context_chars - _size(out), MIN_HISTORY_CHARS)
    own_calls = calls.get(message.pk, [])
    own: list[dict] = []
    if message.content or own_calls:
        # The model goes on from the end of its partial answer: the end is what it
        # needs, in at most half the budget; the conversation gets the rest.
        own = [
            *assistant_turn(message, own_calls, send_reasoning=send_reasoning),
            {"role": "user", "content": CONTINUE_PROMPT},
        ]
        own = _keep_end(own, budget // 2)
    for turn in _trim(turns, budget - _size(own)):
        out.extend(turn)
    out.extend(own)
    return out


def _tool_calls(message_ids: list[int]) -> dict[int, list[ToolCall]]:
    """Each message's calls, in ToolCall's own order (start_seq, id)."""
    calls: dict[int, list[ToolCall]] = {}
    for call in ToolCall.objects.filter(message_id__in=message_ids):
        calls.setdefault(call.message_id, []).append(call)
    return calls


def _trim(turns: list[list[dict]], budget: int) -> list[list[dict]]:
    """Drop the oldest turns until the history fits `budget` characters of JSON,
    keeping at least the latest prompt, so a long conversation never overflows
    the provider's context window."""
    sizes = [_size(turn) for turn in turns]
    while len(turns) > 1 and sum(sizes) > budget:
        turns, sizes = turns[1:], sizes[1:]
    if turns and sizes[0] > budget:
        # One prompt alone is too long: keep its end, where the question usually is.
        turns = [_keep_end(turns[0], budget)]
    return turns


def _size(messages: list[dict]) -> int:
    return sum(len(json.dumps(m)) for m in messages)


def _keep_end(messages: list[dict], budget: int) -> list[dict]:
    """`messages` with text cut from the start of the earliest ones until their
    JSON fits `budget` (a message's reasoning, which came before its text, first)."""
    over = _size(messages) - budget
    out = []
    for m in messages:
        for key in ("reasoning_content", "content"):
            text = m.get(key)
            if over > 0 and isinstance(text, str) and text:
                size = len(json.dumps(text))
                kept = _longest_end(text, size - over)
                over -= size - len(json.dumps(kept))
                m = {**m, key: kept}
        out.append(m)
    return out


def _longest_end(text: str, room: int) -> str:
    """The longest end of `text` that is at most `room` characters as JSON (JSON
    escapes some characters into several, so count, do not guess)."""
    low, high = 0, len(text)
    while low < high:
        middle = (low + high) // 2
        if len(json.dumps(text[middle:])) <= room:
            high = middle
        else:
            low = middle + 1
    return text[low:]


def assistant_turn(message: Message, tool_calls: list[ToolCall], *, send_reasoning: bool = False) -> list[dict]:
    """An assistant message as chat-completions messages: the text before each
    round of tool calls, the calls, their results, then the rest of the text.

    Its reasoning is left out unless `send_reasoning`: most providers ignore it
    and some refuse a request that has it (HTTP 400). With it, the stored
    reasoning rides as `reasoning_content` on the turn's first assistant message
    (where the thinking came: it is stored as one text, not per round)."""
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
                    {
                        "id": c.call_id,
                        "type": "function",
                        "function": {"name": c.name, "arguments": c.arguments or "{}"},
                    }
                    for c in calls
                ],
            }
        )
        for c in calls:
            out.append({"role": "tool", "tool_call_id": c.call_id, "content": tool_output_for_model(c)})
        position = offset
    if content[position:]:
        out.append({"role": "assistant", "content": content[position:]})
    if send_reasoning and message.reasoning and out:
        out[0] = {**out[0], "reasoning_content": message.reasoning}
    return out


def tool_output_for_model(call: ToolCall) -> str:
    if call.state == ToolCall.State.OK:
        return call.result
    if call.state == ToolCall.State.ERROR:
        return f"Error: {call.error}"
    return "Error: the tool did not finish (the answer was interrupted)."
