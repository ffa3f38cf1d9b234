"""A fixed set of long-lived threads for the ORM, shared by requests and generations.

Left alone, Django runs every ASGI request in a thread-sensitive context of its
own: each request starts a thread, opens a database connection in it and closes
both at the end (on SQLite ~1.5 ms of CPU per request, a third of a small POST),
and every open stream holds a connection for as long as it is open, so a
PostgreSQL server runs out of connections at a few hundred viewers.

Here each request and each generation borrows one of CHAT_DB_THREADS
single-thread executors, round robin. A thread keeps its connection between
requests (CONN_MAX_AGE; Django still checks it at each request's start and
end), so a process holds at most that many connections. The ORM calls of one
request still run in one thread, in order, as Django expects.

Staff pages (the admin) run on a thread of their own instead. One of them can
hold its thread for seconds (a CSV export of every conversation, a long
transcript), and on a shared thread every answer's text and every request of
the process would wait behind it: on SQLite, with its one thread, an export of
20,000 messages held up the recorder's writes for 11 s (bench/staff_export.py).
On their own thread staff wait only for each other, the process holds one
connection more, and SQLite in WAL mode lets the answers' writes go on beside
the export's reads.

Single sign-on's callback has a thread of its own for the same reason: it waits
on the provider (the code exchanged for tokens, the provider's keys, the user
info: three requests of up to OIDC_TIMEOUT each) in the middle of its ORM calls.
Sign-ins wait for each other there, never the answers.

A user's export and import of their own conversations (/data/export/,
/data/import/: every branch, or up to CHAT_MAX_IMPORT_BYTES stored in one
transaction) share a thread of their own too, for the same reason as staff's
exports.
"""

import functools
import itertools
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext
from django.conf import settings
from django.urls import reverse

_executors = [ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"db-{i}") for i in range(settings.CHAT_DB_THREADS)]
_turn = itertools.cycle(_executors)
_staff_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="db-staff")
_sign_on_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="db-sign-on")
_data_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="db-data")


def shared_context() -> ThreadSensitiveContext:
    """A context whose thread-sensitive calls run on the next shared thread."""
    return ThreadSensitiveContext(executor=next(_turn))


def staff_context() -> ThreadSensitiveContext:
    """A context whose thread-sensitive calls run on the staff pages' thread."""
    return ThreadSensitiveContext(executor=_staff_executor)


def sign_on_context() -> ThreadSensitiveContext:
    """A context whose thread-sensitive calls run on single sign-on's thread."""
    return ThreadSensitiveContext(executor=_sign_on_executor)


@functools.cache
def _staff_path() -> str:
    # Read from the URLconf at the first request (importing it here would import
    # the views, which import this module). Django sets no script prefix before a
    # request, so this is the path after the server's root path.
    return reverse("admin:index")


@functools.cache
def _data_paths() -> tuple[str, str]:
    return reverse("chat-export"), reverse("chat-import")


@functools.cache
def _sign_on_path() -> str | None:
    return reverse("oidc_authentication_callback") if settings.OIDC_ISSUER else None


def _context_for(scope) -> ThreadSensitiveContext:
    path = scope["path"].removeprefix(scope.get("root_path", ""))
    if path.startswith(_staff_path()):
        return staff_context()
    if _sign_on_path() and path.startswith(_sign_on_path()):
        return sign_on_context()
    if path.startswith(_data_paths()):
        return ThreadSensitiveContext(executor=_data_executor)
    return shared_context()


class SharedDatabaseThreads:
    """ASGI middleware: the request inside runs its ORM calls on a shared thread,
    a staff page on the staff thread, single sign-on's callback on its own
    (Django's own per-request context then defers to this one)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        async with _context_for(scope):
            await self.app(scope, receive, send)
