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
Live Markdown (bench/live_markdown.py, in a process of its own): bytes sent for
a long Markdown answer and a 20 KB paragraph against their final HTML, and the
server's CPU per token around token 100 and around token 10,000.
Answers one at a time (before the levels): server CPU of a 1-token answer and
what each token adds, without any queueing.

The parts, by job: bench/processes.py starts the stub and the servers and reads
/proc; bench/measure.py runs the levels and records what they measure;
bench/report.py writes docs/benchmarks.md and prints it. This module is the
command: its options and the order of a run.
"""

import argparse
import asyncio
import datetime
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.client import Browser, RelayClient
from bench.live_markdown import measure_apart
from bench.load import measure_burst, measure_long, measure_memory_cycle
from bench.measure import (
    LADDER,
    Target,
    find_capacities,
    measure_alone,
    measure_costs,
    measure_replay,
    run_level,
    warm_up,
)
from bench.processes import PASSWORD, USER, Stub, start_servers
from bench.production import Production, ProductionTarget
from bench.report import machine, report, write
from tests.live import LiveServer


def parse_args(argv: list[str]):
    parser = argparse.ArgumentParser(description="Benchmark of the streaming path against a bare relay.")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: tiny sizes everywhere, no bisection, no retries"
    )
    parser.add_argument("--rate", type=float, default=50, help="tokens per second per answer (50)")
    parser.add_argument(
        "--tokens", type=int, default=None, help="tokens per answer under steady load (600; 40 with --quick)"
    )
    parser.add_argument(
        "--window", type=float, default=None, help="seconds measured at each steady level (15; 3 with --quick)"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the random arrivals (1)")
    parser.add_argument("--max-n", type=int, default=320, help="largest N tried (320)")
    parser.add_argument("--ramp", type=float, default=1.0, help="seconds over which a ramp level's answers start (1)")
    parser.add_argument("--p99-limit", type=float, default=100, help="capacity: p99 added latency limit in ms (100)")
    parser.add_argument(
        "--ttft-limit", type=float, default=500, help="capacity: time to first token p95 limit in ms (500)"
    )
    parser.add_argument("--bisect", type=int, default=3, help="bisection steps after the ladder (3)")
    parser.add_argument("--confirm", type=int, default=1, help="extra runs of a failed level before it counts (1)")
    parser.add_argument(
        "--max-lag",
        type=float,
        default=20,
        help="client loop-lag p99 (ms) above which a failed level is run again (20)",
    )
    parser.add_argument("--alone-rounds", type=int, default=None, help="answers in a row at N=1 (3; 1 with --quick)")
    parser.add_argument(
        "--alone-tokens",
        type=int,
        default=None,
        help="tokens of the answers alone and of a burst (120; 20 with --quick)",
    )
    parser.add_argument(
        "--replay-events", type=int, default=None, help="events of the replayed answer (2000; 500 with --quick)"
    )
    parser.add_argument("--replay-repeats", type=int, default=None, help="replays measured (7; 3 with --quick)")
    parser.add_argument("--settle", type=float, default=0.5, help="pause between levels, s (0.5)")
    parser.add_argument(
        "--cost-answers", type=int, default=None, help="1-token answers one at a time (100; 10 with --quick)"
    )
    parser.add_argument(
        "--burst", type=int, default=None, help="answers of a burst, started within 1 s (50; 5 with --quick)"
    )
    parser.add_argument(
        "--burst-background", type=int, default=None, help="answers streaming when it comes (20; 3 with --quick)"
    )
    parser.add_argument(
        "--long-tokens", type=int, default=None, help="tokens of the long answer (11000; 1200 with --quick)"
    )
    parser.add_argument("--long-rate", type=float, default=1000, help="its tokens per second (1000)")
    parser.add_argument("--long-window", type=int, default=None, help="tokens per CPU window (1000; 200 with --quick)")
    parser.add_argument("--long-runs", type=int, default=None, help="long answers measured (3; 1 with --quick)")
    parser.add_argument(
        "--memory-streams", type=int, default=None, help="streams opened and closed (2000; 20 with --quick)"
    )
    parser.add_argument("--memory-open", type=int, default=None, help="of them open at once (500; 10 with --quick)")
    parser.add_argument("--memory-concurrency", type=int, default=16, help="streams being opened at once (16)")
    parser.add_argument(
        "--memory-seconds", type=float, default=None, help="how long each of those answers lasts (15; 3 with --quick)"
    )
    parser.add_argument("--no-production", action="store_true", help="skip the two-worker PostgreSQL + Redis run")
    parser.add_argument("--plain-product", action="store_true", help="serve chatproject.asgi itself (no SQL count)")
    parser.add_argument("--out", default="docs/benchmarks.md")
    parser.add_argument("--json", default=None, help="also write the figures as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (databases, server logs)")
    args = parser.parse_args(argv)
    defaults = {
        # option: (full run, --quick)
        "tokens": (600, 40),
        "window": (15.0, 3.0),
        "alone_rounds": (3, 1),
        "alone_tokens": (120, 20),
        "replay_events": (2000, 500),
        "replay_repeats": (7, 3),
        "cost_answers": (100, 10),
        "burst": (50, 5),
        "burst_background": (20, 3),
        "long_tokens": (11000, 1200),
        "long_window": (1000, 200),
        "long_runs": (3, 1),
        "memory_streams": (2000, 20),
        "memory_open": (500, 10),
        "memory_seconds": (15.0, 3.0),
    }
    for name, (full, quick) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    if args.quick:
        args.bisect = 0
        args.confirm = 0
        args.max_lag = float("inf")
        args.settle = min(args.settle, 0.2)
    return args


async def _embedded(args, work: Path, stub: Stub, info: dict, servers: list[LiveServer], clients: list) -> dict:
    """The embedded default (one daphne, SQLite, the in-process log) against the relay."""
    ladder = [5] if args.quick else [n for n in LADDER if n <= args.max_n]
    if not args.quick and ladder[-1] < args.max_n:
        ladder.append(args.max_n)
    product_server, baseline_server = start_servers(work, stub, info["product_app"], servers)
    browser = Browser(product_server.url)
    clients.append(browser)
    product = Target("product", product_server, browser, stub, counts_db=True, counts_sql=not args.plain_product)
    baseline = Target(
        "baseline", baseline_server, RelayClient(baseline_server.url), stub, counts_db=False, counts_sql=False
    )
    targets = (product, baseline)
    for target in targets:
        target.rss_start_kb = target.rss_kb()
    await browser.login(USER, PASSWORD)
    for target in targets:
        await warm_up(target, args)
    print(f"embedded: logged in and warmed up after {time.monotonic() - info['started']:.1f} s", flush=True)
    for target in targets:
        await measure_costs(target, args)
        await measure_alone(target, args)
    await find_capacities(list(targets), args, ladder)
    # Database writes must not follow the token rate: the same answer length
    # in time, four times the tokens.
    faster = argparse.Namespace(**{**vars(args), "rate": args.rate * 4, "tokens": args.alone_tokens * 4})
    info["rate_check"] = (await run_level(product, 10, faster)).as_dict()
    replay = await measure_replay(browser, product_server, args)
    print(f"  replay of {args.replay_events} events: {replay}", flush=True)
    shapes = {}
    for target in targets:
        shapes[target.name] = {
            "burst": await measure_burst(target, args),
            "long": await measure_long(target, args),
            "memory": await measure_memory_cycle(target, args),
        }
    for server in (product_server, baseline_server):
        server.stop()
    return {"product": product, "baseline": baseline, "replay": replay, "shapes": shapes}


async def _production(args, work: Path, stub: Stub, info: dict, clients: list, stops: list) -> dict:
    """Two workers on PostgreSQL + Redis: capacity, CPU of every process, a burst."""
    production = Production(work / "production", stub, info["product_app"])
    stops.append(production.stop)
    production.start()
    target = ProductionTarget(production, stub)
    clients.append(target.client)
    target.rss_start_kb = target.rss_kb()
    await target.client.login(USER, PASSWORD)
    await warm_up(target, args)
    print(f"production: up and warmed after {time.monotonic() - info['started']:.1f} s", flush=True)
    await measure_costs(target, args)
    ladder = [5] if args.quick else [n for n in LADDER if n <= args.max_n]
    await find_capacities([target], args, ladder)
    burst = await measure_burst(target, args)
    return {"target": target, "burst": burst}


async def _main(args, argv: list[str]) -> int:
    started = time.monotonic()
    info = {
        "started": started,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "load_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "product_app": "chatproject.asgi:application" if args.plain_product else "bench.product_asgi:application",
    }
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    stub = Stub(work / "stub.log")
    servers: list[LiveServer] = []
    clients: list = []
    stops: list = []
    try:
        embedded = await _embedded(args, work, stub, info, servers, clients)
        production = None if args.no_production else await _production(args, work, stub, info, clients, stops)
        info["live_markdown"] = measure_apart(quick=args.quick)
        print(
            "  live Markdown: fragments {fragments_over_final:.2f}× final HTML, CPU per token at 10,000 ÷ at 100 "
            "{cpu_late_over_early:.2f}".format(**info["live_markdown"]),
            flush=True,
        )
        info["load_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
        info["run_seconds"] = time.monotonic() - started
        text, data = report(args, argv, embedded, production, info)
        write(text, data, Path(args.out), args.json)
        if args.keep:
            print(f"work directory kept: {work}")
        return 0
    finally:
        for client in clients:
            await client.aclose()
        for server in servers:
            server.stop()
        for stop in stops:
            stop()
        stub.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    return asyncio.run(_main(args, argv))


if __name__ == "__main__":
    sys.exit(main())
