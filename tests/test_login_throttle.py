"""Failed sign-ins are throttled (django-axes), on the site's login and the
admin's: per username from any address, per address for any usernames. A
locked-out sign-in is refused with a page that says how long to wait, the right
password included; the lock ends after the cool-off; staff see it in the admin.

Personas: `alice` is staff (so she signs in to both logins) and the target of
guesses; `bob` is staff whose sign-in must not suffer from them; the attacker has
no account and tries from 203.0.113.66. Every request names its address
(REMOTE_ADDR), from the documentation ranges.
"""

import re
import secrets
import time
from datetime import timedelta

import httpx2
import pytest
from axes.models import AccessAttempt
from django.test import Client
from django.utils import timezone

from chat.middleware import POLICY
from tests.live import LiveServer
from tests.test_many_workers import database, shared_redis, start_worker  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db

LOGINS = ["/accounts/login/", "/admin/login/"]
LIMIT = 3
ATTACKER = "203.0.113.66"


@pytest.fixture(autouse=True)
def limit(settings):
    settings.AXES_FAILURE_LIMIT = LIMIT
    settings.AXES_COOLOFF_TIME = timedelta(minutes=15)


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user("alice", password="alice-password", is_staff=True)


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user("bob", password="bob-password", is_staff=True)


def sign_in(url: str, username: str, password: str, address: str) -> tuple[Client, object]:
    client = Client(REMOTE_ADDR=address)
    return client, client.post(url, {"username": username, "password": password})


def assert_signed_in(url: str, username: str, password: str, address: str) -> None:
    client, response = sign_in(url, username, password, address)
    assert response.status_code == 302, response.content
    assert "_auth_user_id" in client.session


def assert_locked_out(response, wait: str) -> None:
    assert response.status_code == 429
    assert response["Content-Security-Policy"] == POLICY
    page = " ".join(response.content.decode().split())
    assert (
        f"Too many failed attempts to log in to this account or from this address. Wait {wait}, then try again." in page
    )
    assert "even with the right password" in page


@pytest.mark.parametrize("url", LOGINS)
def test_it_locks_a_username_after_the_limit_whatever_the_address(url, alice, bob):
    for i in range(LIMIT - 1):
        _, response = sign_in(url, "alice", "wrong", f"198.51.100.{i}")
        assert response.status_code == 200  # the form, with its error
    _, response = sign_in(url, "alice", "wrong", "198.51.100.9")
    assert_locked_out(response, "15 minutes")
    assert response["Retry-After"] == "900"

    client, response = sign_in(url, "alice", "alice-password", "198.51.100.10")
    assert_locked_out(response, "15 minutes")
    assert "_auth_user_id" not in client.session
    # Other users sign in as ever, from the same address too.
    assert_signed_in(url, "bob", "bob-password", "198.51.100.10")


@pytest.mark.parametrize("url", LOGINS)
def test_it_locks_an_address_that_tries_many_usernames(url, alice):
    for i in range(LIMIT):
        _, response = sign_in(url, f"admin{i}", "password", ATTACKER)
    assert_locked_out(response, "15 minutes")

    client, response = sign_in(url, "alice", "alice-password", ATTACKER)
    assert_locked_out(response, "15 minutes")
    assert "_auth_user_id" not in client.session
    # From her own address alice is not held back by the attacker's failures.
    assert_signed_in(url, "alice", "alice-password", "198.51.100.1")


def test_a_forwarded_for_header_does_not_change_the_address(alice):
    """Without a proxy in front (daphne without --proxy-headers) REMOTE_ADDR is the
    peer; a client that names other addresses in X-Forwarded-For is still one."""
    for i in range(LIMIT):
        client = Client(REMOTE_ADDR=ATTACKER, HTTP_X_FORWARDED_FOR=f"192.0.2.{i}")
        response = client.post("/accounts/login/", {"username": f"admin{i}", "password": "password"})
    assert_locked_out(response, "15 minutes")
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {ATTACKER}


def test_the_lockout_ends_after_the_cool_off(settings, alice):
    settings.AXES_COOLOFF_TIME = timedelta(seconds=1)
    for _ in range(LIMIT):
        _, response = sign_in("/accounts/login/", "alice", "wrong", ATTACKER)
    assert_locked_out(response, "1 second")
    _, response = sign_in("/accounts/login/", "alice", "alice-password", ATTACKER)
    assert_locked_out(response, "1 second")

    # Every attempt restarted the wait: it ends a cool-off after the last one,
    # a moment on the clock (not a condition to poll: each attempt restarts it).
    last = AccessAttempt.objects.latest("attempt_time").attempt_time
    time.sleep(max(0, (last + settings.AXES_COOLOFF_TIME - timezone.now()).total_seconds()) + 0.01)
    assert_signed_in("/accounts/login/", "alice", "alice-password", ATTACKER)


