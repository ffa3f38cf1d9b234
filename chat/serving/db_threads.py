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
"""

import itertools
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext
from django.conf import settings

_executors = [
    ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"db-{i}") for i in range(settings.CHAT_DB_THREADS)
]
_turn = itertools.cycle(_executors)


def shared_context() -> ThreadSensitiveContext:
    """A context whose thread-sensitive calls run on the next shared thread."""
    return ThreadSensitiveContext(executor=next(_turn))


class SharedDatabaseThreads:
    """ASGI middleware: the request inside runs its ORM calls on a shared thread
    (Django's own per-request context then defers to this one)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        async with shared_context():
            await self.app(scope, receive, send)
