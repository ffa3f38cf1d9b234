"""Experiment: many answers on one Redis from several worker processes. Does
Redis's cost per event stay flat as the answers (streams, blocked readers,
connections) multiply, with the event rate held constant?

    .venv/bin/python -m bench.redis_fanout [--workers 3] [--events-per-second 2400]
                                           [--streams 48,240,960] [--seconds 15]
    .venv/bin/python -m bench.redis_fanout --per-stream 50 --streams 12,24,48

The scaling plan (docs/scaling.md) counts Redis's CPU per event and multiplies;
that holds only if the cost per event does not grow with the number of streams.
Each level holds the total event rate (--events-per-second) or, with
--per-stream, each answer's rate; each runs `--workers` processes, each with its share of the answers: per
answer, the generation's Publisher publishing text events (a 200-byte fragment
each, as a rendered delta is) at the level's rate per answer, and one reader
following it as the stream view does (RedisEventLog.read_after from its cursor,
waiting up to 3 s). No daphne, no database: only the event log's own work, so
the workers' Python is the only other cost. A redis-server of the experiment's
own, so its CPU (/proc) and `INFO commandstats` are the experiment's alone.

Per level: events published per second, Redis CPU per event (µs) and as % of
one core, Redis commands per event, publish-to-read latency p50/p99, and the
workers' CPU per event.
"""

import argparse
import asyncio
import json
import multiprocessing
import os
import sys
import time

from bench.processes import cpu_seconds
from tests.live import RedisServer

FRAGMENT = "<p>" + "x" * 193 + "</p>"


def _worker(redis_url: str, answers: int, rate: float, seconds: float, first_id: int, out, go) -> None:
    """One worker process: `answers` answers published at `rate` events/s each,
    each followed by one reader, from when `go` is set. Says "ready" on `out`
    once set up, then sends its latencies and counts."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatproject.settings")
    os.environ.setdefault("SECRET_KEY", "bench-redis-fanout-" + "x" * 40)
    os.environ["REDIS_URL"] = redis_url
    os.environ["CHAT_REDIS_PREFIX"] = "fanout"
    import django

    django.setup()
    from chat.eventlog.redis import RedisEventLog
    from chat.generation.publisher import Publisher

    log = RedisEventLog(redis_url)
    latencies: list[float] = []
    published = 0

    async def answer(message_id: int, delay: float) -> None:
        nonlocal published
        await asyncio.sleep(delay)
        publisher = Publisher(log, message_id, 0)
        start = time.monotonic()
        count = int(seconds * rate)
        reading = asyncio.create_task(read(message_id, count))
        for i in range(count):
            # An absolute schedule: a late wake-up does not slow the rate.
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            await publisher.publish("text_delta", {"t": time.time(), "html": FRAGMENT})
            published += 1
        await publisher.publish("done", {})
        await publisher.finish()
        await reading

    async def read(message_id: int, count: int) -> None:
        cursor = 0
        while cursor <= count:
            for event in await log.read_after(message_id, cursor, 3):
                cursor = event.seq
                if "t" in event.data:
                    latencies.append(time.time() - event.data["t"])

    async def main() -> None:
        # Answers start spread over one event interval, not all at once.
        await asyncio.gather(*(answer(first_id + i, i / answers / rate) for i in range(answers)))

    out.send("ready")
    go.wait()
    cpu0 = cpu_seconds(os.getpid())
    asyncio.run(main())
    out.send({"latencies": latencies, "published": published, "cpu": cpu_seconds(os.getpid()) - cpu0})
    out.close()


def _pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def _commands(redis_client) -> int:
    return sum(v["calls"] for v in redis_client.info("commandstats").values())


def run_level(redis: RedisServer, workers: int, streams: int, rate: float, seconds: float) -> dict:
    """`streams` answers of `rate` events per second each."""
    import redis as redis_py

    client = redis_py.Redis.from_url(redis.url)
    client.flushall()
    per_worker = [streams // workers + (1 if i < streams % workers else 0) for i in range(workers)]
    context = multiprocessing.get_context("spawn")
    pipes, processes = [], []
    go = context.Event()
    first = 1
    for count in per_worker:
        receive, send = context.Pipe(duplex=False)
        process = context.Process(target=_worker, args=(redis.url, count, rate, seconds, first, send, go))
        process.start()
        pipes.append(receive)
        processes.append(process)
        first += count
    # Measured from when every worker is set up (Django imported, no connection yet).
    for pipe in pipes:
        pipe.recv()
    commands0, cpu0, wall0 = _commands(client), cpu_seconds(redis.process.pid), time.monotonic()
    go.set()
    results = [pipe.recv() for pipe in pipes]
    for process in processes:
        process.join()
    wall = time.monotonic() - wall0
    redis_cpu = cpu_seconds(redis.process.pid) - cpu0
    commands = _commands(client) - commands0
    client.close()
    latencies = [x for r in results for x in r["latencies"]]
    published = sum(r["published"] for r in results)
    return {
        "streams": streams,
        "workers": workers,
        "rate_per_stream": round(rate, 2),
        "events": published,
        "events_per_second": round(published / seconds),
        "redis_cpu_pct": round(100 * redis_cpu / wall, 1),
        "redis_us_per_event": round(1e6 * redis_cpu / published, 1) if published else None,
        "redis_commands_per_event": round(commands / published, 2) if published else None,
        "latency_p50_ms": None if not latencies else round(1000 * _pct(latencies, 50), 2),
        "latency_p99_ms": None if not latencies else round(1000 * _pct(latencies, 99), 2),
        "events_read": len(latencies),
        "worker_cpu_us_per_event": round(1e6 * sum(r["cpu"] for r in results) / published) if published else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--events-per-second", type=float, default=2400)
    parser.add_argument("--streams", default="48,240,960")
    parser.add_argument("--per-stream", type=float, default=None, help="events per second of each answer")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    redis = RedisServer().start()
    rows = []
    try:
        for streams in (int(x) for x in args.streams.split(",")):
            rate = args.per_stream or args.events_per_second / streams
            row = run_level(redis, args.workers, streams, rate, args.seconds)
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        redis.stop()
    print()
    print(
        "| Streams | Events/s per stream | Events/s | Redis CPU % | Redis µs per event | Redis commands per event "
        "| Publish→read p50 / p99 ms | Worker CPU µs per event |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['streams']} | {r['rate_per_stream']} | {r['events_per_second']} | {r['redis_cpu_pct']} | "
            f"{r['redis_us_per_event']} | {r['redis_commands_per_event']} | {r['latency_p50_ms']} / "
            f"{r['latency_p99_ms']} | {r['worker_cpu_us_per_event']} |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
