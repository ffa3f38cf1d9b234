"""The OpenID Connect provider's endpoints, read once at start-up from its
discovery document (`<issuer>/.well-known/openid-configuration`).

mozilla-django-oidc wants each endpoint as a setting; the provider publishes
them, so the operator gives only the issuer. Read at start-up rather than at the
first sign-in: a wrong issuer, or one that cannot be reached, stops the process
with a message naming OIDC_ISSUER instead of failing a user's sign-in later.
"""

import requests
from django.core.exceptions import ImproperlyConfigured

REQUIRED = ("issuer", "authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri")


def discover(issuer: str, timeout: float) -> dict[str, str]:
    """The provider's discovery document, checked to be the issuer's own."""
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        response = requests.get(url, timeout=timeout)
        response.raise_for_status()
        document = response.json()
    except (requests.RequestException, ValueError) as exc:
        raise ImproperlyConfigured(
            f"OIDC_ISSUER={issuer!r}: its discovery document {url} is not readable: {exc}"
        ) from None
    missing = [key for key in REQUIRED if not isinstance(document.get(key), str)]
    if missing:
        raise ImproperlyConfigured(f"OIDC_ISSUER={issuer!r}: its discovery document lacks {', '.join(missing)}.")
    # The ID tokens name their issuer; a document that names another is not this issuer's.
    if document["issuer"].rstrip("/") != issuer.rstrip("/"):
        raise ImproperlyConfigured(f"OIDC_ISSUER={issuer!r}, but its discovery document names {document['issuer']!r}.")
    return document