def test_staff_see_lockouts_in_the_admin(admin_client, alice):
    for i in range(LIMIT):
        sign_in("/accounts/login/", f"admin{i}", "password", ATTACKER)
    for i in range(LIMIT):
        sign_in("/accounts/login/", "alice", "wrong", f"198.51.100.{i}")
    sign_in("/accounts/login/", "carol", "typo", "198.51.100.50")

    everything = locks(admin_client.get("/admin/axes/accessattempt/"))
    assert everything == [
        ("admin0", "address"),
        ("admin1", "address"),
        ("admin2", "address"),
        ("alice", "username"),
        ("alice", "username"),
        ("alice", "username"),
        ("carol", "no"),
    ]
    assert locks(admin_client.get("/admin/axes/accessattempt/?locked=yes")) == everything[:-1]


def locks(response) -> list[tuple[str, str]]:
    """(username, locked out) of each row of the admin's list, sorted."""
    assert response.status_code == 200
    page = response.content.decode()
    return sorted(re.findall(r'<td class="field-username">([^<]*)</td>.*?<td class="field-locks">([^<]*)</td>', page))


def test_only_staff_with_the_permission_see_failed_sign_ins(alice):
    client = Client()
    client.force_login(alice)  # staff, without permissions
    assert client.get("/admin/axes/accessattempt/").status_code == 403


# Real daphne processes


def attempt(server: LiveServer, username: str, password: str, forwarded_for: str | None = None) -> httpx2.Response:
    """A sign-in through the login page, as a browser makes it."""
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    with httpx2.Client(base_url=server.url, timeout=30, headers=headers) as http:
        http.get("/accounts/login/").raise_for_status()
        form = {"username": username, "password": password, "csrfmiddlewaretoken": http.cookies["csrftoken"]}
        return http.post("/accounts/login/", data=form, headers={"Referer": server.url + "/accounts/login/"})


def assert_served_lockout(response: httpx2.Response, wait: str) -> None:
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "900"
    assert response.headers["Content-Security-Policy"] == POLICY
    assert f"Wait {wait}, then try again." in " ".join(response.text.split())


@pytest.mark.slow
def test_two_workers_share_the_lock(start_worker, shared_redis):  # noqa: F811 (fixtures)
    env = {"LOGIN_FAILURE_LIMIT": str(LIMIT)}
    first, second = start_worker(shared_redis, env), start_worker(shared_redis, env)
    username, password = first.new_user()
    assert [attempt(worker, username, "wrong").status_code for worker in (first, second)] == [200, 200]
    assert_served_lockout(attempt(first, username, "wrong"), "15 minutes")
    assert_served_lockout(attempt(second, username, password), "15 minutes")


@pytest.mark.slow
def test_the_address_is_the_proxys_client_with_proxy_headers_and_the_peer_without(live_server_factory):
    env = {"LOGIN_FAILURE_LIMIT": str(LIMIT)}
    proxied = live_server_factory(env, daphne_args=("--proxy-headers",))
    direct = live_server_factory(env)
    # With DATABASE_URL the live servers of a test session share one database:
    # names of this test's own, and its attempts removed at the end.
    tag = secrets.token_hex(3)
    username, password = proxied.new_user()
    try:
        # Behind the proxy: each client its own address, as the proxy names it.
        for i in range(LIMIT):
            response = attempt(proxied, f"admin{i}-{tag}", "password", forwarded_for=ATTACKER)
        assert_served_lockout(response, "15 minutes")
        assert attempt(proxied, username, password, forwarded_for="198.51.100.1").status_code == 302
        assert_served_lockout(attempt(proxied, username, password, forwarded_for=ATTACKER), "15 minutes")

        # Not behind a proxy: what a client claims in the header is no address.
        for i in range(LIMIT):
            response = attempt(direct, f"root{i}-{tag}", "password", forwarded_for=f"192.0.2.{i}")
        assert_served_lockout(response, "15 minutes")
        rows = direct.sql("SELECT username, ip_address FROM axes_accessattempt WHERE username LIKE ?", f"%-{tag}")
        assert {(name, str(address)) for name, address in rows} == {
            *((f"admin{i}-{tag}", ATTACKER) for i in range(LIMIT)),
            *((f"root{i}-{tag}", "127.0.0.1") for i in range(LIMIT)),
        }
    finally:
        direct.manage(
            "shell",
            "-c",
            "from axes.models import AccessAttempt as A\n"
            f"A.objects.filter(username__endswith={tag!r}).delete()\n"
            f"A.objects.filter(username={username!r}).delete()",
        )
