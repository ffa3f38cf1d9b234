"""The models users may choose: staff's offered models (chat/models.py's
Provider and OfferedModel), or, while none is enabled, the environment's model
(OPENAI_API_KEY, OPENAI_BASE_URL, CHAT_MODEL; the offline demo model when
neither key nor base URL is set).

A `ModelChoice` is all a generation needs to reach one model: where, with which
key, its name, limits and default parameters. `resolve` turns a stored choice
into one, falling back to the site's default when the chosen model was disabled
or removed; `picker` is what the composer offers; `refresh` fetches a provider's
own list of models (GET /models) for staff.
"""

import logging
import os
from dataclasses import dataclass, field

import httpx2
import openai
from django.conf import settings
from django.utils import timezone

from chat import secrets
from chat.models import OfferedModel, Provider, SiteSettings

logger = logging.getLogger("chat.provider")

# A conservative estimate of characters per token for the history's budget:
# English prose is about four, code and many other languages fewer.
CHARS_PER_TOKEN = 3
# A request's budget never goes below this, however small a context is set.
MIN_CONTEXT_CHARS = 1000
# Parameters an offered model may not set: the request's own.
RESERVED_PARAMETERS = frozenset(
    {
        "model",
        "messages",
        "stream",
        "stream_options",
        "tools",
        "tool_choice",
        "max_tokens",
        "max_completion_tokens",
        "n",
    }
)
DEMO_LABEL = "Demo model"
# Longest wait for a provider's model list, so saving a provider in admin is quick.
LIST_TIMEOUT = 15
# Most models kept of a provider's list (the largest lists have a few hundred);
# an id longer than OfferedModel.model_id holds cannot be offered, so is not kept.
MAX_LISTED_MODELS = 2000
MAX_MODEL_ID = 100


class NotOffered(Exception):
    """A posted model that is not (or no longer) offered."""


class NoKeyInEnvironment(Exception):
    """The environment variable named to hold a provider's key is not set."""


@dataclass(frozen=True)
class ModelChoice:
    # The offered model's id; None for the environment's model.
    option_id: int | None
    label: str
    # The provider's name for the model.
    model: str
    # "" for the openai client's default (api.openai.com).
    base_url: str = ""
    api_key: str = field(default="", repr=False)
    send_reasoning: bool = False
    context_length: int | None = None
    max_tokens: int = 2048
    parameters: dict = field(default_factory=dict)
    demo: bool = False
    # The row, for code that records the choice on a message.
    option: OfferedModel | None = field(default=None, repr=False, compare=False)

    @property
    def value(self) -> str:
        """The picker's value for this choice ("" for the environment's model)."""
        return "" if self.option_id is None else str(self.option_id)

    @property
    def context_chars(self) -> int | None:
        """The budget of the whole request in characters of JSON: what fits the
        model's context once the answer's tokens are set aside; None for a model
        whose context is not known (CHAT_MAX_CONTEXT_CHARS bounds its history)."""
        if not self.context_length:
            return None
        return max(MIN_CONTEXT_CHARS, (self.context_length - self.max_tokens) * CHARS_PER_TOKEN)


def environment_choice() -> ModelChoice:
    demo = not (settings.OPENAI_API_KEY or settings.OPENAI_BASE_URL)
    return ModelChoice(
        option_id=None,
        label=DEMO_LABEL if demo else settings.CHAT_MODEL,
        model=settings.CHAT_MODEL,
        base_url=settings.OPENAI_BASE_URL,
        api_key=settings.OPENAI_API_KEY,
        max_tokens=settings.CHAT_MAX_TOKENS,
        demo=demo,
    )


def offered_choice(option: OfferedModel) -> ModelChoice:
    """`option` (with its provider) as a choice."""
    provider = option.provider
    return ModelChoice(
        option_id=option.pk,
        label=option.label,
        model=option.model_id,
        base_url=provider.base_url,
        api_key=provider_key(provider),
        send_reasoning=provider.send_reasoning,
        context_length=option.context_length,
        max_tokens=option.max_tokens or settings.CHAT_MAX_TOKENS,
        parameters={k: v for k, v in option.parameters.items() if k not in RESERVED_PARAMETERS}
        if isinstance(option.parameters, dict)
        else {},
        option=option,
    )


def provider_key(provider: Provider) -> str:
    """The provider's key: from its environment variable, or decrypted; "" when
    it has none (local servers take any key) or it cannot be read."""
    if provider.api_key_env:
        return os.environ.get(provider.api_key_env, "")
    if not provider.api_key_encrypted:
        return ""
    try:
        return secrets.decrypt(provider.api_key_encrypted)
    except secrets.KeyUnreadable:
        logger.warning("provider %s: its stored key cannot be decrypted; enter it again in admin", provider.pk)
        return ""


def _offered():
    return OfferedModel.objects.filter(enabled=True, provider__enabled=True).select_related("provider")


@dataclass
class Picker:
    """What the composer offers: (value, label) pairs, and the value selected."""

    options: list[tuple[str, str]]
    selected: str
    # Only the offline demo model is offered: the page says so.
    demo: bool = False


