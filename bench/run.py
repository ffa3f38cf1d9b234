"""Benchmark: what the server adds to a streamed answer, and how many answers it carries.

    .venv/bin/python -m bench.run [--quick] [--rate 50] [--tokens 120] [--max-n 320]
                                  [--out docs/benchmarks.md] [--json results.json]

Three processes besides this one: the model stub (bench/stub.py, a process of its
own), the product under a real daphne (a tests/live.py LiveServer with a fresh
SQLite file and OPENAI_BASE_URL pointing at the stub) and the baseline relay
under daphne the same way (bench/baseline_relay.py). This process is the load
generator: one asyncio loop of simulated browsers (bench/client.py).

A level of N: N answers start, spread evenly over `--ramp` seconds, each streamed
at `--rate` tokens/s for `--tokens` tokens. For the product each answer is what a
browser does: POST /c/new/ with the prompt (its answer is the exchange's HTML
fragment), GET the SSE stream named in it (one user, logged in once like a browser, whose
limits are raised through the environment). For the baseline: one GET.

Figures per level:
- per-token added latency: receive time - the emission time the stub wrote into
  the token (same clock), for the tokens emitted once the stream was established
  (its response headers had arrived); tokens emitted before are replayed on
  connect and show in time to first token and in "all p99" instead;
- time to first token (from the answer's first request) minus the stub's own
  (from the request reaching the stub to its first token);
- answers completed and failed (an error frame, a missing or doubled token, a
  refused request, a timeout);
- server CPU (utime+stime of the daphne process, /proc/<pid>/stat) as % of one
  core, the client's and the stub's the same way, the server's peak VmRSS;
- database writes per answer-second: the `db_writes` field of the product's
  per-answer log line (`answer {...}` in daphne's output) over its `duration_s`;
  and every INSERT/UPDATE/DELETE the process ran (bench/product_asgi.py counts
  them; --plain-product serves chatproject.asgi instead and skips that count);
- noise: CPU pressure (/proc/pressure/cpu, share of the level's time some task
  waited for a CPU) and the load generator's own event-loop lag.

Capacity: the largest N whose p99 added latency stays under --p99-limit (100 ms)
with no failed answer. N steps through 1, 5, 10, 20, 40, 80, ... then bisects;
product and baseline levels alternate so both meet the same background load, and
a failed level is run again (--confirm, and up to twice more while the load
generator's own loop lag shows the machine was starved) before it counts: on a
shared machine a neighbour's burst is not the server's limit.
Replay: a finished answer of 2,000 events read again from after=0.
Answers one at a time (before the levels): server CPU of a 1-token answer and
what each token adds, without any queueing.
"""

import argparse
import asyncio
import datetime
import json
import math
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.client import Answer, Browser, RelayClient
from tests.live import ROOT, LiveServer

USER, PASSWORD = "bench", "bench-password-8273"
CLK_TCK = os.sysconf("SC_CLK_TCK")
LADDER = [1, 5, 10, 20, 40, 80, 160, 320, 640, 1280]

# Targets of the issue.
TARGET_ALONE_P99_MS = 10
TARGET_CAPACITY_RATIO = 1.0
TARGET_DB_WRITES = 4
TARGET_REPLAY_MS = 50

# Answers one at a time (measure_costs): the long one's length and pace.
COST_TOKENS = 200
COST_RATE = 1000


