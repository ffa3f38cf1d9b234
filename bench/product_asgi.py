"""The product's ASGI application exactly as shipped (chatproject.asgi), plus a count
of the SQL statements it runs (an executemany counts once), for the benchmark's database-write figure.

    daphne bench.product_asgi:application

Every new database connection gets an execute wrapper that counts statements by
their first word (one dict update per statement: microseconds against the
statement's own cost), and the writes and write transactions (commits) apart. GET
/__bench__/sql answers the counts as JSON; every other request goes to the
product untouched.
"""

import json
import threading
from collections import Counter

from django.db.backends.signals import connection_created

from chatproject.asgi import application as product

_counts: Counter = Counter()
_lock = threading.Lock()


WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


def _count(execute, sql, params, many, context):
    verb = sql.lstrip().split(None, 1)[0].upper() if sql else ""
    # A write transaction is a BEGIN (Django's atomic() on SQLite), or a write
    # made outside one (autocommit: its own transaction).
    transaction = verb == "BEGIN" or (verb in WRITES and not context["connection"].in_atomic_block)
    with _lock:
        _counts[verb] += 1
        if verb in WRITES:
            _counts["WRITE"] += 1
        if transaction:
            _counts["TRANSACTION"] += 1
    return execute(sql, params, many, context)


def _install(sender, connection, **kwargs) -> None:
    with _lock:
        _counts["CONNECT"] += 1
    if _count not in connection.execute_wrappers:
        connection.execute_wrappers.append(_count)


connection_created.connect(_install, weak=False)


async def application(scope, receive, send) -> None:
    if scope["type"] == "http" and scope["path"] == "/__bench__/sql":
        with _lock:
            body = json.dumps(dict(_counts)).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})
        return
    await product(scope, receive, send)