def options() -> list[tuple[str, str]]:
    """The offered models as (value, label) pairs, in the picker's order; empty
    while none is enabled (the environment's model is then the only choice)."""
    return [(str(pk), label) for pk, label in _offered().values_list("pk", "label")]


def picker(option_id: int | None) -> Picker:
    """The choices, and the one a conversation set to `option_id` uses (the
    default when it is none, disabled or removed). Two queries, no key read."""
    offered = options()
    if not offered:
        env = environment_choice()
        return Picker([(env.value, env.label)], env.value, demo=env.demo)
    return Picker(offered, _selected(option_id, offered))


def picked(value: str, offered: list[tuple[str, str]]) -> int | None:
    """The offered model a form posted (its id), or None for the default ("").
    Raises NotOffered for anything else, a disabled or removed model included.
    `offered`: options(), read by the caller."""
    value = value.strip()
    if not value:
        return None
    if value not in {v for v, _ in offered}:
        raise NotOffered(value)
    return int(value)


def resolve(option_id: int | None, offered: list[tuple[str, str]]) -> ModelChoice:
    """The model an answer is written by: the offered model `option_id` when it
    is on offer, else the site's default model, else the first offered one, else
    (none offered) the environment's. `offered`: options(), read by the caller.
    At most two queries, none while nothing is offered."""
    if not offered:
        return environment_choice()
    chosen = _offered().filter(pk=int(_selected(option_id, offered))).first() or _offered().first()
    return offered_choice(chosen) if chosen is not None else environment_choice()


def _selected(option_id: int | None, offered: list[tuple[str, str]]) -> str:
    """The value of `option_id` among `offered`, else of the site's default, else
    the first's."""
    values = {value for value, _ in offered}
    if str(option_id) in values:
        return str(option_id)
    default = str(_default_id())
    return default if default in values else offered[0][0]


def _default_id() -> int | None:
    return SiteSettings.objects.values_list("default_model_id", flat=True).first()


# The provider's own list of models, for staff. One fixed sentence per kind of
# failure: a provider's error body may echo the key it was sent.
LIST_UNREACHABLE = "The provider could not be reached at its base URL: it is down, or the URL is wrong."
LIST_KEY_REFUSED = "The provider refused the key: check it (or the environment variable that holds it)."
LIST_TIMED_OUT = f"The provider did not answer within {LIST_TIMEOUT} seconds."
LIST_NOT_FOUND = "The provider has no model list at this base URL: check it (it usually ends in /v1)."
LIST_FAILED = "The provider failed to list its models (HTTP {status})."
LIST_UNREADABLE = "The provider's model list could not be read."
LIST_NO_ENV_KEY = "The environment variable {name} that should hold the key is not set."


def refresh(provider: Provider) -> None:
    """Fetch the provider's models (GET /models) into `listed_models`, or why it
    failed into `list_error`, and save both."""
    api_key = provider_key(provider)
    try:
        if provider.api_key_env and not api_key:
            raise NoKeyInEnvironment
        models = fetch_models(provider.base_url, api_key)
    except Exception as exc:
        provider.list_error = _list_error(exc, provider)
        logger.warning("provider %s: model list failed: %s", provider.pk, secrets.scrub(_detail(exc), api_key))
    else:
        provider.listed_models = models
        provider.listed_at = timezone.now()
        provider.list_error = ""
    provider.save(update_fields=["listed_models", "listed_at", "list_error"])


def fetch_models(base_url: str, api_key: str) -> list[str]:
    """The ids of the models the provider lists, sorted (at most MAX_LISTED_MODELS)."""
    timeout = httpx2.Timeout(LIST_TIMEOUT, connect=settings.CHAT_CONNECT_TIMEOUT)
    with openai.OpenAI(base_url=base_url, api_key=api_key or "not-needed", max_retries=0, timeout=timeout) as client:
        ids = {str(model.id) for model in client.models.list()}
    return sorted(i for i in ids if 0 < len(i) <= MAX_MODEL_ID)[:MAX_LISTED_MODELS]


def _list_error(exc: Exception, provider: Provider) -> str:
    if isinstance(exc, NoKeyInEnvironment):
        return LIST_NO_ENV_KEY.format(name=provider.api_key_env)
    if isinstance(exc, openai.APIStatusError):
        if exc.status_code in (401, 403):
            return LIST_KEY_REFUSED
        if exc.status_code == 404:
            return LIST_NOT_FOUND
        return LIST_FAILED.format(status=exc.status_code)
    if isinstance(exc, openai.APITimeoutError):
        return LIST_TIMED_OUT
    if isinstance(exc, openai.APIConnectionError):
        return LIST_UNREACHABLE
    return LIST_UNREADABLE


def _detail(exc: Exception) -> str:
    detail = f"{type(exc).__name__}: {exc}"
    if exc.__cause__ is not None:
        detail += f" (from {type(exc.__cause__).__name__}: {exc.__cause__})"
    return detail[:2000]
