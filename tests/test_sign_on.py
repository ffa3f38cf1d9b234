"""Single sign-on against a real OpenID Connect provider (django-oauth-toolkit in
a process of its own, tests/oidc_provider) and the app served by daphne: the
provider's login and consent forms are filled in as a person would.

Personas: each test signs in a person of its own who has an account only at the
provider (carol, dave, …), so that the tests hold on PostgreSQL too, where the
app's servers of a whole test session share one database; `alice` has a local
account with a password (tests/conftest.py's LIVE_USERS).
"""

import re
import subprocess
import sys
import threading
import time

import httpx2
import pytest

from tests.live import ROOT, Browserless, LiveServer, free_port
from tests.sign_on import Provider, Visitor

pytestmark = pytest.mark.slow

PEOPLE = ("carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "kim")


def person(name: str, **changes) -> dict:
    """What the provider's directory says of `name`."""
    return {
        "password": f"{name}-at-provider",
        "email": f"{name}@example.com",
        "groups": ["chat-staff", "sales"],
    } | changes


DIRECTORY = {name: person(name) for name in PEOPLE}
PREFIXED = {"OIDC_GROUPS_PREFIX": "chat-"}


@pytest.fixture(scope="module")
def app_port() -> int:
    """The app's port, fixed for the module: the provider knows its callback URL."""
    return free_port()


@pytest.fixture(scope="module")
def provider(tmp_path_factory, app_port):
    provider = Provider(tmp_path_factory.mktemp("provider"), f"http://127.0.0.1:{app_port}", DIRECTORY).start()
    yield provider
    provider.stop()


@pytest.fixture
def start_app(live_server_factory, provider, app_port):
    """The app signing in with `provider`; `env` adds or overrides settings."""
    provider.set_directory(DIRECTORY)

    def start(**env: str) -> LiveServer:
        return live_server_factory(provider.app_env(**env), port=app_port)

    return start


def sign_on(app: LiveServer, name: str, **options) -> httpx2.Response:
    """`name` signs in with the provider in a browser of their own: the page they land on."""
    return Visitor(app.url).sign_on(name, f"{name}-at-provider", **options)


def user_of(app: LiveServer, provider: Provider, name: str) -> tuple[str, str, set[str]] | None:
    """The app's user of the provider's `name`: username, email, groups; None if none."""
    rows = app.sql(
        "SELECT u.username, u.email, g.name FROM chat_signonidentity i JOIN auth_user u ON u.id = i.user_id "
        "LEFT JOIN auth_user_groups ug ON ug.user_id = u.id LEFT JOIN auth_group g ON g.id = ug.group_id "
        "WHERE i.issuer = ? AND i.subject = ?",
        provider.issuer,
        provider.subject(name),
    )
    if not rows:
        return None
    return rows[0][0], rows[0][1], {group for _, _, group in rows if group}


def test_first_sign_in_creates_the_user_with_the_providers_groups(start_app, provider):
    app = start_app()
    landed = sign_on(app, "carol")
    assert landed.url.path == "/", landed.text
    username, email, groups = user_of(app, provider, "carol")
    # "carol", or "carol-2" where an earlier test session's carol has the name.
    assert re.fullmatch(r"carol(-\d+)?", username)
    assert username in landed.text
    assert (email, groups) == ("carol@example.com", {"chat-staff", "sales"})
    # A user of the provider's only: no password signs in as them.
    [(password,)] = app.sql("SELECT password FROM auth_user WHERE username = ?", username)
    assert password.startswith("!")


def test_a_second_sign_in_is_the_same_user_with_the_groups_of_now(start_app, provider):
    app = start_app(**PREFIXED)
    assert sign_on(app, "dave").url.path == "/"
    username, email, groups = user_of(app, provider, "dave")
    assert (email, groups) == ("dave@example.com", {"chat-staff"})
    # Given by staff here, not the provider's to take away.
    app.manage(
        "shell",
        "-c",
        "from django.contrib.auth.models import Group, User\n"
        f"User.objects.get(username={username!r}).groups.add(Group.objects.get_or_create(name='reviewers')[0])",
    )

    provider.set_directory(
        {**DIRECTORY, "dave": person("dave", email="dave@new.example.com", groups=["chat-admins", "support"])}
    )
    assert sign_on(app, "dave").url.path == "/"
    assert user_of(app, provider, "dave") == (username, "dave@new.example.com", {"chat-admins", "reviewers"})


def test_a_user_staff_make_inactive_is_signed_out_and_cannot_sign_in(start_app, provider):
    app = start_app()
    visitor = Visitor(app.url)
    visitor.sign_on("kim", "kim-at-provider")
    assert visitor.signed_in()
    username, _, _ = user_of(app, provider, "kim")
    app.manage(
        "shell",
        "-c",
        f"from django.contrib.auth.models import User as U\nU.objects.filter(username={username!r}).update(is_active=False)",
    )
    assert not visitor.signed_in()
    assert "did not complete" in visitor.sign_on("kim", "kim-at-provider").text
    assert not visitor.signed_in()


def test_a_username_taken_by_a_local_account_gets_a_number(start_app, provider):
    app = start_app()
    provider.set_directory({**DIRECTORY, "erin": person("erin", preferred_username="alice")})
    assert sign_on(app, "erin").url.path == "/"
    # Not alice's account: one of its own.
    username, _, _ = user_of(app, provider, "erin")
    assert re.fullmatch(r"alice-\d+", username)


def test_logging_out_ends_the_session_here_and_at_the_provider(start_app):
    app = start_app()
    visitor = Visitor(app.url)
    visitor.sign_on("frank", "frank-at-provider")
    assert visitor.signed_in()
    landed = visitor.logout()
    steps = [str(r.url) for r in landed.history]
    assert any(step.startswith(f"{app.url}/accounts/logout/") for step in steps), steps
    assert any("/o/logout/?id_token_hint=" in step for step in steps), steps
    assert landed.url.path == "/accounts/login/"
    assert not visitor.signed_in()
    # The provider forgot frank too: signing in again asks for his password.
    assert "Example identity provider" in visitor.start_sign_on().text


def test_refused_consent_shows_an_error_and_signs_nobody_in(start_app, provider):
    app = start_app()
    visitor = Visitor(app.url)
    landed = visitor.sign_on("grace", "grace-at-provider", consent=False)
    assert landed.url.path == "/accounts/login/"
    assert "Example ID did not sign you in." in landed.text
    assert not visitor.signed_in()
    assert user_of(app, provider, "grace") is None


def _failures(app: LiveServer) -> int:
    """Failed single sign-ons from 127.0.0.1 (no username) that count toward its lockout."""
    rows = app.sql(
        "SELECT failures_since_start FROM axes_accessattempt WHERE ip_address = '127.0.0.1' AND username IS NULL"
    )
    return sum(failures for (failures,) in rows)


def _forget_failures(app: LiveServer) -> None:
    """On PostgreSQL every server of the test session counts the same failures: a
    few more from 127.0.0.1 would lock every test's sign-ins out."""
    app.manage(
        "shell",
        "-c",
        "from axes.models import AccessAttempt as A\nA.objects.filter(ip_address='127.0.0.1', username=None).delete()",
    )


def test_a_code_used_twice_is_refused(start_app):
    app = start_app()
    landed = sign_on(app, "heidi")
    [callback] = [r.url for r in landed.history if r.url.path == "/accounts/oidc/callback/"]
    assert "code=" in str(callback)
    failures = _failures(app)
    try:
        _assert_a_used_code_is_refused(app, callback)
        # The refused code counts toward the address's lockout, as a wrong password does.
        assert _failures(app) == failures + 1
    finally:
        _forget_failures(app)


def _assert_a_used_code_is_refused(app: LiveServer, callback: httpx2.URL) -> None:
    """The callback URL of a finished sign-in, tried again."""
    # Another browser that never started a sign-in.
    stranger = Visitor(app.url)
    replayed = stranger.get(str(callback))
    assert "did not complete" in replayed.text
    assert not stranger.signed_in()

    # A browser with a sign-in of its own under way: the callback with another
    # browser's state is refused (a sign-in forced on someone else) ...
    attacker = Visitor(app.url)
    attacker.get("/accounts/login/")
    started = attacker.http.get(f"{app.url}/accounts/oidc/authenticate/", follow_redirects=False)
    assert "did not complete" in attacker.get(str(callback)).text
    assert not attacker.signed_in()
    # ... and with its own state, the used code is refused by the provider.
    state = httpx2.URL(started.headers["Location"]).params["state"]
    refused = attacker.get(f"/accounts/oidc/callback/?code={callback.params['code']}&state={state}")
    assert "did not complete" in refused.text
    assert not attacker.signed_in()
    assert "sign-in with Example ID refused: Get Token Error" in app.log_path.read_text()


def test_an_expired_id_token_is_refused(live_server_factory, tmp_path_factory):
    port = free_port()
    expired = Provider(
        tmp_path_factory.mktemp("expired-provider"),
        f"http://127.0.0.1:{port}",
        DIRECTORY,
        env={"PROVIDER_ID_TOKEN_SECONDS": "-60"},
    ).start()
    try:
        app = live_server_factory(expired.app_env(), port=port)
        try:
            visitor = Visitor(app.url)
            landed = visitor.sign_on("carol", "carol-at-provider")
            assert "did not complete" in landed.text
            assert not visitor.signed_in()
            assert "Signature has expired" in app.log_path.read_text()
        finally:
            _forget_failures(app)
    finally:
        expired.stop()


def test_a_slow_provider_holds_up_the_sign_in_only(start_app, provider):
    """The callback waits on the provider; the other requests of the process,
    on SQLite all on one database thread, must not wait with it."""
    app = start_app()
    alice = Browserless(app.url, "alice", "alice-password")
    provider.set_directory({**DIRECTORY, "ivan": person("ivan", delay_seconds=1.5)})
    visitor = Visitor(app.url)
    consent = visitor.start_sign_on()
    consent = visitor.submit(consent, {"username": "ivan", "password": "ivan-at-provider"})
    signed_in = []
    sign_in = threading.Thread(target=lambda: signed_in.append(visitor.submit(consent, {"allow": "Authorize"})))
    started = time.monotonic()
    sign_in.start()
    waits = []
    while sign_in.is_alive():
        asked = time.monotonic()
        assert alice.http.get("/").status_code == 200
        waits.append(time.monotonic() - asked)
    # The token's claims and the user info: 1.5 s each at the provider.
    assert time.monotonic() - started > 3
    assert signed_in[0].url.path == "/"
    assert len(waits) > 5 and max(waits) < 1, waits


def test_local_accounts_still_sign_in_beside_single_sign_on(start_app):
    app = start_app()
    page = Visitor(app.url).get("/accounts/login/")
    assert "Sign in with Example ID" in page.text and 'name="password"' in page.text
    alice = Browserless(app.url, "alice", "alice-password")
    assert alice.http.get("/").status_code == 200


def test_with_local_accounts_off_only_single_sign_on_signs_in(start_app, provider):
    app = start_app(CHAT_LOCAL_LOGIN="0")
    visitor = Visitor(app.url)
    page = visitor.get("/accounts/login/")
    assert "Sign in with Example ID" in page.text and 'name="password"' not in page.text
    refused = visitor.http.post(
        f"{app.url}/accounts/login/",
        data={
            "username": "alice",
            "password": "alice-password",
            "csrfmiddlewaretoken": visitor.http.cookies["csrftoken"],
        },
        headers={"Referer": f"{app.url}/accounts/login/"},
    )
    assert refused.status_code == 403
    assert "Signing in with a password is switched off" in refused.text
    assert not visitor.signed_in()
    # No backend takes a password (each asked directly, so that no failure is recorded).
    check = (
        "from django.contrib.auth import get_backends\nfrom django.test import RequestFactory\n"
        "request = RequestFactory().post('/')\n"
        "print([b.authenticate(request, username='alice', password='alice-password') for b in get_backends()])"
    )
    assert app.manage("shell", "-c", check).strip().endswith("\n[None, None]")
    assert visitor.sign_on("judy", "judy-at-provider").url.path == "/"

    # Staff sign in to the admin with the provider too: its login is the site's,
    # whose single sign-on comes back to the admin.
    username, _, _ = user_of(app, provider, "judy")
    app.manage(
        "shell",
        "-c",
        f"from django.contrib.auth.models import User as U\nU.objects.filter(username={username!r}).update(is_staff=True)",
    )
    staff = Visitor(app.url)
    login = staff.get("/admin/")
    assert login.url.path == "/accounts/login/" and login.url.params["next"] == "/admin/"
    admin = staff.sign_on("judy", "judy-at-provider", login=login)
    assert admin.url.path == "/admin/" and "Site administration" in admin.text


def test_start_up_stops_on_an_issuer_that_is_not_one(provider, tmp_path):
    env = {**LiveServer(tmp_path).env, **provider.app_env(OIDC_ISSUER=provider.issuer + "/elsewhere")}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "OIDC_ISSUER=" in result.stderr and "discovery document" in result.stderr
