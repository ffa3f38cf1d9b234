"""Production settings: safe by default, explicit to loosen.

Settings are read once per process, so each case starts a fresh Python with a
clean environment (no PYTEST_VERSION, which relaxes SECRET_KEY for the tests).
"""

import json
import os
import re
import secrets
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from chat.middleware import POLICY
from chat.models import Message
from tests.conftest import finished, send
from tests.openai_stub import Stream

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION = {
    "DJANGO_DEBUG": "0",
    "HTTPS": "1",
    "SECRET_KEY": secrets.token_urlsafe(50),
    "ALLOWED_HOSTS": "chat.example.com",
}
# Reading a setting runs the settings module, which is what these cases test;
# loading every app as well would double the time of each case, and starting
# the whole app under production settings is what `check --deploy` below does.
READ_SETTINGS = """
import json
from django.conf import settings
names = [
    "DEBUG", "ALLOWED_HOSTS", "SECURE_SSL_REDIRECT", "SECURE_PROXY_SSL_HEADER", "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE", "SESSION_COOKIE_HTTPONLY", "SECURE_HSTS_SECONDS", "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD", "SECURE_CONTENT_TYPE_NOSNIFF", "X_FRAME_OPTIONS",
]
print(json.dumps({n: getattr(settings, n) for n in names}))
"""


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {"PATH": os.environ.get("PATH", ""), "DJANGO_SETTINGS_MODULE": "chatproject.settings", **env}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=120)


