"""The authentication backend of single sign-on: mozilla-django-oidc's code flow
(the code exchanged for tokens, the ID token's signature checked against the
provider's keys, the nonce), with the checks it leaves to the app and a refusal,
not an error page, when any of them fails."""

import logging

import jwt
import requests
from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import SuspiciousOperation
from django.db import IntegrityError
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from chat.sso import accounts

logger = logging.getLogger(__name__)


class SignOnBackend(OIDCAuthenticationBackend):
    def authenticate(self, request, **kwargs):
        """The signed-in user, or None when the provider's answer does not hold:
        a code refused or used twice, a token expired, signed with another key,
        issued by another issuer or for another client. (Or when two first
        sign-ins at once want one username: the one refused signs in again.)"""
        try:
            return super().authenticate(request, **kwargs)
        except (requests.RequestException, jwt.InvalidTokenError, SuspiciousOperation, IntegrityError) as exc:
            # Neither the tokens nor the client secret are in these messages.
            logger.warning("sign-in with %s refused: %s", settings.OIDC_PROVIDER_NAME, exc)
            return None

    def verify_token(self, token, **kwargs):
        """The token's claims, once its issuer and audience are this site's
        provider and this client too (OpenID Connect Core 3.1.3.7; the library
        checks only the signature, the expiry and the nonce)."""
        claims = super().verify_token(token, **kwargs)
        audience = claims.get("aud")
        audiences = [audience] if isinstance(audience, str) else audience or []
        if claims.get("iss") != settings.OIDC_ISSUER or self.OIDC_RP_CLIENT_ID not in audiences:
            raise SuspiciousOperation("the ID token was issued by another issuer or for another client")
        return claims

    def get_userinfo(self, access_token, id_token, payload):
        """The ID token's claims with the user info's over them; both must be of the
        same subject (OpenID Connect Core 5.3.2). Some providers put the groups
        only in one of them."""
        info = super().get_userinfo(access_token, id_token, payload)
        if info.get("sub") != payload.get("sub"):
            raise SuspiciousOperation("the user info is of another subject than the ID token")
        return {**payload, **info}

    def verify_claims(self, claims) -> bool:
        return bool(claims.get("sub"))

    def filter_users_by_claims(self, claims):
        user = accounts.find_user(claims["sub"])
        return [user] if user else []

    def create_user(self, claims):
        return accounts.update_user(accounts.create_user(claims), claims)

    def update_user(self, user, claims):
        return accounts.update_user(user, claims)

    def get_user(self, user_id):
        """The session's user, as Django's backend finds it: a user staff made
        inactive is signed out at their next request (the library's would keep
        them signed in)."""
        return ModelBackend.get_user(self, user_id)
