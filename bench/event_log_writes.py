"""Redis commands per token of one streamed answer, and how late its events
reach a reader on another worker.

    .venv/bin/python -m bench.event_log_writes [--tokens 600] [--gap-ms 0] [--runs 3] [--env NAME=VALUE ...]

The product's own parts, in this process: the generation's `Publisher` writes
an answer's events (text deltas of one word each, then `done`, then `finish`)
through one `RedisEventLog`, and a reader follows them with another (a second
worker), as the stream view does with `read_after`. A private redis-server, so
that INFO commandstats (reset before each run) counts only this answer's
commands: the publishes (EVALSHA) with the commands their script runs (XREVRANGE,
XADD, PEXPIRE), `finish` (a MULTI of two PEXPIREs) and the reader's XREADs.

`--gap-ms 0` streams as fast as the loop allows (each token yields once, as
reading a chunk from the provider does); a gap of 20 ms is a model at 50 tokens
a second. The delay is from the call of `publish` to the reader holding the
event; `seconds`, from the first token to the reader holding `done`. With no gap
only `seconds` compares: a publish that waits for Redis holds the model's next
tokens back before they are published, where the delay does not count them.
"""

import argparse
import asyncio
import json
import os
import statistics
import time


async def one_answer(writer_log, reader_log, message_id: int, tokens: int, gap: float) -> dict:
    from chat import events
    from chat.generation.publisher import Publisher

    published: dict[int, float] = {}
    delays: list[float] = []

    async def read() -> None:
        cursor = 0
        while True:
            batch = await reader_log.read_after(message_id, cursor, timeout=5)
            now = time.perf_counter()
            for event in batch:
                delays.append(now - published[event.seq])
                if event.is_terminal:
                    return
            if batch:
                cursor = batch[-1].seq

    reader = asyncio.create_task(read())
    # The reader is waiting before the answer starts, as a page is.
    await asyncio.sleep(0.1)
    publisher = Publisher(writer_log, message_id, 0)
    started = time.perf_counter()
    for n in range(tokens):
        published[publisher.next_seq] = time.perf_counter()
        await publisher.publish(events.TEXT_DELTA, {"text": f" word{n}"})
        await asyncio.sleep(gap)
    published[publisher.next_seq] = time.perf_counter()
    await publisher.publish(events.DONE, {"status": "complete", "reason": ""})
    await publisher.finish()
    await asyncio.wait_for(reader, 30)
    elapsed = time.perf_counter() - started
    delays.sort()
    return {
        "seconds": round(elapsed, 3),
        "delay_ms_median": round(statistics.median(delays) * 1000, 3),
        "delay_ms_p99": round(delays[int(len(delays) * 0.99)] * 1000, 3),
        "delay_ms_max": round(delays[-1] * 1000, 3),
    }


def commands(admin) -> dict[str, int]:
    stats = admin.info("commandstats")
    return {name.removeprefix("cmdstat_"): row["calls"] for name, row in stats.items() if name != "cmdstat_info"}


async def measure(url: str, tokens: int, gap_ms: float, runs: int) -> list[dict]:
    import redis

    from chat.eventlog.redis import RedisEventLog

    admin = redis.Redis.from_url(url)
    writer_log, reader_log = RedisEventLog(url, prefix="bench"), RedisEventLog(url, prefix="bench")
    # Connections made and the script loaded by a first answer, as on a server
    # that has been running.
    await one_answer(writer_log, reader_log, 0, 1, 0)
    results = []
    for run in range(1, runs + 1):
        admin.config_resetstat()
        timing = await one_answer(writer_log, reader_log, run, tokens, gap_ms / 1000)
        counted = commands(admin)
        counted.pop("config|resetstat", None)
        total = sum(counted.values())
        results.append(
            {
                "tokens": tokens,
                "gap_ms": gap_ms,
                "commands": counted,
                "commands_total": total,
                "commands_per_token": round(total / tokens, 3),
                "publishes": counted.get("evalsha", 0),
                "reads": counted.get("xread", 0),
                **timing,
            }
        )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Redis commands per token of one streamed answer.")
    parser.add_argument("--tokens", type=int, default=600, help="text deltas of the answer (600)")
    parser.add_argument("--gap-ms", type=float, default=0, help="pause between tokens, in ms (0: as fast as possible)")
    parser.add_argument("--runs", type=int, default=3, help="answers measured, one line each (3)")
    parser.add_argument("--env", action="append", default=[], help="a setting for the product, NAME=VALUE")
    args = parser.parse_args(argv)
    for assignment in args.env:
        name, _, value = assignment.partition("=")
        os.environ[name] = value
    # Here only: bench.run imports the bench modules, and its servers must not
    # inherit these variables.
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatproject.settings")
    os.environ.setdefault("DJANGO_DEBUG", "1")
    import django

    django.setup()
    from tests.live import RedisServer

    server = RedisServer().start()
    try:
        for result in asyncio.run(measure(server.url, args.tokens, args.gap_ms, args.runs)):
            print(json.dumps(result))
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
