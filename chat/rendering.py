"""How stored messages and live events look in the page.

The same templates serve a page load, a stream's events and admin review, so an
answer looks the same however it is reached. Every piece of model or tool output
is escaped (tool cards, text not yet rendered) or rendered as sanitised Markdown.
An answer still streaming is its settled blocks and its open part, built from
the stored text exactly as its events build them (chat/live_markdown.py).
"""

import functools
import hashlib
import html
import json
from dataclasses import dataclass

from django.template.loader import render_to_string
from django.urls import reverse

from chat import events
from chat.live_markdown import LiveMarkdown
from chat.markdown import render_markdown
from chat.mcp.names import tool_label
from chat.models import Approval, Message, Status, ToolCall
from chat.provider import catalog
from chat.storable import storable


def escape_text(text: str) -> str:
    # A carriage return would be a line break to the SSE parser and come back as
    # a newline: encode it so the text arrives exactly as produced.
    return html.escape(text).replace("\r", "&#13;")


def open_part_html(message_id: int, parts: tuple[str, str, str] | list[str], *, oob: bool = False) -> str:
    """The open part of a streaming answer: rendered up to its cut, then the
    text after the cut, escaped, in the element that text deltas append to."""
    before, raw, after = parts
    swap = ' hx-swap-oob="true"' if oob else ""
    return (
        f'<div class="md-open" id="msg-{message_id}-open"{swap}>{before}'
        f'<span class="md-raw" id="msg-{message_id}-raw">{escape_text(raw)}</span>{after}</div>'
    )


def text_delta_fragment(message_id: int, data: dict) -> str:
    """A text delta as the page takes it: its escaped text, appended to the open
    part (most deltas); or, when it moved a cut, the blocks it settled appended
    once and the open part replaced, both out of band."""
    if "open" not in data:
        return escape_text(data.get("text", ""))
    settled = data.get("settled", "")
    appended = f'<div hx-swap-oob="beforeend:#msg-{message_id}-settled">{settled}</div>' if settled else ""
    return appended + open_part_html(message_id, data["open"], oob=True)


def thinking_label(seconds: float | None, *, thinking: bool) -> str:
    if thinking:
        return "Thinking…"
    if seconds is None:
        # Thought, but the time was not kept (its process died mid-thought).
        return "Thought"
    return f"Thought for {round(seconds)} s" if seconds >= 0.5 else "Thought for less than a second"


def thinking_label_html(message_id: int, seconds: float | None, *, thinking: bool, oob: bool = False) -> str:
    """The summary of the thinking block. `data-thinking` tells the page to keep
    the block open while it says "Thinking…" and to close it when it no longer
    does (static/chat/chat.js)."""
    swap = ' hx-swap-oob="true"' if oob else ""
    return (
        f'<span class="thinking-label" id="msg-{message_id}-thinking-label"'
        f' data-thinking="{"true" if thinking else "false"}"{swap}>{thinking_label(seconds, thinking=thinking)}</span>'
    )


def reasoning_delta_fragment(message_id: int, data: dict) -> str:
    """A piece of thinking as the page takes it: escaped plain text appended to
    the thinking block; the first of a stretch also says "Thinking…" again."""
    text = escape_text(data.get("text", ""))
    if data.get("started"):
        return text + thinking_label_html(message_id, None, thinking=True, oob=True)
    return text


def terminal_event_type(status: str) -> str:
    return events.ERROR if status in (Status.ERROR, Status.INTERRUPTED) else events.DONE


