"""One streamed reply of the model: its text and its reasoning as they come, and
what the rest of the answer needs once it ends (the tool calls it asks for, the
tokens it counted, why it finished), each bounded as it arrives.

A reasoning model's thinking comes in a delta field of its own
(`reasoning_content`: DeepSeek, vLLM, llama.cpp; `reasoning`: Ollama, OpenRouter,
newer vLLM; `reasoning_text`), or as `<think>…</think>` at the start of the
content (models served raw). `ThinkTags` takes the second apart, tags split
across chunks included.

`read_reply` hands each piece of text and of reasoning on as it comes; the
`Reply` it is given gathers the rest. Failures
are two exceptions whose message is what the user reads: `ProviderFailure` (the
provider failed; its own account is in `detail`, for the log and staff only) and
`OutputLimit` (it sent more than a limit allows).
"""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx2
import openai
from django.conf import settings

from chat.provider import stream
from chat.provider.catalog import ModelChoice
from chat.provider.client import describe_error, error_detail, get_client
from chat.secrets import scrub
from chat.storable import LARGEST_COUNT, storable

# ToolCall.name's length: no tool has a longer name.
MAX_TOOL_NAME = 100

# The delta fields reasoning comes in, as servers name them. A server that sends
# two of them sends the same text twice: the first one present is read.
REASONING_FIELDS = ("reasoning_content", "reasoning", "reasoning_text")
THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"


class ProviderFailure(Exception):
    """The model provider failed. The message is what the user reads; `detail`,
    the provider's own account, is for the log and staff only."""

    def __init__(self, message: str, detail: str) -> None:
        super().__init__(message)
        self.detail = detail


class OutputLimit(Exception):
    """The model or its provider sent more than a limit allows; the message is
    what the user reads."""


@dataclass
class PendingCall:
    id: str = ""
    name: str = ""
    # Joined once, when needed (see Reply.text).
    argument_parts: list[str] = field(default_factory=list)
    argument_chars: int = 0

    @property
    def arguments(self) -> str:
        return "".join(self.argument_parts)


class ThinkTags:
    """Content that may start with `<think>…</think>`, as (reasoning, text) per
    piece. Leading whitespace before the tag is allowed; the line breaks right
    after the closing tag are dropped. Content held back is only what could
    still be a tag: the start of the content until it is known not to be
    `<think>`, and inside, an end that could be the start of `</think>`."""

    def __init__(self) -> None:
        # "start": no word yet; "thinking": inside the tags; "after": just after
        # the closing tag; "text": the answer.
        self.state = "start"
        self.held = ""

    def feed(self, piece: str) -> tuple[str, str]:
        if self.state == "text":
            return "", piece
        held, self.held = self.held + piece, ""
        if self.state == "start":
            word = held.lstrip()
            if len(word) < len(THINK_OPEN) and THINK_OPEN.startswith(word):
                # Only whitespace, or the start of the tag, so far.
                self.held = held
                return "", ""
            if not word.startswith(THINK_OPEN):
                self.state = "text"
                return "", held
            self.state = "thinking"
            held = word[len(THINK_OPEN) :]
        if self.state == "thinking":
            end = held.find(THINK_CLOSE)
            if end < 0:
                keep = _partial_suffix(held, THINK_CLOSE)
                self.held = held[len(held) - keep :]
                return held[: len(held) - keep], ""
            reasoning, held = held[:end], held[end + len(THINK_CLOSE) :]
            self.state = "after"
            _, text = self.feed(held)
            return reasoning, text
        # After the closing tag: the answer starts at its first other character.
        text = held.lstrip("\r\n")
        if text:
            self.state = "text"
        return "", text

    def end(self) -> tuple[str, str]:
        """The content ended: what was held back, for what it turned out to be."""
        held, self.held = self.held, ""
        if self.state == "thinking":
            return held, ""
        return "", held


