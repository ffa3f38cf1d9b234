"""Secrets at rest: an MCP server's request headers (a bearer token) and a stdio
server's environment variables are stored encrypted with Fernet, under a key
derived from SECRET_KEY, and shown back only masked. A value written "env:NAME"
is not stored at all: it is read from the worker's environment variable NAME
when the server is reached.

Changing SECRET_KEY makes the stored values unreadable: they are then treated
as absent (the server's check says so) and staff enter them again."""

import base64
import hashlib
import json
import logging
import os

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings

logger = logging.getLogger("chat.mcp")

ENV_PREFIX = "env:"


def _fernet() -> Fernet:
    # A key of its own, not SECRET_KEY itself: what signs cookies does not also encrypt.
    digest = hashlib.sha256(b"chat.mcp.secrets:" + settings.SECRET_KEY.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def encrypt_map(values: dict[str, str]) -> str:
    if not values:
        return ""
    return _fernet().encrypt(json.dumps(values).encode()).decode()


def decrypt_map(token: str) -> dict[str, str]:
    """The stored names and values, as entered ("env:NAME" kept as such)."""
    if not token:
        return {}
    try:
        return json.loads(_fernet().decrypt(token.encode()))
    except InvalidToken:
        logger.warning("stored MCP secrets cannot be decrypted (SECRET_KEY changed?)")
        return {}


def resolved(values: dict[str, str]) -> dict[str, str]:
    """The values as used: "env:NAME" ones read from the environment (an unset
    variable leaves its entry out)."""
    sent = {}
    for name, value in values.items():
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
