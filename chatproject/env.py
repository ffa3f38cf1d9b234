"""Typed readers for settings that come from the environment.

Each raises ImproperlyConfigured naming the variable, rather than guessing, so a
typo fails at start-up instead of at the first request.
"""

import os
from urllib.parse import urlparse

from django.core.exceptions import ImproperlyConfigured


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean: use 1/0, true/false, yes/no or on/off.")


def env_number(name: str, default: float, *, minimum: float = 0, cast: type = float):
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return cast(default)
    try:
        value = cast(raw)
    except ValueError:
        kind = "a whole number" if cast is int else "a number"
        raise ImproperlyConfigured(f"{name}={raw!r} is not {kind}.") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name}={raw!r} must be at least {minimum}.")
    return value


def env_int(name: str, default: int, *, minimum: int = 0) -> int:
    return env_number(name, default, minimum=minimum, cast=int)


def env_url(name: str, schemes: tuple[str, ...]) -> str:
    """A URL whose scheme is one of `schemes`, or "" when the variable is unset."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return ""
    parsed = urlparse(raw)
    if parsed.scheme not in schemes:
        allowed = ", ".join(f"{s}://" for s in schemes)
        shown = raw.replace(f":{parsed.password}@", ":***@") if parsed.password else raw
        raise ImproperlyConfigured(f"{name}={shown!r} must start with one of: {allowed}.")
    return raw


def env_fernet_keys(name: str) -> tuple[str, ...]:
    """Comma-separated Fernet keys (32 url-safe base64-encoded bytes each), or ()
    when the variable is unset. The values are never repeated in the message."""
    from cryptography.fernet import Fernet

    keys = tuple(key.strip() for key in os.environ.get(name, "").split(",") if key.strip())
    for position, key in enumerate(keys, 1):
        try:
            Fernet(key)
        except ValueError:
            raise ImproperlyConfigured(
                f"{name}: key number {position} is not a Fernet key (make one with "
                '`python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"`).'
            ) from None
    return keys
