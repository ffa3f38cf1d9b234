"""How long the staff dashboard takes at scale.

    .venv/bin/python -m bench.dashboard [--entries 1000000] [--days 30] [--users 500]

A fresh database (a temporary SQLite file, or with DATABASE_URL a new PostgreSQL
database on that server, dropped afterwards) gets `--entries` usage-ledger end
entries spread over `--days` days, `--users` users in 10 groups and 3 models.
Printed: the first build of a 30-day dashboard (it sums each ended day once),
the builds after it (what staff wait for), and the page itself, with its query
counts; and, for the baseline, one aggregate over the raw ledger for the same
window (what the dashboard would cost without the daily sums).
"""

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

BATCH = 5000


def _database() -> tuple[dict, callable]:
    """Environment for a fresh database, and how to drop it."""
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith(("postgres://", "postgresql://")):
        import psycopg

        name = f"bench_dashboard_{secrets.token_hex(4)}"
        admin = psycopg.connect(url, autocommit=True)
        admin.execute(f'CREATE DATABASE "{name}"')
        fresh = urlunsplit(urlsplit(url)._replace(path=f"/{name}"))

        def drop() -> None:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

        return {"DATABASE_URL": fresh}, drop
    folder = tempfile.mkdtemp(prefix="bench-dashboard-")
    return {"SQLITE_PATH": os.path.join(folder, "db.sqlite3"), "DATABASE_URL": ""}, lambda: None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--users", type=int, default=500)
    args = parser.parse_args()

    env, drop = _database()
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatproject.settings")
    os.environ.setdefault("DJANGO_DEBUG", "1")
    import django

    django.setup()
    try:
        _run(args)
    finally:
        from django.db import connections

        connections.close_all()
        drop()


def _run(args) -> None:
    from decimal import Decimal

    from django.core.management import call_command
    from django.db import connection
    from django.db.models import Count, Sum
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from chat.dashboard import build
    from chat.models import UsageEntry

    call_command("migrate", verbosity=0)
    from django.contrib.auth import get_user_model

    staff = get_user_model().objects.create_superuser("staff", password="x")
    now = timezone.now()
    seconds = args.days * 86400
    started = time.perf_counter()
    models = ["small", "medium", "large"]
    statuses = ["complete"] * 16 + ["error", "stopped", "interrupted"]
    for first in range(0, args.entries, BATCH):
        UsageEntry.objects.bulk_create(
            UsageEntry(
                kind="end",
                username=f"user{i % args.users}",
                group=f"group{i % 10}",
                model=models[i % 3],
                prompt_tokens=500 + i % 700,
                completion_tokens=200 + i % 400,
                cost=Decimal("0.0012"),
                status=statuses[i % len(statuses)],
                first_token_ms=150 + (i * 37) % 2000,
                duration_ms=3000 + (i * 53) % 9000,
                created_at=now - timedelta(seconds=(i * 7919) % seconds),
            )
            for i in range(first, min(first + BATCH, args.entries))
        )
    print(
        f"database: {connection.vendor}; {args.entries:,} ledger entries over {args.days} days "
        f"({time.perf_counter() - started:.0f} s to write)"
    )

    def timed(fn) -> tuple[float, int]:
        with CaptureQueriesContext(connection) as queries:
            begin = time.perf_counter()
            fn()
            return (time.perf_counter() - begin) * 1000, len(queries)

    first_ms, first_queries = timed(lambda: build(args.days))
    print(f"first build (sums {args.days - 1} ended days once): {first_ms:,.0f} ms, {first_queries} queries")
    builds = [timed(lambda: build(args.days)) for _ in range(5)]
    print(
        f"later builds: median {statistics.median(ms for ms, _ in builds):,.1f} ms, "
        f"max {max(ms for ms, _ in builds):,.1f} ms, {builds[0][1]} queries"
    )
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(staff)
    pages = [timed(lambda: client.get(f"/admin/dashboard/?days={args.days}")) for _ in range(5)]
    print(f"the page: median {statistics.median(ms for ms, _ in pages):,.1f} ms, {pages[0][1]} queries")

    def raw() -> None:
        # The baseline: the same sums straight from the ledger, per day, user, group and model.
        list(
            UsageEntry.objects.filter(created_at__gte=now - timedelta(days=args.days))
            .values("username", "group", "model")
            .annotate(n=Count("pk"), tokens=Sum("completion_tokens"))
        )

    raws = [timed(raw) for _ in range(3)]
    baseline = statistics.median(ms for ms, _ in raws)
    later = statistics.median(ms for ms, _ in builds)
    print(
        f"baseline, one aggregate over the raw ledger: median {baseline:,.0f} ms "
        f"(the dashboard takes {later / baseline:.2f}× that)"
    )


if __name__ == "__main__":
    sys.exit(main())