@dataclass
class ToolCard:
    message_id: int
    call_id: str
    name: str
    arguments: str
    state: str
    result: str = ""
    error: str = ""
    duration_ms: int | None = None
    # An MCP server's tool: the server's name.
    server: str = ""
    # A call that asks first: where the user's decision stands, and the row it is stored on.
    approval: str = ""
    row_id: int | None = None

    @property
    def label(self) -> str:
        return tool_label(self.server, self.name)

    @property
    def asks(self) -> bool:
        """Waiting for the user's decision: the card has Approve and Deny."""
        return self.approval == Approval.PENDING and self.state == ToolCall.State.RUNNING and self.row_id is not None

    @property
    def decide_url(self) -> str:
        return reverse("chat-tool-decide", args=[self.row_id]) if self.row_id is not None else ""

    @property
    def dom_id(self) -> str:
        # Call ids come from the model: never put them in an id attribute raw.
        digest = hashlib.sha1(f"{self.message_id}:{self.call_id}".encode()).hexdigest()[:16]
        return f"tool-{digest}"

    @property
    def pretty_arguments(self) -> str:
        try:
            # Decoding brings back what the stored text escapes ("\u0000", "\ud800").
            return storable(json.dumps(json.loads(self.arguments or "{}"), indent=2, ensure_ascii=False))
        except (ValueError, RecursionError):
            # Not JSON, or nested deeper than Python recurses: shown as sent.
            return self.arguments

    @classmethod
    def from_event(cls, message_id: int, data: dict, state: str, **finished) -> "ToolCard":
        """The card a tool event shows (`finished`: a result's fields)."""
        return cls(
            message_id,
            data["call_id"],
            data["name"],
            data.get("arguments", ""),
            state,
            server=data.get("server", ""),
            approval=data.get("approval", ""),
            **finished,
        )

    @classmethod
    def from_row(cls, call: ToolCall, *, upto_seq: int | None = None) -> "ToolCard":
        # A call ended by an interruption has a final state but no result event.
        if call.result_seq is None:
            finished = call.state != ToolCall.State.RUNNING
        else:
            finished = upto_seq is None or call.result_seq <= upto_seq
        return cls(
            message_id=call.message_id,
            call_id=call.call_id,
            name=call.name,
            arguments=call.arguments,
            state=call.state if finished else ToolCall.State.RUNNING,
            result=call.result if finished else "",
            error=call.error if finished else "",
            duration_ms=call.duration_ms if finished else None,
            server=call.server,
            approval=call.approval,
            row_id=call.pk,
        )


def tool_card_html(card: ToolCard, *, oob: bool = False) -> str:
    return render_to_string("chat/_tool_card.html", {"card": card, "oob": oob})


def event_fragment(message_id: int, event: events.Event) -> str:
    """The HTML an event carries to the page (done and error carry the finished
    answer, rendered by the generation or from the stored message)."""
    data = event.data
    if event.type == events.TEXT_DELTA:
        fragment = text_delta_fragment(message_id, data)
        if "thought_seconds" in data:
            # The first text after thinking closes the block.
            fragment += thinking_label_html(message_id, data["thought_seconds"], thinking=False, oob=True)
        return fragment
    if event.type == events.REASONING_DELTA:
        return reasoning_delta_fragment(message_id, data)
    if event.type == events.TOOL_START:
        # The text before the card is settled with it, and the open part starts afresh.
        card = ToolCard.from_event(message_id, data, ToolCall.State.RUNNING)
        return data.get("settled", "") + tool_card_html(card) + open_part_html(message_id, ("", "", ""), oob=True)
    if event.type == events.TOOL_APPROVAL:
        card = ToolCard.from_event(message_id, data, ToolCall.State.RUNNING, row_id=data.get("id"))
        return tool_card_html(card, oob=True)
    if event.type == events.TOOL_RESULT:
        state = ToolCall.State.ERROR if "error" in data else ToolCall.State.OK
        card = ToolCard.from_event(
            message_id,
            data,
            state,
            result=data.get("result", ""),
            error=data.get("error", ""),
            duration_ms=data.get("duration_ms"),
        )
        return tool_card_html(card, oob=True)
    raise ValueError(f"{event.type} events are rendered from the stored message")


def message_segments(message: Message, tool_calls: list[ToolCall]) -> list[dict]:
    """Text and tool cards in the order they happened, as Markdown (a streaming
    answer's open part as it stands)."""
    segments, live = _segments(message, tool_calls)
    if live is not None:
        before, raw, after = live.open_parts
        segments.append({"kind": "text", "html": live.settled_html + before + escape_text(raw) + after})
    return segments


