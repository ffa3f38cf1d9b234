"""The checks on an ID token (chat/sso/backend.py), on tokens signed here with
real keys: the library checks the signature, the expiry and the nonce; the app
adds the issuer and the audience. The whole sign-in against a real provider is
tests/test_sign_on.py."""

import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.exceptions import SuspiciousOperation

from chat.sso.backend import SignOnBackend

ISSUER = "https://id.example.com"
CLIENT = "chat"


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


PROVIDERS_KEY = _key()
ANOTHER_KEY = _key()


@pytest.fixture
def backend(settings) -> SignOnBackend:
    """The backend of a site whose provider signs with PROVIDERS_KEY."""
    settings.OIDC_ISSUER = ISSUER
    settings.OIDC_RP_CLIENT_ID = CLIENT
    settings.OIDC_RP_CLIENT_SECRET = "secret"
    settings.OIDC_OP_TOKEN_ENDPOINT = f"{ISSUER}/token"
    settings.OIDC_OP_USER_ENDPOINT = f"{ISSUER}/userinfo"
    settings.OIDC_RP_SIGN_ALGO = "RS256"
    # The provider's public key given outright, where the site reads it from the provider's keys URL.
    settings.OIDC_RP_IDP_SIGN_KEY = (
        PROVIDERS_KEY.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return SignOnBackend()


def _token(key=PROVIDERS_KEY, **claims) -> str:
    """A token signed with `key`; a claim given as None is left out."""
    claims = {"iss": ISSUER, "aud": CLIENT, "sub": "42", "nonce": "n-1", "exp": int(time.time()) + 60, **claims}
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, key, algorithm="RS256")


def test_it_accepts_the_providers_token_for_this_client(backend):
    assert backend.verify_token(_token(), nonce="n-1")["sub"] == "42"
    assert backend.verify_token(_token(aud=["other", CLIENT]), nonce="n-1")["sub"] == "42"


@pytest.mark.parametrize(
    "claims",
    [
        {"aud": "another-client"},
        {"aud": ["another-client"]},
        {"aud": None},
        {"iss": "https://evil.example.com"},
        {"iss": None},
    ],
    ids=["another-client", "another-client-in-a-list", "no-audience", "another-issuer", "no-issuer"],
)
def test_it_refuses_a_token_of_another_issuer_or_for_another_client(backend, claims):
    with pytest.raises(SuspiciousOperation, match="another issuer or for another client"):
        backend.verify_token(_token(**claims), nonce="n-1")


def test_it_refuses_a_token_signed_with_another_key(backend):
    with pytest.raises(SuspiciousOperation, match="verification failed"):
        backend.verify_token(_token(ANOTHER_KEY), nonce="n-1")


def test_it_refuses_a_token_of_another_sign_in(backend):
    with pytest.raises(SuspiciousOperation, match="Nonce"):
        backend.verify_token(_token(), nonce="n-2")


def test_it_refuses_an_expired_token(backend):
    with pytest.raises(jwt.ExpiredSignatureError):
        backend.verify_token(_token(exp=int(time.time()) - 5), nonce="n-1")