# --------------------------------------------------------------------------- processes


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_pressure_us() -> int | None:
    """Microseconds during which some task waited for a CPU (PSI), or None."""
    try:
        for line in Path("/proc/pressure/cpu").read_text().splitlines():
            if line.startswith("some "):
                return int(line.rsplit("total=", 1)[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


class Stub:
    def __init__(self, log_path: Path) -> None:
        self.log = open(log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.stub"], cwd=ROOT, stdout=subprocess.PIPE, stderr=self.log
        )
        line = self.process.stdout.readline().decode()
        if not line.startswith("port "):
            raise RuntimeError(f"the stub did not start: {line!r} {log_path.read_text()}")
        self.base_url = f"http://127.0.0.1:{int(line.split()[1])}/v1"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.log.close()


class AppServer(LiveServer):
    """A LiveServer for another ASGI app: the same daphne command, the same env."""

    def __init__(self, workdir: Path, app: str, env: dict[str, str]) -> None:
        super().__init__(workdir, env)
        self.app = app


def prepare_database(server: LiveServer) -> None:
    """A fresh SQLite file: migrate and create the user in one Django start."""
    server.manage(
        "shell",
        "-c",
        "from django.core.management import call_command\n"
        "from django.contrib.auth import get_user_model\n"
        "call_command('migrate', interactive=False, verbosity=0)\n"
        f"get_user_model().objects.create_user({USER!r}, password={PASSWORD!r})\n",
    )


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
            "server_cpu_ms_per_answer_second": round(1e3 * self.server_cpu / self.answer_wall, 1) if self.answer_wall else None,
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
            try:
                out.append(json.loads(match[1]))
            except ValueError:
                pass
    return out


# --------------------------------------------------------------------------- runner


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
    pid, stub_pid = target.pid, target.stub.process.pid
    log_offset = target.server.log_path.stat().st_size
    sql_before = await target.sql_counts()
    rss_before = rss_kb(pid)
    peak = [rss_before]
    lag: list[float] = []
    stop = asyncio.Event()

    async def sample() -> None:
        # Server memory, and this process's own event-loop lag: a late wake-up
        # here means the receive timestamps are late too.
        while not stop.is_set():
            peak[0] = max(peak[0], rss_kb(pid))
            before = time.monotonic()
            await asyncio.sleep(0.02)
            lag.append(max(0.0, time.monotonic() - before - 0.02))

    async def one(delay: float) -> Answer:
        if delay:
            await asyncio.sleep(delay)
        return await target.client.answer(args.tokens, args.rate, timeout=args.tokens / args.rate + 60)

    sampler = asyncio.create_task(sample())
    s0, c0, t0, p0, w0 = cpu_seconds(pid), client_cpu(), cpu_seconds(stub_pid), cpu_pressure_us(), time.monotonic()
    answers: list[Answer] = []
    for _ in range(rounds):
        ramp = args.ramp if n > 1 else 0
        answers += await asyncio.gather(*(one(ramp * i / n) for i in range(n)))
    wall = time.monotonic() - w0
    s1, c1, t1, p1 = cpu_seconds(pid), client_cpu(), cpu_seconds(stub_pid), cpu_pressure_us()
    stop.set()
    await sampler
    level = Level(
        target=target.name,
        n=n,
        rounds=rounds,
        answers=answers,
        wall=wall,
        server_cpu=s1 - s0,
        client_cpu=c1 - c0,
        stub_cpu=t1 - t0,
        rss_before_kb=rss_before,
        rss_peak_kb=peak[0],
        p99_limit=args.p99_limit / 1000,
        pressure=None if p0 is None or p1 is None else (p1 - p0) / 1e6 / wall,
        loop_lag=lag,
    )
    if target.counts_db:
        # The per-answer log line is written just after the terminal event.
        started = sum(1 for a in answers if a.stream_sent is not None)
        deadline = time.monotonic() + 3
        lines = answer_log_lines(target.server.log_path, log_offset)
        while len(lines) < started and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            lines = answer_log_lines(target.server.log_path, log_offset)
        level.db_writes = sum(int(x.get("db_writes") or 0) for x in lines)
        level.answer_seconds = sum(float(x.get("duration_s") or 0) for x in lines)
        sql_after = await target.sql_counts()
        if sql_before is not None and sql_after is not None:
            level.sql = {k: sql_after.get(k, 0) - sql_before.get(k, 0) for k in sql_after if sql_after.get(k, 0) - sql_before.get(k, 0)}
    print(
        f"  {target.name:8} N={n:<4} ok={level.completed:<4} failed={level.failed:<3} "
        f"p50={ms(pct(level.live, 50))} p99={ms(level.p99)} max={ms(max(level.live, default=None))} ms  "
        f"ttft+={ms(pct(level.ttft_added, 50))} ms  cpu server={level.cpu_pct(level.server_cpu):.0f}% "
        f"client={level.cpu_pct(level.client_cpu):.0f}% stub={level.cpu_pct(level.stub_cpu):.0f}%  "
        f"psi={'–' if level.pressure is None else f'{100 * level.pressure:.0f}%'} lag99={ms(pct(lag, 99))} ms  "
        f"rss={level.rss_peak_kb / 1024:.0f} MB" + ("" if level.passed else "  ✗"),
        flush=True,
    )
    for error in level.errors()[:3]:
        print(f"           {error}", flush=True)
    await asyncio.sleep(args.settle)
    return level


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
    print(f"capacity at {args.rate:g} tokens/s, {args.tokens} tokens per answer, p99 < {args.p99_limit:g} ms", flush=True)
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


# --------------------------------------------------------------------------- report


def machine() -> dict:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "ram_gb": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def ratio(a: float | None, b: float | None, digits: int = 2) -> str:
    if a is None or b is None or b == 0:
        return "–"
    return f"{a / b:.{digits}f}×"


def num(value: float | None, fmt: str = ".0f") -> str:
    return "–" if value is None else format(value, fmt)


def totals(target: Target) -> dict:
    levels = list(target.levels.values())
    wall = sum(x.wall for x in levels)
    cpu = sum(x.server_cpu for x in levels)
    tokens = sum(x.tokens for x in levels)
    answer_seconds = sum(x.answer_seconds or 0 for x in levels)
    writes = sum(x.db_writes or 0 for x in levels)
    sql_levels = [x for x in levels if x.sql is not None]
    sql_writes = sum(x.sql_writes or 0 for x in sql_levels)
    transactions = sum(x.transactions or 0 for x in sql_levels)
    sql_seconds = sum(x.answer_seconds or 0 for x in sql_levels)
    sql_answers = sum(x.completed for x in sql_levels)
    biggest = max(levels, key=lambda x: x.n) if levels else None
    answer_wall = sum(x.answer_wall for x in levels)
    return {
        "cpu_ms_per_answer_second": 1e3 * cpu / answer_wall if answer_wall else None,
        "answers_per_core": answer_wall / cpu if cpu else None,
        "completed": sum(x.completed for x in levels),
        "failed": sum(x.failed for x in levels),
        "cpu_pct": 100 * cpu / wall if wall else None,
        "cpu_us_per_token": 1e6 * cpu / tokens if tokens else None,
        "writes_per_answer_second": writes / answer_seconds if answer_seconds else None,
        "writes_per_answer": writes / sum(x.completed for x in levels) if levels and writes else None,
        "sql_writes_per_answer_second": sql_writes / sql_seconds if sql_seconds else None,
        "sql_writes_per_answer": sql_writes / sql_answers if sql_answers else None,
        "transactions_per_answer_second": transactions / sql_seconds if sql_seconds else None,
        "transactions_per_answer": transactions / sql_answers if sql_answers else None,
        "rss_start_mb": target.rss_start_kb / 1024,
        "rss_rest_mb": target.rss_rest_kb / 1024,
        "rss_per_stream_kb": (biggest.rss_peak_kb - target.rss_rest_kb) / biggest.n if biggest else None,
        "rss_per_stream_n": biggest.n if biggest else None,
        "wall": wall,
    }


def report(args, argv: list[str], product: Target, baseline: Target, replay: dict, info: dict) -> tuple[str, dict]:
    p1, b1 = product.levels.get(1), baseline.levels.get(1)

    def alone(kind: str, level: Level | None) -> float | None:
        if level is None:
            return None
        return {
            "p50": lambda: pct(level.live, 50),
            "p99": lambda: level.p99,
            "max": lambda: max(level.live, default=None),
            "ttft": lambda: pct(level.ttft_added, 50),
        }[kind]()

    pt, bt = totals(product), totals(baseline)
    rate_check = info.get("rate_check") or {}
    warnings = []
    for target in (product, baseline):
        for level in target.levels.values():
            if level.cpu_pct(level.client_cpu) > 80:
                warnings.append(
                    f"{target.name} N={level.n}: the load generator used {level.cpu_pct(level.client_cpu):.0f}% of a core: "
                    "it may be the bottleneck at this level."
                )
            if level.cpu_pct(level.stub_cpu) > 80:
                warnings.append(
                    f"{target.name} N={level.n}: the stub used {level.cpu_pct(level.stub_cpu):.0f}% of a core "
                    "(latency is measured from actual emission, so not inflated, but it competes for the cores)."
                )
    cap_ratio = product.capacity / baseline.capacity if baseline.capacity else None

    def yes(ok: bool | None) -> str:
        return "–" if ok is None else ("yes" if ok else "**no**")

    def cap_text(t: Target) -> str:
        if t.first_fail is None:
            return f"≥ {t.capacity} (none failed up to --max-n)"
        return f"**{t.capacity}** (fails at {t.first_fail})"

    p_alone_p99, b_alone_p99 = alone("p99", p1), alone("p99", b1)
    replay_ok = replay.get("median_ms") is not None
    rows = [
        (
            f"One answer alone ({args.alone_rounds} in a row): added latency per token, p50 (ms)",
            ms(alone("p50", p1), 2),
            ms(alone("p50", b1), 2),
            ratio(alone("p50", p1), alone("p50", b1)),
            "",
            "",
        ),
        (
            "One answer alone: added latency per token, p99 (ms)",
            ms(p_alone_p99, 2),
            ms(b_alone_p99, 2),
            ratio(p_alone_p99, b_alone_p99),
            f"< {TARGET_ALONE_P99_MS}",
            yes(None if p_alone_p99 is None else p_alone_p99 * 1000 < TARGET_ALONE_P99_MS),
        ),
        ("One answer alone: added latency per token, max (ms)", ms(alone("max", p1), 2), ms(alone("max", b1), 2), ratio(alone("max", p1), alone("max", b1)), "", ""),
        (
            "One answer alone: time to first token minus the stub's own, median (ms)",
            ms(alone("ttft", p1)),
            ms(alone("ttft", b1)),
            ratio(alone("ttft", p1), alone("ttft", b1)),
            "",
            "",
        ),
        (
            f"Capacity: concurrent answers with p99 < {args.p99_limit:g} ms at {args.rate:g} tokens/s",
            cap_text(product),
            cap_text(baseline),
            "–" if cap_ratio is None else f"**{cap_ratio:.2f}×**",
            f"ratio ≥ {TARGET_CAPACITY_RATIO:g}",
            yes(None if cap_ratio is None else cap_ratio >= TARGET_CAPACITY_RATIO),
        ),
        ("Answers completed / failed (whole run)", f"{pt['completed']} / {pt['failed']}", f"{bt['completed']} / {bt['failed']}", "", "failed = 0", yes(pt["failed"] == 0 and bt["failed"] == 0)),
        (
            "Database write transactions (commits) per answer-second: every one the process made "
            "(a prompt's rows, one batch of streaming text for all answers, an answer's end)",
            num(pt["transactions_per_answer_second"], ".2f") + f" ({num(pt['transactions_per_answer'], '.1f')} per answer)",
            "0 (no database)",
            "",
            f"≤ {TARGET_DB_WRITES}",
            yes(None if pt["transactions_per_answer_second"] is None else pt["transactions_per_answer_second"] <= TARGET_DB_WRITES),
        ),
        (
            "Database write statements per answer-second: every INSERT/UPDATE/DELETE (a batch's one statement once)",
            num(pt["sql_writes_per_answer_second"], ".2f") + f" ({num(pt['sql_writes_per_answer'], '.1f')} per answer)",
            "0",
            "",
            "",
            "",
        ),
        (
            "Writes of an answer's own row per answer-second: `db_writes` of its log line (each batch its text was in, "
            "its end); at least one per 250 ms of streaming, the loss bound of the design",
            num(pt["writes_per_answer_second"], ".2f") + f" ({num(pt['writes_per_answer'], '.1f')} per answer)",
            "0",
            "",
            "",
            "",
        ),
        (
            f"The same at {4 * args.rate:g} tokens/s (N = 10, {4 * args.tokens} tokens: the same length in time): "
            "transactions / statements / an answer's own row",
            f"{num(rate_check.get('transactions_per_answer_second'), '.2f')} / "
            f"{num(rate_check.get('sql_writes_per_answer_second'), '.2f')} / "
            f"{num(rate_check.get('db_writes_per_answer_second'), '.2f')}",
            "–",
            "",
            "independent of token rate",
            "",
        ),
        (
            f"Replay of a finished {replay.get('events', 0):,}-event answer from after=0, request to terminal frame: median / min / max of {replay.get('repeats', 0)} (ms)",
            f"{replay.get('median_ms')} / {replay.get('min_ms')} / {replay.get('max_ms')}" if replay_ok else str(replay.get("error") or replay.get("errors")),
            "– (no log)",
            "",
            f"< {TARGET_REPLAY_MS}",
            yes(None if not replay_ok else replay["median_ms"] < TARGET_REPLAY_MS),
        ),
        ("Server RSS before any request (MB)", f"{pt['rss_start_mb']:.1f}", f"{bt['rss_start_mb']:.1f}", ratio(pt["rss_start_mb"], bt["rss_start_mb"]), "", ""),
        ("Server RSS at rest, after warm-up (MB)", f"{pt['rss_rest_mb']:.1f}", f"{bt['rss_rest_mb']:.1f}", ratio(pt["rss_rest_mb"], bt["rss_rest_mb"]), "", ""),
        (
            f"Server RSS per open stream: (peak in the largest level − rest) / N, N = {pt['rss_per_stream_n']} / {bt['rss_per_stream_n']} (KB)",
            num(pt["rss_per_stream_kb"]),
            num(bt["rss_per_stream_kb"]),
            ratio(pt["rss_per_stream_kb"], bt["rss_per_stream_kb"]),
            "",
            "",
        ),
        ("Server CPU over all levels (% of one core)", num(pt["cpu_pct"]), num(bt["cpu_pct"]), ratio(pt["cpu_pct"], bt["cpu_pct"]), "", ""),
        (
            "Server CPU per answer-second, all levels (ms; answer-second = an answer open for one second, setup included)",
            num(pt["cpu_ms_per_answer_second"], ".1f"),
            num(bt["cpu_ms_per_answer_second"], ".1f"),
            ratio(pt["cpu_ms_per_answer_second"], bt["cpu_ms_per_answer_second"]),
            "",
            "",
        ),
        (
            "CPU-bound ceiling, derived: concurrent answers one core would carry at 100% busy (1000 ÷ the row above)",
            num(pt["answers_per_core"], ".1f"),
            num(bt["answers_per_core"], ".1f"),
            ratio(pt["answers_per_core"], bt["answers_per_core"]),
            "",
            "",
        ),
        ("Server CPU per token delivered, all levels (µs)", num(pt["cpu_us_per_token"]), num(bt["cpu_us_per_token"]), ratio(pt["cpu_us_per_token"], bt["cpu_us_per_token"]), "", ""),
        (
            f"Answers one at a time: server CPU of an answer besides its tokens (mean of {args.cost_answers} 1-token answers, ms)",
            num(product.costs.get("answer_ms"), ".1f"),
            num(baseline.costs.get("answer_ms"), ".1f"),
            ratio(product.costs.get("answer_ms"), baseline.costs.get("answer_ms")),
            "",
            "",
        ),
        (
            f"Answers one at a time: server CPU per token ({COST_TOKENS}-token answers at {COST_RATE} tokens/s, µs)",
            num(product.costs.get("token_us")),
            num(baseline.costs.get("token_us")),
            ratio(product.costs.get("token_us"), baseline.costs.get("token_us")),
            "",
            "",
        ),
    ]

    out = []
    out.append("# Benchmarks: what the server adds to a streamed answer, and how many answers it carries\n")
    out.append("Produced by `bench/run.py` (method in its docstring, summarised at the end).\n")
    out.append("| | |\n|---|---|")
    out.append(f"| Command | `{' '.join(['.venv/bin/python -m bench.run', *map(shlex.quote, argv)])}` |")
    out.append(f"| Date | {info['date']} |")
    m = info["machine"]
    out.append(f"| Machine | {m['nproc']} CPUs ({m['cpu']}), {m['ram_gb']} GB RAM, Linux {m['kernel']}, Python {m['python']} |")
    out.append(
        f"| Load | shared with other engineers' test runs: load average {info['load_start']} at start, {info['load_end']} at end; "
        f"CPU pressure and the client's loop lag per level below. Figures are noisy |"
    )
    out.append(
        f"| Answers | {args.tokens} tokens at {args.rate:g} tokens/s ({args.tokens / args.rate:.1f} s); a level of N starts "
        f"N answers spread over {args.ramp:g} s; a failed level is run again {args.confirm}×, up to twice more while "
        f"the load generator's own loop lag p99 is over {args.max_lag:g} ms |"
    )
    out.append(f"| Product app | `{info['product_app']}` |")
    out.append(f"| Run time | {info['run_seconds']:.0f} s |")
    out.append("")
    out.append("## Summary\n")
    out.append("| Figure | Product | Baseline relay | Product ÷ baseline | Target | Met |")
    out.append("|---|---|---|---|---|---|")
    for row in rows:
        out.append("| " + " | ".join(row) + " |")
    out.append("")
    if warnings:
        out.append("**Warnings**\n")
        out.extend(f"- {w}" for w in warnings)
        out.append("")
    out.append("## Levels\n")
    out.append(
        "Latency: added latency of the tokens emitted once the stream was established; *all p99* also counts the "
        "tokens replayed on connect. *TTFT+*: time to first token minus the stub's own, median / max over the answers. "
        "CPU: % of one core over the level's wall time. *PSI*: share of the level's time some task on the machine "
        "waited for a CPU. *Lag*: p99 of the load generator's own event-loop lag. *Tries*: runs of the level (a failed "
        "level is run again, the best run is kept). DB writes per answer-second: write transactions of the process / writes of an answer's own row (log field).\n"
    )
    out.append(
        "| Target | N | Tries | OK | Failed | p50 ms | p99 ms | max ms | all p99 ms | TTFT+ ms | Server CPU % | µs/token | Client CPU % | Stub CPU % | PSI % | Lag ms | Peak RSS MB | DB commits / row writes per answer-s | Pass |"
    )
    out.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for target in (product, baseline):
        for n in sorted(target.levels):
            x = target.levels[n]
            d = x.as_dict()
            writes = "–"
            if d["db_writes_per_answer_second"] is not None:
                writes = f"{num(d['transactions_per_answer_second'], '.2f')} / {d['db_writes_per_answer_second']}"
            out.append(
                f"| {target.name} | {n}{' ×' + str(x.rounds) if x.rounds > 1 else ''} | {x.tries} | {x.completed} | {x.failed} | "
                f"{ms(pct(x.live, 50), 2)} | {ms(x.p99, 2)} | {ms(max(x.live, default=None), 2)} | {ms(pct(x.all_tokens, 99), 2)} | "
                f"{ms(pct(x.ttft_added, 50))} / {ms(max(x.ttft_added, default=None))} | "
                f"{d['server_cpu_pct']:.0f} | {num(d['server_cpu_us_per_token'])} | {d['client_cpu_pct']:.0f} | {d['stub_cpu_pct']:.0f} | "
                f"{num(d['cpu_pressure_pct'])} | {num(d['client_loop_lag_p99_ms'], '.1f')} | {d['rss_peak_mb']:.0f} | {writes} | "
                f"{'yes' if x.passed else 'no'}{' (client lagged)' if x.noisy(args.max_lag / 1000) else ''} |"
            )
    out.append("")
    common = sorted(set(product.levels) & set(baseline.levels))
    if common:
        out.append("## Product ÷ baseline at the same N\n")
        out.append("| N | p99 product / baseline (ms) | p99 ratio | Server CPU product / baseline (%) | CPU ratio |")
        out.append("|---|---|---|---|---|")
        for n in common:
            p, b = product.levels[n], baseline.levels[n]
            pc, bc = p.cpu_pct(p.server_cpu), b.cpu_pct(b.server_cpu)
            out.append(f"| {n} | {ms(p.p99, 2)} / {ms(b.p99, 2)} | {ratio(p.p99, b.p99)} | {pc:.0f} / {bc:.0f} | {ratio(pc, bc)} |")
        out.append("")
    sql_levels = [x for x in product.levels.values() if x.sql]
    if sql_levels:
        merged: dict[str, int] = {}
        for x in sql_levels:
            for k, v in x.sql.items():
                merged[k] = merged.get(k, 0) + v
        answers = sum(x.completed for x in sql_levels)
        out.append("## SQL statements per product answer\n")
        out.append(
            "Counted in the daphne process over all levels (bench/product_asgi.py), divided by the answers completed; "
            "WRITE sums the INSERT/UPDATE/DELETE statements, TRANSACTION counts the write transactions.\n"
        )
        out.append("| " + " | ".join(sorted(merged)) + " |")
        out.append("|" + "---|" * len(merged))
        out.append("| " + " | ".join(f"{merged[k] / answers:.1f}" for k in sorted(merged)) + " |")
        out.append("")
    errors = [f"{t.name} N={n}: {e}" for t in (product, baseline) for n, x in sorted(t.levels.items()) for e in x.errors()]
    errors += [f"replay: {e}" for e in replay.get("errors", [])]
    if errors:
        out.append("## Failures\n")
        out.extend(f"- {e}" for e in errors[:30])
        out.append("")
    out.append("## Method\n")
    out.append(
        "- **Stub** (`bench/stub.py`): an OpenAI-compatible streaming endpoint in a process of its own (its own GIL "
        "and core time: neither it nor the client delays the other's clock reads). Each token's text is "
        "`t=<time.time() at emission>;` (the first also carries `r=<request arrival>;`): the product forwards text, "
        "not the chunk's JSON, so the emission time rides in the text. Tokens are due on an absolute schedule.\n"
        "- **Product**: daphne started by a `tests/live.py` `LiveServer` with a fresh SQLite file, `OPENAI_BASE_URL` "
        "at the stub, the production timing defaults (flush 0.25 s, heartbeat 2 s, stream poll 3 s) and one user "
        "whose `CHAT_MAX_CONCURRENT_ANSWERS` / `CHAT_PROMPTS_PER_MINUTE` / `CHAT_MAX_STREAMS_PER_USER` are raised; it logs in once as a browser does "
        "(GET login, POST credentials); each answer is POST /c/new/ (htmx; it answers with the exchange's fragment), "
        "then GET of the SSE URL in that fragment. `bench.product_asgi` is `chatproject.asgi` plus a count of SQL statements.\n"
        "- **Baseline** (`bench/baseline_relay.py`): a bare ASGI app under the same daphne command relaying the "
        "same stub stream with the same `openai.AsyncOpenAI` client, one SSE frame per delta.\n"
        "- **Client** (`bench/client.py`): one asyncio process; SSE read from raw sockets, timestamped as each read "
        "returns. Added latency = receive time − emission time, per token even when frames carry several.\n"
        "- **Capacity**: N = 1, 5, 10, 20, 40, ... then bisection; product and baseline levels alternate; a level "
        "passes with p99 under the limit and no failed answer; a failed level is run again before it counts, and "
        "again while the load generator's own event loop lagged (then the machine, not the server, was the limit).\n"
        "- **Database writes**: write transactions (commits) counted in the daphne process (a BEGIN, or a write "
        "made outside a transaction), over the seconds the answers were open (`duration_s` of their log lines); "
        "the statements the same way; and each answer's own `db_writes` (the batches of streaming text its row "
        "was in, plus its end). Streaming text of all answers is written by one batch per 250 ms, so commits "
        "follow the clock while rows follow the answers.\n"
        "- **Memory**: VmRSS of the daphne process. **CPU**: utime + stime from /proc/<pid>/stat (10 ms ticks).\n"
        "- **Answers one at a time**: after warm-up and before the levels, 1-token answers in a row (what an "
        f"answer costs besides its tokens) and {COST_TOKENS}-token answers at {COST_RATE} tokens/s (what a token "
        "adds: the difference over the extra tokens); server CPU over the answers, no queueing in it.\n"
        "- **Replay**: an answer of 1,999 deltas + done streamed fast and read to its end, then its stream URL "
        "requested again with `after=0`: time from sending the request to receiving the terminal frame, with every "
        "token checked (the events are still in the in-memory log)."
    )
    out.append("")
    text = "\n".join(out)
    data = {
        "command": ["python", "-m", "bench.run", *argv],
        "info": info,
        "args": vars(args),
        "product": {"capacity": product.capacity, "first_fail": product.first_fail, "totals": pt, "levels": [x.as_dict() for _, x in sorted(product.levels.items())]},
        "baseline": {"capacity": baseline.capacity, "first_fail": baseline.first_fail, "totals": bt, "levels": [x.as_dict() for _, x in sorted(baseline.levels.items())]},
        "capacity_ratio": cap_ratio,
        "costs": {"product": product.costs, "baseline": baseline.costs},
        "replay": replay,
        "warnings": warnings,
    }
    return text, data


NOTES_MARKER = "<!-- Written by hand: bench/run.py keeps everything from this line on when it rewrites the file. -->"


def kept_notes(path: Path) -> str:
    """Hand-written notes at the end of the previous report survive a new run."""
    try:
        previous = path.read_text()
    except OSError:
        return ""
    at = previous.find(NOTES_MARKER)
    return "" if at < 0 else "\n" + previous[at:]


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str]):
    parser = argparse.ArgumentParser(description="Benchmark of the streaming path against a bare relay.")
    parser.add_argument("--quick", action="store_true", help="smoke run: N = 1 and 2, 20 tokens, no bisection, no retries")
    parser.add_argument("--rate", type=float, default=50, help="tokens per second per answer (50)")
    parser.add_argument("--tokens", type=int, default=None, help="tokens per answer (120; 20 with --quick)")
    parser.add_argument("--max-n", type=int, default=320, help="largest N tried (320)")
    parser.add_argument("--ramp", type=float, default=1.0, help="seconds over which a level's answers start (1)")
    parser.add_argument("--p99-limit", type=float, default=100, help="capacity: p99 added latency limit in ms (100)")
    parser.add_argument("--bisect", type=int, default=3, help="bisection steps after the ladder (3)")
    parser.add_argument("--confirm", type=int, default=1, help="extra runs of a failed level before it counts (1)")
    parser.add_argument(
        "--max-lag", type=float, default=20, help="client loop-lag p99 (ms) above which a failed level is run again (20)"
    )
    parser.add_argument("--alone-rounds", type=int, default=None, help="answers in a row at N=1 (3; 1 with --quick)")
    parser.add_argument("--replay-events", type=int, default=None, help="events of the replayed answer (2000; 500 with --quick)")
    parser.add_argument("--replay-repeats", type=int, default=None, help="replays measured (7; 3 with --quick)")
    parser.add_argument("--settle", type=float, default=0.5, help="pause between levels, s (0.5)")
    parser.add_argument("--cost-answers", type=int, default=None, help="1-token answers one at a time (100; 10 with --quick)")
    parser.add_argument("--plain-product", action="store_true", help="serve chatproject.asgi itself (no SQL count)")
    parser.add_argument("--out", default="docs/benchmarks.md")
    parser.add_argument("--json", default=None, help="also write the figures as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (databases, server logs)")
    args = parser.parse_args(argv)
    if args.tokens is None:
        args.tokens = 20 if args.quick else 120
    if args.alone_rounds is None:
        args.alone_rounds = 1 if args.quick else 3
    if args.replay_events is None:
        args.replay_events = 500 if args.quick else 2000
    if args.replay_repeats is None:
        args.replay_repeats = 3 if args.quick else 7
    if args.cost_answers is None:
        args.cost_answers = 10 if args.quick else 100
    if args.quick:
        args.bisect = 0
        args.confirm = 0
        args.settle = min(args.settle, 0.2)
    return args