def _segments(message: Message, tool_calls: list[ToolCall]) -> tuple[list[dict], LiveMarkdown | None]:
    """Text and tool cards in the order they happened. The text after the last
    card of a streaming answer is still growing: it comes apart, as the stream
    builds it."""
    upto = message.last_seq
    visible = [c for c in tool_calls if c.start_seq <= upto]
    segments: list[dict] = []
    position = 0
    content = message.content
    for call in visible:
        offset = min(call.text_offset, len(content))
        if offset > position:
            segments.append({"kind": "text", "html": _markdown(content[position:offset])})
            position = offset
        segments.append({"kind": "tool", "card": ToolCard.from_row(call, upto_seq=upto)})
    if message.is_streaming:
        return segments, LiveMarkdown(content[position:])
    if position < len(content):
        segments.append({"kind": "text", "html": _markdown(content[position:])})
    return segments, None


def growing_text(content: str, tool_calls: list[ToolCall]) -> str:
    """The text after an answer's last tool card: where a Continue goes on."""
    offsets = [min(c.text_offset, len(content)) for c in tool_calls]
    return content[max(offsets, default=0) :]


@functools.lru_cache(maxsize=64)
def _markdown(text: str) -> str:
    """A finished answer is rendered once, not again for every stream that ends
    on it (the done frame), every reconnect and every page load: Markdown, Pygments
    and the sanitiser take ~20 ms for 2,000 tokens. Keyed by the text: the same
    text always gives the same HTML. At most 64 texts of CHAT_MAX_ANSWER_CHARS."""
    return render_markdown(text)


def message_context(
    message: Message, tool_calls: list[ToolCall] | None = None, retry_models: list[tuple[str, str]] | None = None
) -> dict:
    """What _message.html shows of `message`. `retry_models`, the models a
    finished answer offers to retry with, are read when not given."""
    if message.role != Message.Role.ASSISTANT:
        # A prompt has no actions: no URLs to build (five reverses per message).
        return {"m": message, "segments": [], "user_text": message.content}
    if tool_calls is None:
        # Only events up to last_seq are shown: an answer with none has no cards.
        tool_calls = list(message.tool_calls.all()) if message.last_seq else []
    args = [message.conversation_id, message.pk]
    segments, live = _segments(message, tool_calls)
    if live is not None:
        segments.append({"kind": "text", "html": live.settled_html})
    # Thinking until text ends it: its time is stored then (chat/generation/recorder.py).
    thinking = message.is_streaming and message.reasoning_seconds is None
    return {
        "m": message,
        "segments": segments,
        "thinking": thinking,
        "thinking_label_html": thinking_label_html(message.pk, message.reasoning_seconds, thinking=thinking),
        # Plain text with its line breaks (chat.css), escaped as its events escape it.
        "reasoning_html": escape_text(message.reasoning),
        "open_html": open_part_html(message.pk, live.open_parts) if live is not None else "",
        "user_text": "",
        "stream_url": reverse("chat-stream", args=args) + f"?after={message.last_seq}",
        "stop_url": reverse("chat-stop", args=args),
        "continue_url": reverse("chat-continue", args=args),
        "retry_url": reverse("chat-retry", args=args),
        "feedback_url": reverse("chat-feedback", args=args),
        # Asked for only where the page shows it: a finished answer. A missing
        # reverse one-to-one raises an AttributeError subclass.
        "feedback": getattr(message, "feedback", None) if not message.is_streaming else None,
        "retry_models": _retry_models(message, retry_models),
    }


def _retry_models(message: Message, given: list[tuple[str, str]] | None) -> list[tuple[str, str]]:
    if message.is_streaming:
        return []  # no actions while it streams
    return catalog.options() if given is None else given


def render_message(
    message: Message,
    *,
    is_last: bool = True,
    notice: str = "",
    tool_calls: list[ToolCall] | None = None,
    retry_models: list[tuple[str, str]] | None = None,
) -> str:
    """One message as its own fragment. `notice` replaces the live stream with a
    message to the user (used when the live connection cannot be followed);
    `tool_calls` and `retry_models` when the caller has them (message_context)."""
    context = message_context(message, tool_calls, retry_models)
    context["is_last"] = is_last
    context["notice"] = notice
    return render_to_string("chat/_message.html", context)
