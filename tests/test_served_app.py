"""The application daphne serves (chatproject.asgi: Django's middleware with its
hooks run on the event loop, ORM calls on shared threads) answers exactly as
Django's plain ASGI handler with Django's own middleware does: the same statuses,
security headers, cookies, CSRF refusals, sessions and admin messages."""

import hashlib
import inspect

import django
import pytest
from asgiref.sync import SyncToAsync
from django.core.handlers.asgi import ASGIHandler
from django.test import override_settings
from django.utils.module_loading import import_string

from chat.serving.middleware import ON_THE_LOOP, VERIFIED_ON
from chatproject.asgi import application as served
from tests.asgi_browser import Browser

pytestmark = pytest.mark.django_db(transaction=True)


async def _journey(app, admin_user) -> list:
    """What a person does: log in (refused without the CSRF token), look around,
    change something in the admin (a message on the next page), log out."""
    browser = Browser(app)
    seen = [await browser.request("GET", "/accounts/login")]  # APPEND_SLASH redirect
    seen.append(await browser.request("GET", "/accounts/login/"))
    seen.append(await browser.request("POST", "/accounts/login/", {"username": "boss", "password": "boss-password"}))
    token = await browser.csrf_token()
    form = {"username": "boss", "password": "boss-password", "csrfmiddlewaretoken": token}
    seen.append(await browser.request("POST", "/accounts/login/", form))
    seen.append(await browser.request("GET", "/"))
    seen.append(await browser.request("GET", "/no-such-page/"))
    token = browser.cookies["csrftoken"]
    change = {
        "csrfmiddlewaretoken": token,
        "username": "boss",
        "is_active": "on",
        "is_staff": "on",
        "is_superuser": "on",
        "last_login_0": "",
        "last_login_1": "",
        "date_joined_0": "2026-01-01",
        "date_joined_1": "00:00:00",
        "initial-date_joined_0": "2026-01-01",
        "initial-date_joined_1": "00:00:00",
        "first_name": "Pat",
        "last_name": "",
        "email": "",
    }
    seen.append(await browser.request("POST", f"/admin/auth/user/{admin_user.pk}/change/", change))
    seen.append(await browser.request("GET", "/admin/auth/user/"))
    seen.append(await browser.request("POST", "/accounts/logout/", {"csrfmiddlewaretoken": token}))
    seen.append(await browser.request("GET", "/"))
    return seen


def _django_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__name__}"


# The source of what chat/serving/ depends on, as read when it was verified: each
# class whose hooks run on the event loop (and the mixin whose thread-hopping call
# they replace), the functions the cycle-free request uses, and the ASGI handler
# whose disconnect listener is replaced.
VERIFIED_SOURCES = {
    "django.utils.deprecation.MiddlewareMixin": "719062a110865f71",
    "django.core.handlers.asgi.ASGIHandler": "22f8000ae0f2f5ea",
    "django.contrib.auth.middleware.get_user": "f663ed77b28cc515",
    "django.contrib.auth.middleware.auser": "0c7597c36c9f1003",
    "django.contrib.messages.storage.default_storage": "1196086b76d69328",
    "django_htmx.middleware.HtmxDetails": "c9d6b30d13c483bf",
    "django.middleware.security.SecurityMiddleware": "7c0daafdd127de47",
    "django.contrib.sessions.middleware.SessionMiddleware": "81dfc7bdab259429",
    "django.middleware.common.CommonMiddleware": "0a9411bc1510a38c",
    "django.middleware.csrf.CsrfViewMiddleware": "461e7a1110dea43f",
    "django.contrib.auth.middleware.AuthenticationMiddleware": "016788fb7214c6ed",
    "django.contrib.messages.middleware.MessageMiddleware": "68bbf99a11d6e87e",
    "django.middleware.clickjacking.XFrameOptionsMiddleware": "b005c3dcd16801e1",
    "django_htmx.middleware.HtmxMiddleware": "80db224b5efd53ff",
}


def _plain_django_middleware(settings_middleware: list[str]) -> list[str]:
    """The settings' middleware with Django's own class for each of ours."""
    ours = {_django_path(cls): _django_path(cls.__bases__[-1]) for cls in ON_THE_LOOP}
    return [ours.get(path, path) for path in settings_middleware]


def test_what_the_serving_tweaks_depend_on_is_what_was_verified():
    """Fails on an upgrade of Django or django-htmx that changes what chat/serving/
    relies on: read the new source, check that each hook still only reads and
    writes the request and response (or goes to a thread where it saves), that the
    request's helpers still take it as their only reference, and that a returning
    disconnect listener still ends the request; then update the fingerprints and
    VERIFIED_ON."""
    assert django.VERSION[:2] == VERIFIED_ON, f"chat/serving/ was verified on Django {VERIFIED_ON}"
    seen = {
        name: hashlib.sha256(inspect.getsource(import_string(name)).encode()).hexdigest()[:16]
        for name in VERIFIED_SOURCES
    }
    assert seen == VERIFIED_SOURCES
    assert {_django_path(cls.__bases__[-1]) for cls in ON_THE_LOOP} <= set(VERIFIED_SOURCES)