def _partial_suffix(text: str, tag: str) -> int:
    """The length of the longest end of `text` that is a start of `tag`."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0


@dataclass
class Reply:
    parts: list[str] = field(default_factory=list)
    reasoning_parts: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    calls: list[PendingCall] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # Tool-call deltas by their index in the reply.
    _by_index: dict[int, PendingCall] = field(default_factory=dict)
    _tags: ThinkTags = field(default_factory=ThinkTags)

    @property
    def text(self) -> str:
        # Joined once, when needed: `text += delta` copies the whole text per token.
        return "".join(self.parts)

    @property
    def reasoning(self) -> str:
        return "".join(self.reasoning_parts)

    def read(self, chunk: dict) -> tuple[str, str]:
        """Take one chunk of the stream; the reasoning and the text it adds, made
        storable (empty when it adds none)."""
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.prompt_tokens = _counted(self.prompt_tokens, usage.get("prompt_tokens"))
            self.completion_tokens = _counted(self.completion_tokens, usage.get("completion_tokens"))
        choices = chunk.get("choices")
        if not choices:
            return "", ""
        choice = choices[0] if isinstance(choices, list) else None
        if not isinstance(choice, dict):
            raise ValueError("a chunk of the stream has no usable choice")
        delta = choice.get("delta") or {}
        if not isinstance(delta, dict):
            raise ValueError("a chunk of the stream has a delta that is not an object")
        for call_delta in delta.get("tool_calls") or ():
            if isinstance(call_delta, dict):
                self._gather_call(call_delta)
        if choice.get("finish_reason"):
            self.finish_reason = str(choice["finish_reason"])
        reasoning = ""
        for name in REASONING_FIELDS:
            if value := delta.get(name):
                reasoning = value if isinstance(value, str) else ""
                break
        text = delta.get("content")
        if not (text and isinstance(text, str)):
            return self._kept(reasoning, "")
        thought, text = self._tags.feed(text)
        return self._kept(reasoning + thought if thought else reasoning, text)

    def end(self) -> tuple[str, str]:
        """The stream ended: the reasoning and the text held back, if any (the
        content's start, which could have been a tag)."""
        return self._kept(*self._tags.end())

    def _kept(self, reasoning: str, text: str) -> tuple[str, str]:
        if reasoning:
            reasoning = storable(reasoning)
            self.reasoning_parts.append(reasoning)
        if text:
            text = storable(text)
            self.parts.append(text)
        return reasoning, text

    def _gather_call(self, delta: dict) -> None:
        """Tool-call deltas arrive in pieces keyed by index; some servers reuse
        index 0 for every call, so a new id at a known index starts a new call.
        The number of calls, their names and arguments are bounded as they arrive."""
        index = delta.get("index") if isinstance(delta.get("index"), int) else 0
        call_id = delta.get("id") if isinstance(delta.get("id"), str) else None
        call = self._by_index.get(index)
        if call is None or (call_id and call.id and call_id != call.id):
            if len(self.calls) >= settings.CHAT_MAX_TOOL_CALLS:
                limit = settings.CHAT_MAX_TOOL_CALLS
                raise OutputLimit(f"The model asked for more than {limit} tool calls at once; stopped here.")
            call = self._by_index[index] = PendingCall()
            self.calls.append(call)
        if call_id:
            call.id = call_id
        function = delta.get("function")
        if isinstance(function, dict):
            name, arguments = function.get("name"), function.get("arguments")
            if isinstance(name, str):
                call.name += name
                if len(call.name) > MAX_TOOL_NAME:
                    raise OutputLimit(
                        f"The model sent a tool name longer than {MAX_TOOL_NAME} characters; stopped here."
                    )
            if isinstance(arguments, str) and arguments:
                call.argument_chars += len(arguments)
                if call.argument_chars > settings.CHAT_MAX_TOOL_ARGUMENT_CHARS:
                    limit = settings.CHAT_MAX_TOOL_ARGUMENT_CHARS
                    raise OutputLimit(f"The model sent tool arguments longer than {limit:,} characters; stopped here.")
                call.argument_parts.append(arguments)
        if not call.id:
            call.id = f"call_{len(self.calls)}"


def request_body(choice: ModelChoice, messages: list[dict], tools: list[dict]) -> dict:
    """One chat-completions request, as the provider reads it: the chosen model's
    default parameters, which cannot change what the request itself sets."""
    body = {
        **choice.parameters,
        "model": choice.model,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": choice.max_tokens,
    }
    if tools:
        body["tools"] = tools
    return body


async def read_reply(
    choice: ModelChoice,
    body: dict,
    reply: Reply,
    on_text: Callable[[str], Awaitable[None]],
    on_reasoning: Callable[[str], Awaitable[None]],
) -> None:
    """One chat-completions request to the chosen model, streamed: each piece of
    reasoning goes to `on_reasoning` and each piece of text to `on_text` as they
    come (inside the idle timeout: a viewer-side stall counts as one), while
    `reply` gathers the tool calls, usage and finish reason. An exception from
    either ends the request and closes the provider's response."""
    idle = settings.CHAT_IDLE_TIMEOUT
    max_line_bytes = settings.CHAT_MAX_PROVIDER_LINE_BYTES
    max_bytes = settings.CHAT_MAX_PROVIDER_RESPONSE_BYTES
    loop = asyncio.get_running_loop()
    try:
        async with stream.completion(get_client(choice), body) as response:
            # The idle timeout: at least `idle` seconds without a chunk, at most a
            # quarter more. The timer moves only when the deadline comes within
            # `idle`, not once per token.
            deadline = loop.time() + idle
            async with asyncio.timeout_at(deadline) as timer:
                async for chunk in stream.chunks(response, max_line_bytes=max_line_bytes, max_bytes=max_bytes):
                    now = loop.time()
                    if deadline - now < idle:
                        deadline = now + idle * 1.25
                        timer.reschedule(deadline)
                    await _hand_on(reply.read(chunk), on_text, on_reasoning)
            await _hand_on(reply.end(), on_text, on_reasoning)
    except stream.LineTooLong:
        raise OutputLimit(
            f"The model provider sent more than {max_line_bytes:,} bytes in one piece; stopped here."
        ) from None
    except stream.ResponseTooLarge:
        raise OutputLimit(
            f"The model provider sent more than {max_bytes:,} bytes in one reply; stopped here."
        ) from None
    except (TimeoutError, httpx2.TimeoutException) as exc:
        # Ours, or the client's read timeout (the same length) if it fired first.
        raise ProviderFailure(f"The model provider sent nothing for {idle:g} seconds.", _detail(exc, choice)) from None
    except (openai.APIError, OSError, ValueError) as exc:
        raise ProviderFailure(describe_error(exc), _detail(exc, choice)) from exc
    except Exception as exc:
        # httpx2 transport errors mid-stream are not wrapped by the SDK.
        if type(exc).__module__.startswith(("httpx2", "httpcore2")):
            raise ProviderFailure(describe_error(exc), _detail(exc, choice)) from exc
        raise
    if reply.finish_reason is None:
        raise ProviderFailure(
            "The model's answer ended without finishing (the stream was cut off).",
            "The stream ended without a finish_reason.",
        )


async def _hand_on(
    pieces: tuple[str, str],
    on_text: Callable[[str], Awaitable[None]],
    on_reasoning: Callable[[str], Awaitable[None]],
) -> None:
    reasoning, text = pieces
    if reasoning:
        await on_reasoning(reasoning)
    if text:
        await on_text(text)


def _detail(exc: BaseException, choice: ModelChoice) -> str:
    """The provider's account of a failure, without the key (an error body may echo it)."""
    return scrub(error_detail(exc), choice.api_key)


def _counted(total: int, reported) -> int:
    """`total` plus a count the provider reported, if it is one; never more than
    a database column holds."""
    if not isinstance(reported, int) or reported <= 0:
        return total
    return min(total + reported, LARGEST_COUNT)
