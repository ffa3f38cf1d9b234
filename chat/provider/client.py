"""The model: one `openai.AsyncOpenAI` client per model choice's endpoint and
key (chat/provider/catalog.py), for any OpenAI-compatible endpoint or for the
offline demo model."""

import asyncio

import httpx2
import openai
from django.conf import settings

from chat.provider.catalog import ModelChoice
from chat.provider.demo import DemoModelTransport

_clients: dict[tuple, openai.AsyncOpenAI] = {}


def get_client(choice: ModelChoice) -> openai.AsyncOpenAI:
    """A client per event loop and endpoint, so its connection pool is reused."""
    key = (id(asyncio.get_running_loop()), choice.demo, choice.base_url, choice.api_key)
    client = _clients.get(key)
    if client is None:
        client = _clients[key] = _make_client(choice)
    return client


def _make_client(choice: ModelChoice) -> openai.AsyncOpenAI:
    # The read timeout bounds each wait for the next chunk; chat/provider/reply.py adds
    # its own idle timeout on top, which also covers the demo transport.
    timeout = httpx2.Timeout(settings.CHAT_IDLE_TIMEOUT, connect=settings.CHAT_CONNECT_TIMEOUT)
    if choice.demo:
        return openai.AsyncOpenAI(
            api_key="demo",
            base_url="http://demo-model.invalid/v1",
            max_retries=0,
            http_client=httpx2.AsyncClient(transport=DemoModelTransport(), timeout=timeout),
        )
    return openai.AsyncOpenAI(
        # Local servers (Ollama, vLLM, llama.cpp) accept any key.
        api_key=choice.api_key or "not-needed",
        base_url=choice.base_url or None,
        max_retries=settings.CHAT_MAX_RETRIES,
        timeout=timeout,
    )


# What users read when the provider fails: one fixed sentence per kind of failure.
# The provider's own words never reach them (nor the stored message, its stream or
# the exports): real error bodies carry masked keys, organisation ids, quota figures
# and internal host names. Those go to the server log and to staff (error_detail).
RATE_LIMITED = "The model provider is receiving too many requests. Wait a moment, then retry."
QUOTA_USED_UP = (
    "The model provider's usage limit for this site has been reached. Retrying will not help "
    "until the site's administrators raise it."
)
UNAVAILABLE = "The model provider is unavailable right now. Retry in a minute."
REFUSED = "The model provider refused to answer this request."
FILTERED = "The model provider's content filter stopped this answer."
CREDENTIALS = (
    "The model provider did not accept this site's credentials, so it cannot answer now. "
    "The site's administrators need to fix this."
)
NO_SUCH_MODEL = (
    "The model provider does not offer the model this site is set up to use. "
    "The site's administrators need to fix this."
)
TOO_LONG = "This conversation is too long for the model. Start a new conversation, or retry with a shorter message."
BAD_REQUEST = "The model provider could not process this request. Retry, or start a new conversation."
TIMED_OUT = "The model provider stopped responding (timed out). Retry in a moment."
CONNECTION_LOST = "The connection to the model provider was lost. Retry in a moment."
STREAM_ERROR = "The model provider reported an error while writing this answer. Retry in a moment."
UNREADABLE = "The model provider sent an answer that could not be read. Retry in a moment."

# A provider chooses how long its error bodies are; the log and admin get this much.
MAX_DETAIL_CHARS = 2000


def describe_error(exc: BaseException) -> str:
    """What the user reads when the provider fails (never the provider's words)."""
    if isinstance(exc, openai.APIStatusError):
        return _by_code(exc) or _by_status(exc.status_code)
    if isinstance(exc, (openai.APITimeoutError, TimeoutError, httpx2.TimeoutException)):
        return TIMED_OUT
    if isinstance(exc, (openai.APIConnectionError, httpx2.HTTPError, OSError)):
        return CONNECTION_LOST
    if isinstance(exc, openai.APIError):
        # An error the provider sent in the middle of its stream.
        return _by_code(exc) or STREAM_ERROR
    return UNREADABLE


def error_detail(exc: BaseException) -> str:
    """The provider's own account of a failure, for the server log and for staff
    in admin: the exception, status, request id, error code and message."""
    parts = [type(exc).__name__]
    if isinstance(exc, openai.APIStatusError):
        parts.append(f"status={exc.status_code}")
        if exc.request_id:
            parts.append(f"request_id={exc.request_id}")
    if isinstance(exc, openai.APIError):
        parts += [f"{name}={value}" for name, value in (("type", exc.type), ("code", exc.code)) if value]
        message = _provider_message(exc)
    else:
        message = str(exc)
    detail = " ".join(parts) + (f": {message}" if message else "")
    if exc.__cause__ is not None:
        # The SDK's connection errors say "Connection error."; the cause says which.
        detail += f" (from {type(exc.__cause__).__name__}: {exc.__cause__})"
    return detail[:MAX_DETAIL_CHARS]


def _by_code(exc: openai.APIError) -> str | None:
    """The kind of failure the provider's error code names, whatever the status
    (OpenAI and compatible servers reuse 400 and 429 for several)."""
    code = str(exc.code or "").lower()
    if code == "insufficient_quota":
        return QUOTA_USED_UP
    if code == "rate_limit_exceeded":
        return RATE_LIMITED
    if code == "context_length_exceeded" or "maximum context length" in _provider_message(exc).lower():
        # vLLM and llama.cpp say so in the message only.
        return TOO_LONG
    if code in ("content_policy_violation", "content_filter"):
        return REFUSED
    return None


def _by_status(status: int) -> str:
    if status == 429:
        return RATE_LIMITED
    if status == 401:
        return CREDENTIALS
    if status == 403:
        return REFUSED
    if status == 404:
        return NO_SUCH_MODEL
    if status == 413:
        return TOO_LONG
    if status in (408, 504):
        return TIMED_OUT
    if status >= 500:
        return UNAVAILABLE
    return BAD_REQUEST


def _provider_message(exc: openai.APIError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error")
        message = body.get("message") or (error.get("message") if isinstance(error, dict) else error)
        if message:
            return str(message)
    return exc.message
