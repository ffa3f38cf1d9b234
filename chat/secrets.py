"""Secrets at rest (providers' keys, MCP servers' headers and environments):
encrypted with Fernet (the `cryptography` library), so a copy of the database (a
backup, a dump shared to debug) holds no usable secret.

The encryption keys come from CHAT_ENCRYPTION_KEYS (comma-separated Fernet keys:
the first encrypts, every one decrypts, so a key can be rotated in); without it,
from a key derived from SECRET_KEY with HKDF, so a fresh machine needs no setup.
Changing SECRET_KEY without CHAT_ENCRYPTION_KEYS makes stored secrets
unreadable: staff then enter them again (the admin says so).
"""

import base64
import functools

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

# Names what the derived key is for: another use of SECRET_KEY derives another key.
HKDF_INFO = b"chat provider keys"  # the name under which the first stored keys were derived


class KeyUnreadable(Exception):
    """A stored secret that the current encryption keys do not decrypt."""


def encrypt(secret: str) -> str:
    return _fernet(settings.CHAT_ENCRYPTION_KEYS, settings.SECRET_KEY).encrypt(secret.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet(settings.CHAT_ENCRYPTION_KEYS, settings.SECRET_KEY).decrypt(token.encode()).decode()
    except InvalidToken:
        raise KeyUnreadable("The stored secret cannot be decrypted with the current encryption keys.") from None


def last_four(api_key: str) -> str:
    """What staff may see of a key: its last four characters, of a key long
    enough that they give nothing useful away."""
    return api_key[-4:] if len(api_key) >= 12 else ""


def scrub(text: str, api_key: str) -> str:
    """`text` without `api_key`, for a provider's error that may echo it."""
    return text.replace(api_key, "[key]") if api_key else text


@functools.cache
def _fernet(keys: tuple[str, ...], secret_key: str) -> MultiFernet:
    if keys:
        return MultiFernet([Fernet(key) for key in keys])
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=HKDF_INFO).derive(secret_key.encode())
    return MultiFernet([Fernet(base64.urlsafe_b64encode(derived))])
