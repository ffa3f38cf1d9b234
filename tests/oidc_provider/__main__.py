"""Start the test provider: `python -m tests.oidc_provider PORT`.

Migrates its SQLite file, creates the directory's users and the one client
application (the app under test), then serves on 127.0.0.1:PORT until stopped.

Environment: PROVIDER_DB (SQLite file), PROVIDER_RSA_KEY (PEM private key that
signs the ID tokens), PROVIDER_DIRECTORY (JSON file: username -> password,
email, groups), PROVIDER_CLIENT (JSON: client_id, client_secret, redirect_uri,
post_logout_redirect_uri).
"""

import json
import os
import sys

import django

os.environ["DJANGO_SETTINGS_MODULE"] = "tests.oidc_provider.settings"
django.setup()

from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from oauth2_provider.models import Application  # noqa: E402

from tests.oidc_provider.claims import directory  # noqa: E402


def prepare() -> None:
    call_command("migrate", verbosity=0)
    for username, entry in directory().items():
        if not User.objects.filter(username=username).exists():
            User.objects.create_user(username, password=entry["password"])
    client = json.loads(os.environ["PROVIDER_CLIENT"])
    Application.objects.update_or_create(
        client_id=client["client_id"],
        defaults={
            "name": "Chat",
            "client_secret": client["client_secret"],
            "client_type": Application.CLIENT_CONFIDENTIAL,
            "authorization_grant_type": Application.GRANT_AUTHORIZATION_CODE,
            "redirect_uris": client["redirect_uri"],
            "post_logout_redirect_uris": client["post_logout_redirect_uri"],
            "algorithm": Application.RS256_ALGORITHM,
            # The user is asked to consent at each sign-in, so a test can refuse.
            "skip_authorization": False,
        },
    )


if __name__ == "__main__":
    prepare()
    call_command("runserver", f"127.0.0.1:{sys.argv[1]}", use_reloader=False, use_threading=True)
