"""What each serving tweak (chat/serving/) saves, and what the idiomatic
alternatives cost, per request.

    .venv/bin/python -m bench.serving_tweaks [--requests 2000]

In one process, on a fresh SQLite database: a logged-in browser sends the
request an answer's Stop button sends (a POST to an async view: the session,
the user and the message looked up) through the ASGI application daphne serves,
built with each configuration in turn. Printed per configuration: CPU per
request (process time, every thread of this process) and trips to a thread per
request. The configurations:

- the product: Django's middleware on the event loop (chat/serving/middleware.py),
  sessions read from this process's memory (chat/serving/sessions.py);
- Django's own middleware (every hook a trip to a thread), product sessions;
- the product's middleware with Django's sessions: cached_db, signed cookies,
  the database.
"""

import argparse
import asyncio
import os
import statistics
import tempfile
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatproject.settings")
os.environ.setdefault("DJANGO_DEBUG", "1")
os.environ.setdefault("ALLOWED_HOSTS", "testserver")
_db = tempfile.NamedTemporaryFile(suffix=".sqlite3", delete=False)
os.environ["SQLITE_PATH"] = _db.name

import django  # noqa: E402

django.setup()

from asgiref.sync import SyncToAsync, sync_to_async  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import override_settings  # noqa: E402

from chat.serving.db_threads import SharedDatabaseThreads  # noqa: E402
from chat.serving.handler import ChatASGIHandler  # noqa: E402
from chat.serving.middleware import ON_THE_LOOP  # noqa: E402
from tests.asgi_browser import Browser  # noqa: E402

DJANGO_MIDDLEWARE = {
    f"{c.__module__}.{c.__name__}": f"{c.__bases__[-1].__module__}.{c.__bases__[-1].__name__}" for c in ON_THE_LOOP
}
CONFIGURATIONS = {
    "product": {},
    "Django's middleware": {"MIDDLEWARE": [DJANGO_MIDDLEWARE.get(m, m) for m in settings.MIDDLEWARE]},
    "sessions: Django cached_db": {"SESSION_ENGINE": "django.contrib.sessions.backends.cached_db"},
    "sessions: signed cookies": {"SESSION_ENGINE": "django.contrib.sessions.backends.signed_cookies"},
    "sessions: database": {"SESSION_ENGINE": "django.contrib.sessions.backends.db"},
}


def _seed() -> tuple[int, int]:
    from django.contrib.auth import get_user_model

    call_command("migrate", verbosity=0)
    from chat.models import Conversation, Message, Status

    user = get_user_model().objects.create_user("pat", password="pat-password")
    conversation = Conversation.objects.create(owner=user, title="A chat")
    answer = Message.objects.create(conversation=conversation, role=Message.Role.ASSISTANT, status=Status.COMPLETE)
    return conversation.pk, answer.pk


async def _measure(overrides: dict, path: str, requests: int) -> tuple[float, float]:
    with override_settings(**overrides):
        browser = Browser(SharedDatabaseThreads(ChatASGIHandler()))
        form = {"username": "pat", "password": "pat-password", "csrfmiddlewaretoken": await browser.csrf_token()}
        assert (await browser.request("POST", "/accounts/login/", form))[0] == 302
        stop = {"csrfmiddlewaretoken": browser.cookies["csrftoken"]}
        for _ in range(50):  # warm
            assert (await browser.request("POST", path, stop))[0] == 302
        trips = 0
        call = SyncToAsync.__call__

        async def counted(self, *args, **kwargs):
            nonlocal trips
            trips += 1
            return await call(self, *args, **kwargs)

        SyncToAsync.__call__ = counted
        try:
            cpu = time.process_time()
            for _ in range(requests):
                await browser.request("POST", path, stop)
            cpu = time.process_time() - cpu
        finally:
            SyncToAsync.__call__ = call
    return cpu / requests * 1e6, trips / requests


async def main(requests: int) -> None:
    conversation_id, answer_id = await sync_to_async(_seed)()
    path = f"/c/{conversation_id}/m/{answer_id}/stop/"
    runs: dict[str, list[float]] = {name: [] for name in CONFIGURATIONS}
    trips: dict[str, float] = {}
    # Interleaved rounds, so a busy moment of the machine hits every configuration.
    for _ in range(3):
        for name, overrides in CONFIGURATIONS.items():
            cpu, trips[name] = await _measure(overrides, path, requests)
            runs[name].append(cpu)
    product = statistics.median(runs["product"])
    print(f"{'configuration':32} {'CPU µs/request':>15} {'× product':>10} {'thread trips':>13}")
    for name in CONFIGURATIONS:
        cpu = statistics.median(runs[name])
        print(f"{name:32} {cpu:15.0f} {cpu / product:10.2f} {trips[name]:13.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    try:
        asyncio.run(main(parser.parse_args().requests))
    finally:
        os.unlink(_db.name)
