"""An MCP server's request headers (a bearer token) and a stdio server's
environment variables: stored encrypted as provider keys are (chat/secrets.py),
and shown back only masked. A value written "env:NAME" is not stored at all: it
is read from the worker's environment variable NAME (an MCP_* one) when the
server is reached.

Values the current encryption keys cannot read are treated as absent (the
server's check says so) and staff enter them again."""

import json
import logging
import os
import re

from chat.secrets import KeyUnreadable, decrypt, encrypt

logger = logging.getLogger("chat.mcp")

ENV_PREFIX = "env:"
# The variables an "env:" value may name: MCP_*, so that nobody who may edit a
# server can have the worker's own secrets (SECRET_KEY, DATABASE_URL, a
# provider's key) sent to a URL or a command of their choosing.
ENV_NAME = re.compile(r"MCP_[A-Z0-9_]+")


def env_reference_allowed(value: str) -> bool:
    return not value.startswith(ENV_PREFIX) or ENV_NAME.fullmatch(value.removeprefix(ENV_PREFIX)) is not None


def encrypt_map(values: dict[str, str]) -> str:
    if not values:
        return ""
    return encrypt(json.dumps(values))


def decrypt_map(token: str) -> dict[str, str]:
    """The stored names and values, as entered ("env:NAME" kept as such)."""
    if not token:
        return {}
    try:
        return json.loads(decrypt(token))
    except KeyUnreadable:
        logger.warning("stored MCP secrets cannot be decrypted with the current encryption keys")
        return {}


def resolved(values: dict[str, str]) -> dict[str, str]:
    """The values as used: "env:NAME" ones read from the environment (an unset
    variable leaves its entry out)."""
    sent = {}
    for name, value in values.items():
        if not env_reference_allowed(value):
            continue
        if value.startswith(ENV_PREFIX):
            value = os.environ.get(value.removeprefix(ENV_PREFIX), "")
            if not value:
                continue
        sent[name] = value
    return sent


def masked(value: str) -> str:
    """What staff see of a stored value: an env reference in full, a secret's
    last characters at most."""
    if value.startswith(ENV_PREFIX):
        return value
    if len(value) <= 12:
        return "••••"
    return f"••••{value[-4:]}"
