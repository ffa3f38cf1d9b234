"""Measuring: the load levels and what each records, the capacity search, and
the measurements besides the levels (answers one at a time, a replay).

A level of N starts N answers spread over `--ramp` seconds and records every
token's added latency, each answer's outcome, the CPU time of the server, the
client and the stub, the server's peak memory, the machine's CPU pressure, the
load generator's own loop lag and (product) the database writes. bench/run.py's
docstring has the method in full.
"""

import argparse
import asyncio
import contextlib
import json
import math
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.client import Answer, Browser
from bench.processes import Stub, client_cpu, cpu_pressure_us, cpu_seconds, rss_kb
from tests.live import LiveServer

# Steady load: N answers open on average; the search steps up this ladder, then bisects.
LADDER = [10, 20, 40, 80, 160, 320, 640, 1280]

# Answers one at a time (measure_costs): the long one's length and pace.
COST_TOKENS = 200
COST_RATE = 1000


# --------------------------------------------------------------------------- figures


def pct(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def ms(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value * 1000:.{digits}f}"


def _ms_or_none(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value * 1000, digits)


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


@dataclass
class Level:
    target: str
    n: int
    rounds: int
    answers: list[Answer]
    wall: float
    server_cpu: float
    client_cpu: float
    stub_cpu: float
    rss_before_kb: int
    rss_peak_kb: int
    p99_limit: float
    pressure: float | None = None  # share of the wall time some task waited for a CPU
    loop_lag: list[float] = field(default_factory=list)
    db_writes: int | None = None  # the product's own count (log line)
    answer_seconds: float | None = None
    sql: dict[str, int] | None = None  # statements the process ran during the level
    tries: int = 1
    # Steady load: the figures are of the measuring window (time.time() bounds):
    # tokens emitted in it, answers that started in it, CPU spent in it.
    window: tuple[float, float] | None = None
    ttft_limit: float | None = None  # steady load: time to first token p95 limit, s
    # Production configuration: CPU seconds of each process in the window, and
    # the counters of PostgreSQL and Redis over the whole level.
    cpu_by_process: dict[str, float] | None = None
    counters: dict[str, int] | None = None

    def _in_window(self, emitted: float) -> bool:
        return self.window is None or self.window[0] <= emitted < self.window[1]

    @property
    def live(self) -> list[float]:
        return [x for a in self.answers for x, t in zip(a.live, a.live_emitted, strict=True) if self._in_window(t)]

    @property
    def all_tokens(self) -> list[float]:
        return [x for a in self.answers for x in a.live + a.catchup]

    @property
    def completed(self) -> int:
        return sum(a.ok for a in self.answers)

    @property
    def failed(self) -> int:
        return len(self.answers) - self.completed

    @property
    def p99(self) -> float | None:
        return pct(self.live, 99)

    @property
    def ttft_p95(self) -> float | None:
        return pct(self.ttft_added, 95)

    @property
    def passed(self) -> bool:
        if self.failed or self.p99 is None or self.p99 >= self.p99_limit:
            return False
        return self.ttft_limit is None or (self.ttft_p95 is not None and self.ttft_p95 < self.ttft_limit)

    @property
    def lag_p99(self) -> float | None:
        return pct(self.loop_lag, 99)

    def noisy(self, max_lag: float) -> bool:
        """The load generator itself was starved of CPU (by the machine, not by
        the server): its receive timestamps, so the latencies, came late."""
        return self.lag_p99 is not None and self.lag_p99 > max_lag

    @property
    def ttft_added(self) -> list[float]:
        return [a.ttft_added for a in self.answers if a.ttft_added is not None and self._in_window(a.started)]

    @property
    def tokens(self) -> int:
        return sum(a.tokens for a in self.answers)

    @property
    def answer_wall(self) -> float:
        """Seconds the completed answers were open, first request to terminal frame
        (steady load: the part of it inside the window)."""
        lo, hi = self.window or (-math.inf, math.inf)
        return sum(max(0.0, min(a.finished, hi) - max(a.started, lo)) for a in self.answers if a.ok and a.finished)

    def cpu_pct(self, seconds: float) -> float:
        return 100 * seconds / self.wall if self.wall else 0.0

    @property
    def sql_writes(self) -> int | None:
        return None if self.sql is None else self.sql.get("WRITE", 0)

    @property
    def transactions(self) -> int | None:
        return None if self.sql is None else self.sql.get("TRANSACTION", 0)

    def per_answer_second(self, count: int | None) -> float | None:
        if count is None or not self.answer_seconds:
            return None
        return count / self.answer_seconds

    def errors(self) -> list[str]:
        seen: dict[str, int] = {}
        for a in self.answers:
            if not a.ok:
                seen[a.error] = seen.get(a.error, 0) + 1
        return [f"{count}× {error}" for error, count in seen.items()]

    def as_dict(self) -> dict:
        return {
            "target": self.target,
            "n": self.n,
            "rounds": self.rounds,
            "tries": self.tries,
            "completed": self.completed,
            "failed": self.failed,
            "errors": self.errors(),
            "tokens": self.tokens,
            "live_tokens": len(self.live),
            "catchup_tokens": len(self.all_tokens) - len(self.live),
            "p50_ms": _ms_or_none(pct(self.live, 50)),
            "p99_ms": _ms_or_none(self.p99),
            "max_ms": _ms_or_none(max(self.live, default=None)),
            "p99_all_tokens_ms": _ms_or_none(pct(self.all_tokens, 99)),
            "ttft_added_p50_ms": _ms_or_none(pct(self.ttft_added, 50)),
            "ttft_added_p95_ms": _ms_or_none(self.ttft_p95),
            "ttft_added_max_ms": _ms_or_none(max(self.ttft_added, default=None)),
            "passed": self.passed,
            "wall_s": round(self.wall, 3),
            "server_cpu_s": round(self.server_cpu, 2),
            "server_cpu_pct": round(self.cpu_pct(self.server_cpu), 1),
            "client_cpu_pct": round(self.cpu_pct(self.client_cpu), 1),
            "stub_cpu_pct": round(self.cpu_pct(self.stub_cpu), 1),
            "server_cpu_us_per_token": round(1e6 * self.server_cpu / self.tokens) if self.tokens else None,
            "server_cpu_ms_per_answer_second": round(1e3 * self.server_cpu / self.answer_wall, 1)
            if self.answer_wall
            else None,
            "cpu_pressure_pct": None if self.pressure is None else round(100 * self.pressure, 1),
            "client_loop_lag_p99_ms": _ms_or_none(pct(self.loop_lag, 99)),
            "rss_before_mb": round(self.rss_before_kb / 1024, 1),
            "rss_peak_mb": round(self.rss_peak_kb / 1024, 1),
            "db_writes": self.db_writes,
            "sql": self.sql,
            "answer_seconds": None if self.answer_seconds is None else round(self.answer_seconds, 3),
            "db_writes_per_answer_second": _round(self.per_answer_second(self.db_writes), 2),
            "sql_writes_per_answer_second": _round(self.per_answer_second(self.sql_writes), 2),
            "transactions_per_answer_second": _round(self.per_answer_second(self.transactions), 2),
            "window": self.window,
            "cpu_by_process_s": self.cpu_by_process,
            "counters": self.counters,
        }


ANSWER_LINE = re.compile(r"\banswer (\{.*\})\s*$")


def answer_log_lines(path: Path, offset: int) -> list[dict]:
    with open(path, "rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    out = []
    for line in text.splitlines():
        match = ANSWER_LINE.search(line)
        if match:
            with contextlib.suppress(ValueError):
                out.append(json.loads(match[1]))
    return out


# --------------------------------------------------------------------------- levels


class Search:
    """The capacity search of one target: up the ladder, then bisect."""

    def __init__(self, ladder: list[int], bisect: int) -> None:
        self.ladder = ladder
        self.index = 0
        self.bisect = bisect
        self.steps = 0
        self.last_pass = 0
        self.first_fail: int | None = None

    def next(self) -> int | None:
        if self.first_fail is None:
            return self.ladder[self.index] if self.index < len(self.ladder) else None
        if self.last_pass == 0 or self.steps >= self.bisect:
            return None
        if self.first_fail - self.last_pass <= max(1, round(self.last_pass * 0.1)):
            return None
        return (self.last_pass + self.first_fail) // 2

    def record(self, n: int, passed: bool) -> None:
        if self.first_fail is None:
            self.index += 1
        else:
            self.steps += 1
        if passed:
            self.last_pass = max(self.last_pass, n)
        else:
            self.first_fail = n if self.first_fail is None else min(self.first_fail, n)


class Target:
    """A server under test and the client that reads it. Its processes are the
    daphne worker(s); a production target adds PostgreSQL and Redis
    (bench/production.py)."""

    def __init__(self, name: str, server: LiveServer, client, stub: Stub, *, counts_db: bool, counts_sql: bool) -> None:
        self.name = name
        self.server = server
        self.client = client
        self.stub = stub
        self.counts_db = counts_db
        self.counts_sql = counts_sql
        self.levels: dict[int, Level] = {}
        self.alone: Level | None = None  # one answer at a time (--alone-rounds in a row)
        # Server CPU of answers one at a time (measure_costs).
        self.costs: dict[str, float | None] = {}
        self.rss_start_kb = 0
        self.rss_rest_kb = 0
        self.search: Search | None = None

    @property
    def pid(self) -> int:
        return self.server.process.pid

    @property
    def workers(self) -> list[LiveServer]:
        return [self.server]

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of each of the target's processes."""
        return {"daphne": cpu_seconds(self.pid)}

    def rss_kb(self) -> int:
        return sum(rss_kb(w.process.pid) for w in self.workers)

    async def counters(self) -> dict[str, int] | None:
        """Counters of the services behind the target (production only)."""
        return None

    @property
    def capacity(self) -> int:
        return self.search.last_pass if self.search else 0

    @property
    def first_fail(self) -> int | None:
        return self.search.first_fail if self.search else None

    async def sql_counts(self) -> dict[str, int] | None:
        if not self.counts_sql:
            return None
        merged: dict[str, int] = {}
        for worker in self.workers:
            try:
                response = await self.client.http.get(worker.url + "/__bench__/sql")
            except Exception:
                return None
            for verb, count in response.json().items():
                merged[verb] = merged.get(verb, 0) + count
        return merged


def poisson_arrivals(rate: float, duration: float, rng: random.Random) -> list[float]:
    """Start times of a Poisson process of `rate` per second over `duration` s."""
    times, t = [], rng.expovariate(rate)
    while t < duration:
        times.append(t)
        t += rng.expovariate(rate)
    return times


def _diff(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before.get(k, 0) for k in after}


async def run_level(target: Target, n: int, args, rounds: int = 1, *, steady: bool = False) -> Level:
    """A level of N answers and what the processes spent on them.

    Ramp (steady=False): N answers (`rounds` times over) spread over --ramp
    seconds. Steady: answers arrive at random (a Poisson process) at N ÷ their
    length per second, so that N are open on average; after one answer's length
    of arrivals the load is steady, and the next --window seconds are measured
    (tokens emitted in them, answers started in them, CPU spent in them); then
    arrivals stop and the open answers finish."""
    stub_pid = target.stub.process.pid
    logs = {w.log_path: w.log_path.stat().st_size for w in target.workers}
    sql_before = await target.sql_counts()
    counters_before = await target.counters()
    sampler = _Sampler(target)
    sampling = asyncio.create_task(sampler.run())
    length = args.tokens / args.rate

    async def one(delay: float) -> Answer:
        if delay:
            await asyncio.sleep(delay)
        return await target.client.answer(args.tokens, args.rate, timeout=length + 60)

    def snapshot() -> tuple:
        return target.cpu(), client_cpu(), cpu_seconds(stub_pid), cpu_pressure_us(), time.monotonic(), time.time()

    answers: list[Answer] = []
    window = None
    if steady:
        warm = length
        arrivals = poisson_arrivals(n / length, warm + args.window, random.Random(args.seed + n))
        pending = [asyncio.create_task(one(at)) for at in arrivals]
        await asyncio.sleep(warm)
        before = snapshot()
        await asyncio.sleep(args.window)
        after = snapshot()
        window = (before[5], after[5])
        answers = list(await asyncio.gather(*pending))
    else:
        before = snapshot()
        for _ in range(rounds):
            ramp = args.ramp if n > 1 else 0
            answers += await asyncio.gather(*(one(ramp * i / n) for i in range(n)))
        after = snapshot()
    cpu = _diff(after[0], before[0])
    wall = after[4] - before[4]
    p0, p1 = before[3], after[3]
    sampler.stop.set()
    await sampling
    counters_after = await target.counters()
    level = Level(
        target=target.name,
        n=n,
        rounds=rounds,
        answers=answers,
        wall=wall,
        server_cpu=sum(cpu.values()),
        client_cpu=after[1] - before[1],
        stub_cpu=after[2] - before[2],
        rss_before_kb=sampler.rss_before_kb,
        rss_peak_kb=sampler.rss_peak_kb,
        p99_limit=args.p99_limit / 1000,
        pressure=None if p0 is None or p1 is None else (p1 - p0) / 1e6 / wall,
        loop_lag=sampler.lag,
        window=window,
        ttft_limit=args.ttft_limit / 1000 if steady else None,
        cpu_by_process=cpu if len(cpu) > 1 else None,
        counters=None if counters_before is None else _diff(counters_after, counters_before),
    )
    if target.counts_db:
        await _count_database_writes(target, level, logs, sql_before)
    _print_level(level)
    await asyncio.sleep(args.settle)
    return level


class _Sampler:
    """Every 20 ms during a level: the server's memory, and this process's own
    event-loop lag (a late wake-up here means the receive timestamps are late too)."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.rss_before_kb = self.rss_peak_kb = target.rss_kb()
        self.lag: list[float] = []
        self.stop = asyncio.Event()

    async def run(self) -> None:
        while not self.stop.is_set():
            self.rss_peak_kb = max(self.rss_peak_kb, self.target.rss_kb())
            before = time.monotonic()
            await asyncio.sleep(0.02)
            self.lag.append(max(0.0, time.monotonic() - before - 0.02))


async def _count_database_writes(
    target: Target, level: Level, logs: dict[Path, int], sql_before: dict[str, int] | None
) -> None:
    """The answers' own writes (their log lines) and the statements the
    process(es) ran during the level."""

    def lines_now() -> list[dict]:
        return [line for path, offset in logs.items() for line in answer_log_lines(path, offset)]

    # The per-answer log line is written just after the terminal event.
    started = sum(1 for a in level.answers if a.stream_sent is not None)
    deadline = time.monotonic() + 3
    lines = lines_now()
    while len(lines) < started and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        lines = lines_now()
    level.db_writes = sum(int(x.get("db_writes") or 0) for x in lines)
    level.answer_seconds = sum(float(x.get("duration_s") or 0) for x in lines)
    sql_after = await target.sql_counts()
    if sql_before is not None and sql_after is not None:
        level.sql = {
            k: sql_after.get(k, 0) - sql_before.get(k, 0)
            for k in sql_after
            if sql_after.get(k, 0) - sql_before.get(k, 0)
        }


def _print_level(level: Level) -> None:
    print(
        f"  {level.target:8} N={level.n:<4} ok={level.completed:<4} failed={level.failed:<3} "
        f"p50={ms(pct(level.live, 50))} p99={ms(level.p99)} max={ms(max(level.live, default=None))} ms  "
        f"ttft+={ms(pct(level.ttft_added, 50))}/{ms(level.ttft_p95)} ms  cpu server={level.cpu_pct(level.server_cpu):.0f}% "
        f"client={level.cpu_pct(level.client_cpu):.0f}% stub={level.cpu_pct(level.stub_cpu):.0f}%  "
        f"psi={'–' if level.pressure is None else f'{100 * level.pressure:.0f}%'} lag99={ms(level.lag_p99)} ms  "
        f"rss={level.rss_peak_kb / 1024:.0f} MB" + ("" if level.passed else "  ✗"),
        flush=True,
    )
    for error in level.errors()[:3]:
        print(f"           {error}", flush=True)


async def step(target: Target, args) -> bool:
    """Run the next level of the target's search; False when the search is over."""
    n = target.search.next()
    if n is None:
        return False
    level = await run_level(target, n, args, steady=True)
    tries = 1
    max_lag = args.max_lag / 1000
    # A failed level runs again (--confirm times), and up to twice more while the
    # load generator's own lag says the machine, not the server, was the limit.
    while not level.passed and (tries <= args.confirm or (level.noisy(max_lag) and tries <= args.confirm + 2)):
        tries += 1
        again = await run_level(target, n, args, steady=True)
        if again.passed or (again.failed, again.p99 or math.inf) < (level.failed, level.p99 or math.inf):
            level = again
    level.tries = tries
    target.levels[n] = level
    target.search.record(n, level.passed)
    return True


async def find_capacities(targets: list[Target], args, ladder: list[int]) -> None:
    print(
        f"capacity under steady load: {args.tokens} tokens at {args.rate:g} tokens/s, Poisson arrivals, "
        f"p99 < {args.p99_limit:g} ms and time to first token p95 < {args.ttft_limit:g} ms",
        flush=True,
    )
    for target in targets:
        target.search = Search(ladder, args.bisect)
    active = list(targets)
    while active:
        # Alternate: both targets meet the same background load.
        active = [t for t in active if await step(t, args)]


async def warm_up(target: Target, args) -> None:
    """First requests import and compile what the rest reuse: not part of any figure."""
    await asyncio.gather(*(target.client.answer(10, 200, timeout=30) for _ in range(2)))
    await asyncio.sleep(args.settle)
    target.rss_rest_kb = target.rss_kb()


async def measure_alone(target: Target, args) -> None:
    """One answer at a time, --alone-rounds in a row: what the server adds with
    nothing queued behind it."""
    alone = argparse.Namespace(**{**vars(args), "tokens": args.alone_tokens})
    target.alone = await run_level(target, 1, alone, rounds=args.alone_rounds)


async def measure_costs(target: Target, args) -> None:
    """Server CPU of answers one at a time, so that no queueing is in it: a
    1-token answer (what an answer costs besides its tokens: requests, database,
    rendering, the model request) and a long fast one (what each token adds)."""

    async def per_answer(count: int, tokens: int) -> float | None:
        before = sum(target.cpu().values())
        for _ in range(count):
            answer = await target.client.answer(tokens, COST_RATE, timeout=30)
            if not answer.ok:
                return None
        return (sum(target.cpu().values()) - before) / count

    short = await per_answer(args.cost_answers, 1)
    long = await per_answer(max(1, args.cost_answers // 5), COST_TOKENS)
    target.costs = {
        "answer_ms": None if short is None else 1e3 * short,
        "token_us": None if short is None or long is None else 1e6 * (long - short) / (COST_TOKENS - 1),
    }
    print(f"  {target.name:8} one at a time: {target.costs}", flush=True)


async def measure_replay(browser: Browser, server: LiveServer, args) -> dict:
    """Produce a finished answer of `--replay-events` events (deltas + done), then
    read it again from after=0: request to terminal frame."""
    events = args.replay_events
    # Fast, but slow enough that the page still shows it streaming: a viewer
    # reads it to the end, as someone would.
    rate = max(500.0, (events - 1) / 1.5)
    answer = await browser.answer(events - 1, rate, timeout=120)
    message_id, conversation_id, status = server.sql(
        "SELECT id, conversation_id, status FROM chat_message WHERE role = 'assistant' ORDER BY id DESC LIMIT 1"
    )[0]
    deadline = time.monotonic() + 30
    while status == "streaming" and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        status = server.sql("SELECT status FROM chat_message WHERE id = ?", message_id)[0][0]
    if status != "complete":
        return {"events": events, "error": f"could not produce the answer ({status}): {answer.error}"}
    url = f"/c/{conversation_id}/m/{message_id}/stream/?after=0"
    times, errors, frames = [], [], []
    for _ in range(args.replay_repeats):
        seconds, replay = await browser.replay(url, expect_tokens=events - 1)
        if replay.ok:
            times.append(seconds)
            frames.append(replay.frames)
        else:
            errors.append(replay.error)
        await asyncio.sleep(0.1)
    return {
        "events": events,
        "repeats": args.replay_repeats,
        "median_ms": _ms_or_none(pct(times, 50), 1),
        "max_ms": _ms_or_none(max(times, default=None), 1),
        "min_ms": _ms_or_none(min(times, default=None), 1),
        "frames": frames[0] if frames else None,
        "errors": errors,
    }
