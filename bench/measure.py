"""Measuring: the load levels and what each records, the capacity search, and
the measurements besides the levels (answers one at a time, a replay).

A level of N starts N answers spread over `--ramp` seconds and records every
token's added latency, each answer's outcome, the CPU time of the server, the
client and the stub, the server's peak memory, the machine's CPU pressure, the
load generator's own loop lag and (product) the database writes. bench/run.py's
docstring has the method in full.
"""

import asyncio
import contextlib
import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.client import Answer, Browser
from bench.processes import Stub, client_cpu, cpu_pressure_us, cpu_seconds, rss_kb
from tests.live import LiveServer

LADDER = [1, 5, 10, 20, 40, 80, 160, 320, 640, 1280]

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

    @property
    def live(self) -> list[float]:
        return [x for a in self.answers for x in a.live]

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
    def passed(self) -> bool:
        return self.failed == 0 and self.p99 is not None and self.p99 < self.p99_limit

    @property
    def lag_p99(self) -> float | None:
        return pct(self.loop_lag, 99)

    def noisy(self, max_lag: float) -> bool:
        """The load generator itself was starved of CPU (by the machine, not by
        the server): its receive timestamps, so the latencies, came late."""
        return self.lag_p99 is not None and self.lag_p99 > max_lag

    @property
    def ttft_added(self) -> list[float]:
        return [a.ttft_added for a in self.answers if a.ttft_added is not None]

    @property
    def tokens(self) -> int:
        return sum(a.tokens for a in self.answers)

    @property
    def answer_wall(self) -> float:
        """Seconds the completed answers were open, first request to terminal frame."""
        return sum(a.finished - a.started for a in self.answers if a.ok and a.finished)

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
    def __init__(self, name: str, server: LiveServer, client, stub: Stub, *, counts_db: bool, counts_sql: bool) -> None:
        self.name = name
        self.server = server
        self.client = client
        self.stub = stub
        self.counts_db = counts_db
        self.counts_sql = counts_sql
        self.levels: dict[int, Level] = {}
        # Server CPU of answers one at a time (measure_costs).
        self.costs: dict[str, float | None] = {}
        self.rss_start_kb = 0
        self.rss_rest_kb = 0
        self.search: Search | None = None

    @property
    def pid(self) -> int:
        return self.server.process.pid

    @property
    def capacity(self) -> int:
        return self.search.last_pass if self.search else 0

    @property
    def first_fail(self) -> int | None:
        return self.search.first_fail if self.search else None

    async def sql_counts(self) -> dict[str, int] | None:
        if not self.counts_sql:
            return None
        try:
            response = await self.client.http.get("/__bench__/sql")
            return response.json()
        except Exception:
            return None


async def run_level(target: Target, n: int, args, rounds: int = 1) -> Level:
    """N answers (`rounds` times over), spread over --ramp seconds, and what the
    processes spent on them."""
    pid, stub_pid = target.pid, target.stub.process.pid
    log_offset = target.server.log_path.stat().st_size
    sql_before = await target.sql_counts()
    sampler = _Sampler(pid)
    sampling = asyncio.create_task(sampler.run())

    async def one(delay: float) -> Answer:
        if delay:
            await asyncio.sleep(delay)
        return await target.client.answer(args.tokens, args.rate, timeout=args.tokens / args.rate + 60)

    s0, c0, t0, p0, w0 = cpu_seconds(pid), client_cpu(), cpu_seconds(stub_pid), cpu_pressure_us(), time.monotonic()
    answers: list[Answer] = []
    for _ in range(rounds):
        ramp = args.ramp if n > 1 else 0
        answers += await asyncio.gather(*(one(ramp * i / n) for i in range(n)))
    wall = time.monotonic() - w0
    s1, c1, t1, p1 = cpu_seconds(pid), client_cpu(), cpu_seconds(stub_pid), cpu_pressure_us()
    sampler.stop.set()
    await sampling
    level = Level(
        target=target.name,
        n=n,
        rounds=rounds,
        answers=answers,
        wall=wall,
        server_cpu=s1 - s0,
        client_cpu=c1 - c0,
        stub_cpu=t1 - t0,
        rss_before_kb=sampler.rss_before_kb,
        rss_peak_kb=sampler.rss_peak_kb,
        p99_limit=args.p99_limit / 1000,
        pressure=None if p0 is None or p1 is None else (p1 - p0) / 1e6 / wall,
        loop_lag=sampler.lag,
    )
    if target.counts_db:
        await _count_database_writes(target, level, log_offset, sql_before)
    _print_level(level)
    await asyncio.sleep(args.settle)
    return level


class _Sampler:
    """Every 20 ms during a level: the server's memory, and this process's own
    event-loop lag (a late wake-up here means the receive timestamps are late too)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.rss_before_kb = self.rss_peak_kb = rss_kb(pid)
        self.lag: list[float] = []
        self.stop = asyncio.Event()

    async def run(self) -> None:
        while not self.stop.is_set():
            self.rss_peak_kb = max(self.rss_peak_kb, rss_kb(self.pid))
            before = time.monotonic()
            await asyncio.sleep(0.02)
            self.lag.append(max(0.0, time.monotonic() - before - 0.02))


async def _count_database_writes(
    target: Target, level: Level, log_offset: int, sql_before: dict[str, int] | None
) -> None:
    """The answers' own writes (their log lines) and the statements the process
    ran during the level."""
    # The per-answer log line is written just after the terminal event.
    started = sum(1 for a in level.answers if a.stream_sent is not None)
    deadline = time.monotonic() + 3
    lines = answer_log_lines(target.server.log_path, log_offset)
    while len(lines) < started and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        lines = answer_log_lines(target.server.log_path, log_offset)
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
        f"ttft+={ms(pct(level.ttft_added, 50))} ms  cpu server={level.cpu_pct(level.server_cpu):.0f}% "
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
    rounds = args.alone_rounds if n == 1 else 1
    level = await run_level(target, n, args, rounds=rounds)
    tries = 1
    max_lag = args.max_lag / 1000
    # A failed level runs again (--confirm times), and up to twice more while the
    # load generator's own lag says the machine, not the server, was the limit.
    while not level.passed and (tries <= args.confirm or (level.noisy(max_lag) and tries <= args.confirm + 2)):
        tries += 1
        again = await run_level(target, n, args, rounds=rounds)
        if again.passed or (again.failed, again.p99 or math.inf) < (level.failed, level.p99 or math.inf):
            level = again
    level.tries = tries
    target.levels[n] = level
    target.search.record(n, level.passed)
    return True


async def find_capacities(targets: list[Target], args, ladder: list[int]) -> None:
    print(
        f"capacity at {args.rate:g} tokens/s, {args.tokens} tokens per answer, p99 < {args.p99_limit:g} ms", flush=True
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
    target.rss_rest_kb = rss_kb(target.pid)


async def measure_costs(target: Target, args) -> None:
    """Server CPU of answers one at a time, so that no queueing is in it: a
    1-token answer (what an answer costs besides its tokens: requests, database,
    rendering, the model request) and a long fast one (what each token adds)."""

    async def per_answer(count: int, tokens: int) -> float | None:
        before = cpu_seconds(target.pid)
        for _ in range(count):
            answer = await target.client.answer(tokens, COST_RATE, timeout=30)
            if not answer.ok:
                return None
        return (cpu_seconds(target.pid) - before) / count

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