async def _main(args, argv: list[str]) -> int:
    started = time.monotonic()
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "load_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "product_app": "chatproject.asgi:application" if args.plain_product else "bench.product_asgi:application",
    }
    ladder = [1, 2] if args.quick else [n for n in LADDER if n <= args.max_n]
    if not args.quick and ladder[-1] < args.max_n:
        ladder.append(args.max_n)
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    stub = Stub(work / "stub.log")
    env = {
        "OPENAI_BASE_URL": stub.base_url,
        "OPENAI_API_KEY": "bench",
        "CHAT_MODEL": "bench-model",
        # The embedded defaults (a fresh SQLite file, the in-process log), even
        # when the calling shell points at PostgreSQL and Redis.
        "DATABASE_URL": "",
        "REDIS_URL": "",
        # The product's own defaults, not the test suite's fast timers.
        "CHAT_HEARTBEAT_STALE": "15",
        "CHAT_HEARTBEAT_INTERVAL": "2",
        "CHAT_STREAM_POLL": "3",
        "CHAT_MAX_RETRIES": "0",
        "CHAT_MAX_CONCURRENT_ANSWERS": "100000",
        "CHAT_PROMPTS_PER_MINUTE": "100000",
        "CHAT_MAX_STREAMS_PER_USER": "100000",
    }
    servers: list[LiveServer] = []
    browser = None
    try:
        (work / "product").mkdir()
        (work / "baseline").mkdir()
        # The baseline starts while the product's database is prepared.
        baseline_server = AppServer(work / "baseline", "bench.baseline_relay:app", env)
        servers.append(baseline_server)
        baseline_server.spawn()
        if args.plain_product:
            product_server = LiveServer(work / "product", env)
        else:
            product_server = AppServer(work / "product", info["product_app"], env)
        servers.append(product_server)
        prepare_database(product_server)
        product_server.start()
        baseline_server.start()
        print(f"servers up after {time.monotonic() - started:.1f} s", flush=True)
        browser = Browser(product_server.url)
        product = Target("product", product_server, browser, stub, counts_db=True, counts_sql=not args.plain_product)
        baseline = Target("baseline", baseline_server, RelayClient(baseline_server.url), stub, counts_db=False, counts_sql=False)
        for target in (product, baseline):
            target.rss_start_kb = rss_kb(target.pid)
        await browser.login(USER, PASSWORD)
        for target in (product, baseline):
            await warm_up(target, args)
        print(f"logged in and warmed up after {time.monotonic() - started:.1f} s", flush=True)
        for target in (product, baseline):
            await measure_costs(target, args)
        await find_capacities([product, baseline], args, ladder)
        print(f"levels done after {time.monotonic() - started:.1f} s", flush=True)
        # Database writes must not follow the token rate: the same answer length
        # in time, four times the tokens.
        faster = argparse.Namespace(**{**vars(args), "rate": args.rate * 4, "tokens": args.tokens * 4})
        info["rate_check"] = (await run_level(product, 10, faster)).as_dict()
        replay = await measure_replay(browser, product_server, args)
        print(
            f"  replay of {args.replay_events} events: median {replay.get('median_ms')} ms, max {replay.get('max_ms')} ms, "
            f"{replay.get('frames')} frames {replay.get('errors') or replay.get('error') or ''}",
            flush=True,
        )
        info["load_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
        info["run_seconds"] = time.monotonic() - started
        text, data = report(args, argv, product, baseline, replay, info)
        print()
        print(text)
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + kept_notes(out))
        if args.json:
            Path(args.json).write_text(json.dumps(data, indent=2, default=str))
        if args.keep:
            print(f"work directory kept: {work}")
        return 0
    finally:
        if browser is not None:
            await browser.aclose()
        for server in servers:
            server.stop()
        stub.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    return asyncio.run(_main(args, argv))


if __name__ == "__main__":
    sys.exit(main())
