"""The model: one `openai.AsyncOpenAI` client for any OpenAI-compatible endpoint,
or for the offline demo model when no provider is configured."""

import asyncio

import httpx2
import openai
from django.conf import settings

from chat.demo_model import DemoModelTransport

_clients: dict[tuple, openai.AsyncOpenAI] = {}


def uses_demo_model() -> bool:
    return not (settings.OPENAI_API_KEY or settings.OPENAI_BASE_URL)


def get_client() -> openai.AsyncOpenAI:
    """A client per event loop and configuration, so its connection pool is reused."""
    key = (id(asyncio.get_running_loop()), settings.OPENAI_API_KEY, settings.OPENAI_BASE_URL)
    client = _clients.get(key)
    if client is None:
        client = _clients[key] = _make_client()
    return client


def _make_client() -> openai.AsyncOpenAI:
    # The read timeout bounds each wait for the next chunk; chat/answer.py adds
    # its own idle timeout on top, which also covers the demo transport.
    timeout = httpx2.Timeout(settings.CHAT_IDLE_TIMEOUT, connect=settings.CHAT_CONNECT_TIMEOUT)
    if uses_demo_model():
        return openai.AsyncOpenAI(
            api_key="demo",
            base_url="http://demo-model.invalid/v1",
            max_retries=0,
            http_client=httpx2.AsyncClient(transport=DemoModelTransport(), timeout=timeout),
        )
    return openai.AsyncOpenAI(
        # Local servers (Ollama, vLLM, llama.cpp) accept any key.
        api_key=settings.OPENAI_API_KEY or "not-needed",
        base_url=settings.OPENAI_BASE_URL or None,
        max_retries=settings.CHAT_MAX_RETRIES,
        timeout=timeout,
    )


def describe_error(exc: BaseException) -> str:
    """What the user reads when the provider fails."""
    if isinstance(exc, openai.RateLimitError):
        return f"The model provider is rate-limiting requests (429): {_provider_message(exc)} Wait a moment, then retry."
    if isinstance(exc, openai.AuthenticationError):
        return f"The model provider rejected the API key (401): {_provider_message(exc)} Check OPENAI_API_KEY."
    if isinstance(exc, openai.PermissionDeniedError):
        return f"The model provider refused access (403): {_provider_message(exc)}"
    if isinstance(exc, openai.NotFoundError):
        return f"The model provider does not know this model or endpoint (404): {_provider_message(exc)}"
    if isinstance(exc, openai.BadRequestError):
        return f"The model provider refused the request (400): {_provider_message(exc)}"
    if isinstance(exc, openai.APIStatusError):
        return f"The model provider failed ({exc.status_code}): {_provider_message(exc)}"
    if isinstance(exc, (openai.APITimeoutError, TimeoutError, httpx2.TimeoutException)):
        return "The model provider stopped sending (timed out)."
    if isinstance(exc, (openai.APIConnectionError, httpx2.HTTPError)):
        return "The connection to the model provider was lost."
    if isinstance(exc, openai.APIError):
        # An error the provider sent in the middle of its stream.
        return f"The model provider reported an error: {_provider_message(exc)}"
    return f"The model provider's answer could not be read ({type(exc).__name__})."


def _provider_message(exc: openai.APIError) -> str:
    body = exc.body
    if isinstance(body, dict):
        message = body.get("message") or (body.get("error") or {}).get("message")
        if message:
            return str(message)
    return exc.message
