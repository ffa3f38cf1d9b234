"""The production configuration under the benchmark: two daphne workers on one
PostgreSQL database and one Redis (Streams for the event log), each its own
process. The client posts every prompt to one worker and reads every stream from
the other, as a load balancer without sticky sessions may send them.

PostgreSQL is the machine's server (BENCH_POSTGRES_URL, default
postgres://postgres@127.0.0.1:5432/postgres), with a database made for the run
and dropped after it; Redis is a redis-server of the run's own, so that its CPU
and its command counts are the product's alone. CPU of PostgreSQL is the sum
over the server's processes (its backends are the workers' persistent
connections, DB_CONN_MAX_AGE); on a machine where other programs use the same
PostgreSQL server their share is in it too.
"""

import os
import secrets
from pathlib import Path

import psycopg
import redis

from bench.client import Browser
from bench.measure import Target
from bench.processes import AppServer, Stub, cpu_seconds, prepare_database, server_env
from tests.live import LiveServer, RedisServer

ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")


def postgres_cpu() -> float:
    """CPU seconds of every process of the PostgreSQL server (postmaster and backends)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() == "postgres":
                total += cpu_seconds(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue  # exited meanwhile
    return total


class Production:
    """The services and the two workers; `stop()` takes all of it down."""

    def __init__(self, work: Path, stub: Stub, app: str) -> None:
        self.work, self.stub, self.app = work, stub, app
        self.database = f"bench_{secrets.token_hex(4)}"
        self.database_url = ADMIN_URL.rsplit("/", 1)[0] + f"/{self.database}"
        self.workers: list[LiveServer] = []
        self.redis = RedisServer()

    def start(self) -> None:
        """Up and accepting connections; `stop()` undoes whatever part of it ran."""
        self.redis.start()
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{self.database}"')
        env = {
            **server_env(self.stub),
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis.url,
            "CHAT_REDIS_PREFIX": "bench",
        }
        for name in ("posts", "streams"):
            (self.work / name).mkdir(parents=True)
            self.workers.append(AppServer(self.work / name, self.app, env))
        prepare_database(self.workers[0])
        for worker in self.workers:
            worker.spawn()
        for worker in self.workers:
            worker.start()

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.redis.stop()
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')


class ProductionTarget(Target):
    """The product on two workers, PostgreSQL and Redis: its CPU is all four."""

    def __init__(self, production: Production, stub: Stub) -> None:
        posts, streams = production.workers
        super().__init__(
            "production",
            posts,
            Browser(posts.url, stream_url=streams.url),
            stub,
            counts_db=True,
            counts_sql=True,
        )
        self.production = production
        self.redis_client = redis.Redis.from_url(production.redis.url)

    @property
    def workers(self) -> list[LiveServer]:
        return self.production.workers

    def cpu(self) -> dict[str, float]:
        posts, streams = self.production.workers
        return {
            "daphne (posts)": cpu_seconds(posts.process.pid),
            "daphne (streams)": cpu_seconds(streams.process.pid),
            "PostgreSQL": postgres_cpu(),
            "Redis": cpu_seconds(self.production.redis.process.pid),
        }

    async def counters(self) -> dict[str, int]:
        """Redis commands by name (a script's inner commands counted too), and
        PostgreSQL's row and transaction counts of the run's database."""
        stats = self.redis_client.info("commandstats")
        out = {f"redis {name.removeprefix('cmdstat_')}": value["calls"] for name, value in stats.items()}
        out["redis (all)"] = sum(value["calls"] for value in stats.values())
        with psycopg.connect(self.production.database_url) as conn:
            commits, inserted, updated, deleted = conn.execute(
                "SELECT xact_commit, tup_inserted, tup_updated, tup_deleted FROM pg_stat_database "
                "WHERE datname = current_database()"
            ).fetchone()
        out.update(
            {
                "postgres commits": commits,
                "postgres rows written": inserted + updated + deleted,
            }
        )
        return out
