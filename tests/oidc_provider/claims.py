"""The claims the provider tells about a user, read from the directory file at
each sign-in, so a test changes a user's groups as the provider's administrator
would, between two sign-ins."""

import json
import os
import time

from oauth2_provider.oauth2_validators import OAuth2Validator


def directory() -> dict:
    with open(os.environ["PROVIDER_DIRECTORY"]) as file:
        return json.load(file)


class DirectoryClaims(OAuth2Validator):
    # Standard claims go with their scopes; the groups come with the profile.
    oidc_claim_scope = {**OAuth2Validator.oidc_claim_scope, "groups": "profile"}

    def get_additional_claims(self, request):
        entry = directory()[request.user.username]
        # A slow provider, for the test that only the sign-in waits on it.
        time.sleep(entry.get("delay_seconds", 0))
        return {
            "preferred_username": entry.get("preferred_username", request.user.username),
            "email": entry["email"],
            "groups": entry.get("groups", []),
        }
