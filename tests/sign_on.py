"""A real OpenID Connect provider for the sign-on tests (tests/oidc_provider,
django-oauth-toolkit) in a process of its own, and a browser without a browser
that signs in through it: it follows redirects and fills in the provider's forms
as a person would."""

import html
import json
import re
import socket
import sqlite3
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin

import httpx2
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.live import ROOT, ServerProcess, free_port

CLIENT_ID = "chat-app"
CLIENT_SECRET = "chat-app-secret-" + "s" * 24


def new_signing_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return pem.decode()


class Provider(ServerProcess):
    """The provider, serving its directory (username -> password, email, groups)
    to the one client: the app at `app_url`."""

    def __init__(self, workdir: Path, app_url: str, directory: dict, env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}/o"
        self.directory_path = workdir / "directory.json"
        self.set_directory(directory)
        self.log_path = workdir / f"provider-{self.port}.log"
        self.env = {
            "PATH": "/usr/bin:/bin",
            "PYTHONUNBUFFERED": "1",
            "PROVIDER_DB": str(workdir / "provider.sqlite3"),
            "PROVIDER_RSA_KEY": new_signing_key(),
            "PROVIDER_DIRECTORY": str(self.directory_path),
            "PROVIDER_CLIENT": json.dumps(
                {
                    "client_id": CLIENT_ID,
                    "client_secret": CLIENT_SECRET,
                    "redirect_uri": f"{app_url}/accounts/oidc/callback/",
                    "post_logout_redirect_uri": f"{app_url}/accounts/login/",
                }
            ),
            **(env or {}),
        }

    def subject(self, username: str) -> str:
        """The `sub` the provider gives `username`: its user id."""
        with sqlite3.connect(self.env["PROVIDER_DB"]) as db:
            [(user_id,)] = db.execute("SELECT id FROM auth_user WHERE username = ?", (username,)).fetchall()
        return str(user_id)

    def set_directory(self, directory: dict) -> None:
        """What the provider says of its users from the next sign-in on."""
        self.directory_path.write_text(json.dumps(directory))

    def start(self) -> "Provider":
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.oidc_provider", str(self.port)],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the provider exited:\n{self.log_path.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the provider did not start in 60 s")

    def app_env(self, **more: str) -> dict[str, str]:
        """The app's settings for signing in with this provider."""
        return {
            "OIDC_ISSUER": self.issuer,
            "OIDC_CLIENT_ID": CLIENT_ID,
            "OIDC_CLIENT_SECRET": CLIENT_SECRET,
            "OIDC_PROVIDER_NAME": "Example ID",
            "OIDC_GROUPS_CLAIM": "groups",
            **more,
        }


class Form(HTMLParser):
    """The first form of a page: where it goes and the values it would send."""

    def __init__(self, page: httpx2.Response) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self.buttons: dict[str, str] = {}
        self._in_form = self._done = False
        self.feed(page.text)
        assert self.action is not None, f"no form on {page.url}:\n{page.text}"
        self.url = urljoin(str(page.url), self.action or str(page.url))

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form" and not self._done:
            self._in_form, self.action = True, attrs.get("action") or ""
        elif tag == "input" and self._in_form and attrs.get("name"):
            target = self.buttons if attrs.get("type") == "submit" else self.fields
            target[attrs["name"]] = attrs.get("value") or ""

    def handle_endtag(self, tag):
        if tag == "form" and self._in_form:
            self._in_form, self._done = False, True


class Visitor:
    """One person's browser: cookies per host, redirects followed."""

    def __init__(self, app_url: str) -> None:
        self.app_url = app_url
        self.http = httpx2.Client(follow_redirects=True, timeout=30)

    def get(self, path_or_url: str) -> httpx2.Response:
        return self.http.get(urljoin(self.app_url, path_or_url))

    def submit(self, page: httpx2.Response, values: dict[str, str]) -> httpx2.Response:
        form = Form(page)
        return self.http.post(form.url, data={**form.fields, **values}, headers={"Referer": str(page.url)})

    def start_sign_on(self, login: httpx2.Response | None = None) -> httpx2.Response:
        """Click "Sign in with …" on the login page (`login`, else a fresh one): the
        provider's page that follows."""
        login = login or self.get("/accounts/login/")
        link = re.search(r'href="([^"]+)">Sign in with Example ID<', login.text)
        assert link, login.text
        return self.get(html.unescape(link[1]))

    def sign_on(
        self, username: str, password: str, *, consent: bool = True, login: httpx2.Response | None = None
    ) -> httpx2.Response:
        """Sign in with the provider from the login page, all the way back to the app."""
        page = self.start_sign_on(login)
        if "Example identity provider" in page.text:
            page = self.submit(page, {"username": username, "password": password})
        assert "authorizationForm" in page.text, page.text
        return self.submit(page, {"allow": "Authorize"} if consent else {})

    def logout(self) -> httpx2.Response:
        page = self.get("/")
        return self.http.post(
            urljoin(self.app_url, "/accounts/logout/"),
            data={"csrfmiddlewaretoken": self.http.cookies["csrftoken"]},
            headers={"Referer": str(page.url)},
        )

    def signed_in(self) -> bool:
        """Whether the app shows its chat page rather than the login page."""
        return self.get("/").url.path == "/"
