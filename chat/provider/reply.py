"""One streamed reply of the model: its text as it comes, and what the rest of
the answer needs once it ends (the tool calls it asks for, the tokens it counted,
why it finished), each bounded as it arrives.

`read_reply` hands each piece of text on as it comes; the `Reply` it is given
gathers the rest. Failures
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
from chat.provider.secrets import scrub
from chat.storable import LARGEST_COUNT, storable

# ToolCall.name's length: no tool has a longer name.
MAX_TOOL_NAME = 100


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


@dataclass
class Reply:
    parts: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    calls: list[PendingCall] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # Tool-call deltas by their index in the reply.
    _by_index: dict[int, PendingCall] = field(default_factory=dict)

    @property
    def text(self) -> str:
        # Joined once, when needed: `text += delta` copies the whole text per token.
        return "".join(self.parts)

    def read(self, chunk: dict) -> str | None:
        """Take one chunk of the stream; the text it adds, made storable, if any."""
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.prompt_tokens = _counted(self.prompt_tokens, usage.get("prompt_tokens"))
            self.completion_tokens = _counted(self.completion_tokens, usage.get("completion_tokens"))
        choices = chunk.get("choices")
        if not choices:
            return None
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
        text = delta.get("content")
        if text and isinstance(text, str):
            text = storable(text)
            self.parts.append(text)
            return text
        return None

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


async def read_reply(choice: ModelChoice, body: dict, reply: Reply, on_text: Callable[[str], Awaitable[None]]) -> None:
    """One chat-completions request to the chosen model, streamed: each piece of
    text goes to `on_text` as it comes (inside the idle timeout: a viewer-side
    stall counts as one), while `reply` gathers the tool calls, usage and finish
    reason. An exception from `on_text` ends the request and closes the
    provider's response."""
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
                    text = reply.read(chunk)
                    if text:
                        await on_text(text)
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


def _detail(exc: BaseException, choice: ModelChoice) -> str:
    """The provider's account of a failure, without the key (an error body may echo it)."""
    return scrub(error_detail(exc), choice.api_key)


def _counted(total: int, reported) -> int:
    """`total` plus a count the provider reported, if it is one; never more than
    a database column holds."""
    if not isinstance(reported, int) or reported <= 0:
        return total
    return min(total + reported, LARGEST_COUNT)