async def test_every_django_middleware_in_the_settings_runs_on_the_loop(settings):
    assert [p for p in settings.MIDDLEWARE if p.startswith(("django.", "django_htmx."))] == [], (
        "one would hop to a thread"
    )
    for cls in ON_THE_LOOP:
        assert (cls.async_capable, cls.sync_capable) == (True, False)
        assert _django_path(cls) in settings.MIDDLEWARE


async def test_the_served_app_answers_as_plain_django(django_user_model, settings):
    admin_user = await django_user_model.objects.acreate_superuser("boss", "boss@example.com", "boss-password")
    with override_settings(MIDDLEWARE=_plain_django_middleware(settings.MIDDLEWARE)):
        plain = await _journey(ASGIHandler(), admin_user)
    await django_user_model.objects.filter(pk=admin_user.pk).aupdate(first_name="")
    inline = await _journey(served, admin_user)

    assert [(s, h, c) for s, h, c, _ in inline] == [(s, h, c) for s, h, c, _ in plain]
    statuses = [s for s, *_ in inline]
    assert statuses == [301, 200, 403, 302, 200, 404, 302, 200, 302, 302]
    # The session was saved at login and the admin's message reached the next page.
    assert "sessionid" in inline[3][2]
    assert b"was changed successfully" in inline[7][3]
    # Logged out: the home page sends the browser to the login page again.
    assert inline[-1][1]["location"].startswith("/accounts/login/")


def _count_trips(monkeypatch) -> list[str]:
    """The functions sent to a thread from now on, by name, in order."""
    trips = []
    call = SyncToAsync.__call__

    async def counted(self, *args, **kwargs):
        trips.append(getattr(self.func, "__qualname__", None) or type(self.func).__name__)
        return await call(self, *args, **kwargs)

    monkeypatch.setattr(SyncToAsync, "__call__", counted)
    return trips


async def test_a_request_makes_few_trips_to_a_thread(monkeypatch, settings):
    """The point of the inline hooks: a page that needs no database makes three
    trips (the request signals and the sync view), not one per middleware hook."""
    trips = _count_trips(monkeypatch)
    status, *_ = await Browser(served).request("GET", "/accounts/login/")
    assert status == 200
    served_trips, trips[:] = list(trips), []
    with override_settings(MIDDLEWARE=_plain_django_middleware(settings.MIDDLEWARE)):
        await Browser(ASGIHandler()).request("GET", "/accounts/login/")
    assert len(served_trips) <= 4 < 10 <= len(trips), (served_trips, trips)


async def test_a_logged_in_async_view_makes_no_trip_but_its_own_queries(monkeypatch, settings, django_user_model):
    """Stop, a POST to an async view as the page sends it: the request signals,
    the user and the message lookups. The login check and the session read (in
    this process's memory) run on the event loop."""
    from chat.models import Conversation, Message, Status

    user = await django_user_model.objects.acreate_user("pat", password="pat-password")
    conversation = await Conversation.objects.acreate(owner=user, title="A chat")
    answer = await Message.objects.acreate(
        conversation=conversation, role=Message.Role.ASSISTANT, status=Status.COMPLETE
    )
    browser = Browser(served)
    token = await browser.csrf_token()
    await browser.request(
        "POST", "/accounts/login/", {"username": "pat", "password": "pat-password", "csrfmiddlewaretoken": token}
    )
    trips = _count_trips(monkeypatch)
    form = {"csrfmiddlewaretoken": browser.cookies["csrftoken"]}
    status, headers, *_ = await browser.request("POST", f"/c/{conversation.pk}/m/{answer.pk}/stop/", form)
    assert (status, headers.get("location")) == (302, f"/c/{conversation.pk}/")
    expected = ["Signal.asend.<locals>.sync_send", "QuerySet.get", "QuerySet.get", "HttpResponseBase.close"]
    if settings.SESSION_ENGINE != "chat.serving.sessions":  # several processes: sessions in the database
        expected.append("QuerySet.get")
    assert sorted(trips) == sorted(expected), trips


async def test_a_multipart_or_large_body_is_checked_for_csrf_in_a_thread(monkeypatch):
    """Parsing a multipart body may write temporary files, and a large form takes
    long: the CSRF check that reads them does not run on the event loop."""
    browser = Browser(served)
    token = await browser.csrf_token()
    trips = _count_trips(monkeypatch)
    await browser.request("POST", "/accounts/login/", {"csrfmiddlewaretoken": token, "username": "x" * 70_000})
    assert "CsrfViewMiddleware.process_view" in trips
    trips[:] = []
    await browser.request("POST", "/accounts/login/", {"csrfmiddlewaretoken": token, "username": "pat"})
    assert "CsrfViewMiddleware.process_view" not in trips