def read_settings(env: dict[str, str]) -> dict:
    result = run(["-c", READ_SETTINGS], env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.slow
def test_check_deploy_is_clean_with_production_settings():
    result = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.slow
def test_debug_is_off_unless_asked_for():
    assert read_settings({"SECRET_KEY": PRODUCTION["SECRET_KEY"]})["DEBUG"] is False
    assert read_settings({"DJANGO_DEBUG": "1"})["DEBUG"] is True


def test_the_development_server_script_turns_debug_on():
    serve = (ROOT / "scripts" / "serve.sh").read_text()
    assert re.search(r'^export DJANGO_DEBUG="\$\{DJANGO_DEBUG:-1\}"$', serve, re.MULTILINE)


@pytest.mark.slow
def test_production_requires_a_secret_key():
    result = run(["-c", "import django; django.setup()"], {"DJANGO_DEBUG": "0"})
    assert result.returncode != 0
    assert "django.core.exceptions.ImproperlyConfigured: SECRET_KEY is not set." in result.stderr
    # The message says how to fix it.
    assert "secrets.token_urlsafe(50)" in result.stderr
    assert run(["-c", "import django; django.setup()"], {}).returncode != 0


@pytest.mark.slow
@pytest.mark.parametrize("key", ["changeme", "x" * 60, "insecure-development-key-never-use-in-production"])
def test_production_refuses_a_weak_secret_key(key):
    result = run(["-c", "import django; django.setup()"], {**PRODUCTION, "SECRET_KEY": key})
    assert result.returncode != 0
    assert f"SECRET_KEY is too weak ({len(key)} characters, {len(set(key))} different ones)." in result.stderr
    assert "secrets.token_urlsafe(50)" in result.stderr


@pytest.mark.slow
def test_development_runs_without_a_secret_key():
    result = run(["-c", "import django; django.setup()"], {"DJANGO_DEBUG": "1"})
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_a_bad_boolean_is_refused_with_its_name():
    result = run(["-c", "import django; django.setup()"], {**PRODUCTION, "HTTPS": "maybe"})
    assert result.returncode != 0
    assert "HTTPS='maybe' is not a boolean" in result.stderr


@pytest.mark.slow
def test_https_turns_on_secure_cookies_hsts_and_the_redirect():
    values = read_settings(PRODUCTION)
    assert values["DEBUG"] is False
    assert values["ALLOWED_HOSTS"] == ["chat.example.com"]
    assert values["SECURE_SSL_REDIRECT"] is True
    assert values["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert values["SESSION_COOKIE_SECURE"] is True
    assert values["CSRF_COOKIE_SECURE"] is True
    assert values["SECURE_HSTS_SECONDS"] >= 31536000
    # They bind other sites of the domain: the operator opts in (below).
    assert values["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is False
    assert values["SECURE_HSTS_PRELOAD"] is False
    # Always on, HTTPS or not.
    assert values["SESSION_COOKIE_HTTPONLY"] is True
    assert values["SECURE_CONTENT_TYPE_NOSNIFF"] is True
    assert values["X_FRAME_OPTIONS"] == "DENY"


@pytest.mark.slow
def test_hsts_subdomains_and_preload_are_opt_in():
    opted_in = {**PRODUCTION, "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1", "SECURE_HSTS_PRELOAD": "1"}
    values = read_settings(opted_in)
    assert values["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is True
    assert values["SECURE_HSTS_PRELOAD"] is True
    result = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], opted_in)
    assert result.returncode == 0, result.stdout + result.stderr
    values = read_settings({**PRODUCTION, "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1"})
    assert (values["SECURE_HSTS_INCLUDE_SUBDOMAINS"], values["SECURE_HSTS_PRELOAD"]) == (True, False)


@pytest.mark.slow
def test_hsts_preload_without_subdomains_is_refused():
    result = run(["-c", "import django; django.setup()"], {**PRODUCTION, "SECURE_HSTS_PRELOAD": "1"})
    assert result.returncode != 0
    assert "SECURE_HSTS_PRELOAD=1 needs SECURE_HSTS_INCLUDE_SUBDOMAINS=1" in result.stderr


@pytest.mark.slow
def test_without_https_cookies_still_work_over_http():
    values = read_settings({**PRODUCTION, "HTTPS": "0"})
    assert values["SESSION_COOKIE_SECURE"] is False
    assert values["SECURE_SSL_REDIRECT"] is False
    assert values["SECURE_HSTS_SECONDS"] == 0


# Content-Security-Policy


def test_the_policy_forbids_inline_code_and_eval():
    directives = dict(d.strip().split(" ", 1) for d in POLICY.split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["object-src"] == "'none'"
    assert directives["base-uri"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in POLICY
    # Only django-axes' is nearer the view, so its lockout page gets the policy too.
    assert django_settings.MIDDLEWARE[-2:] == [
        "chat.middleware.ContentSecurityPolicyMiddleware",
        "axes.middleware.AxesMiddleware",
    ]


class InlineCode(HTMLParser):
    """What a strict CSP would block: inline scripts, inline styles, event handlers."""

    def __init__(self) -> None:
        super().__init__()
        self.blocked: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script":
            self.scripts.append(attrs.get("src") or "")
            if not attrs.get("src") and attrs.get("type") not in ("application/json",):
                self.blocked.append("inline <script>")
        if tag == "style":
            self.blocked.append("<style>")
        for name, value in attrs.items():
            if name.startswith("on") or name == "style":
                self.blocked.append(f"{name} on <{tag}>")
            if name.startswith(("hx-on", "data-hx-on")) or (value or "").startswith(("js:", "javascript:")):
                self.blocked.append(f"{name}={value!r} on <{tag}> needs eval")


def inline_code(body: bytes) -> InlineCode:
    parser = InlineCode()
    parser.feed(body.decode())
    parser.close()
    return parser


@pytest.mark.django_db
def test_pages_carry_the_policy_and_work_under_it(alice_client, conversation):
    Message.objects.create(conversation=conversation, role="user", content="Hi")
    Message.objects.create(conversation=conversation, role="assistant", content="**Hello**", model="demo")
    for url in ("/", f"/c/{conversation.pk}/", "/accounts/login/"):
        response = alice_client.get(url)
        assert response.status_code == 200, url
        assert response["Content-Security-Policy"] == POLICY
        assert {"private", "no-store"} <= set(response["Cache-Control"].replace(" ", "").split(","))
        found = inline_code(response.content)
        assert found.blocked == [], url
        assert found.scripts and all(src.startswith("/static/") for src in found.scripts)
    # htmx itself: no eval, no injected indicator styles, refusals swapped in.
    page = alice_client.get("/").content
    config = json.loads(re.search(rb'<meta name="htmx-config" content=\'([^\']+)\'>', page).group(1))
    assert config["allowEval"] is False
    assert config["includeIndicatorStyles"] is False


@pytest.mark.django_db
def test_admin_pages_work_under_the_policy(admin_client, conversation):
    for url in ("/admin/", "/admin/chat/conversation/", f"/admin/chat/conversation/{conversation.pk}/change/"):
        response = admin_client.get(url)
        assert response.status_code == 200, url
        assert response["Content-Security-Policy"] == POLICY
        assert {"private", "no-store"} <= set(response["Cache-Control"].replace(" ", "").split(","))
        assert inline_code(response.content).blocked == [], url


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("fast")
async def test_the_stream_carries_the_policy(stub, alice_async, conversation):
    stub.script(Stream(["Hi"]))
    message = await send(alice_async, conversation, "Hello")
    await finished(message.pk)
    response = await alice_async.get(f"/c/{conversation.pk}/m/{message.pk}/stream/")
    assert response["Content-Type"] == "text/event-stream"
    assert response["Content-Security-Policy"] == POLICY
    assert response["Cache-Control"] == "no-cache, private, no-store"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "Content-Encoding" not in response
    b"".join([chunk async for chunk in response.streaming_content])


@pytest.mark.slow
def test_check_deploy_warns_without_the_security_middleware():
    """Django's own checks for these are silenced (they want its exact paths):
    ours must still catch the middleware missing."""
    script = (
        "import django; from django.conf import settings; django.setup(); "
        "settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if not m.endswith("
        "('.SecurityMiddleware', '.XFrameOptionsMiddleware', '.CsrfViewMiddleware'))]; "
        "from django.core.management import call_command; "
        "call_command('check', deploy=True, fail_level='WARNING')"
    )
    result = run(["-c", script], PRODUCTION)
    assert result.returncode == 1
    assert result.stderr.count("chat.W001") == 3, result.stderr
