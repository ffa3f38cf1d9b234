"""Local accounts (usernames and passwords kept here) beside single sign-on, and
switched off (CHAT_LOCAL_LOGIN=0): then no password signs in, on the site's login
page or the admin's. With single sign-on on, the same is tested against a real
provider in tests/test_sign_on.py."""

import pytest

from tests.test_settings_env import refused

pytestmark = pytest.mark.django_db

PASSWORD_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]


@pytest.fixture
def local_login_off(settings):
    # What settings.py makes of CHAT_LOCAL_LOGIN=0: no backend checks a password.
    settings.CHAT_LOCAL_LOGIN = False
    settings.AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend"]


def _log_in(client, password: str = "alice-password"):
    return client.post("/accounts/login/", {"username": "alice", "password": password})


def test_it_logs_in_with_a_password(client, alice):
    page = client.get("/accounts/login/")
    assert b'name="password"' in page.content
    assert b"Sign in with" not in page.content
    response = _log_in(client)
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200


def test_the_admin_has_its_own_login_form(client, admin_user):
    response = client.get("/admin/login/?next=/admin/")
    assert response.status_code == 200 and b'name="password"' in response.content
    response = client.post("/admin/login/?next=/admin/", {"username": "admin", "password": "password"})
    assert response.status_code == 302 and response["Location"] == "/admin/"


def test_with_local_login_off_the_password_form_is_gone_and_refused(client, alice, local_login_off):
    page = client.get("/accounts/login/")
    assert page.status_code == 200 and b'name="password"' not in page.content
    response = _log_in(client)
    assert response.status_code == 403
    assert b"Signing in with a password is switched off" in response.content
    assert client.get("/").status_code == 302


def test_with_local_login_off_no_backend_takes_a_password(alice, local_login_off, rf):
    """Not even through another form that asks Django to check one."""
    from django.contrib.auth import authenticate

    request = rf.post("/elsewhere/")
    assert authenticate(request, username="alice", password="alice-password") is None


def test_with_local_login_off_the_admin_login_is_the_sites(client, admin_user, local_login_off):
    response = client.get("/admin/")
    assert response.status_code == 302 and response["Location"] == "/admin/login/?next=/admin/"
    response = client.get(response["Location"])
    assert response.status_code == 302 and response["Location"] == "/accounts/login/?next=%2Fadmin%2F"
    response = client.post("/admin/login/?next=/admin/", {"username": "admin", "password": "password"})
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert client.get("/admin/").status_code == 302


def test_switching_local_login_off_ends_the_sessions_a_password_began(client, alice, settings):
    assert _log_in(client).status_code == 302
    settings.CHAT_LOCAL_LOGIN = False
    settings.AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend"]
    assert client.get("/").status_code == 302


def test_local_login_off_needs_single_sign_on():
    assert "CHAT_LOCAL_LOGIN=0 needs OIDC_ISSUER" in refused({"CHAT_LOCAL_LOGIN": "0"})


def test_single_sign_on_needs_its_client():
    line = refused({"OIDC_ISSUER": "https://id.example.com", "OIDC_CLIENT_ID": "chat"})
    assert "OIDC_CLIENT_ID and OIDC_CLIENT_SECRET must be set" in line
