"""The report: docs/benchmarks.md (the summary against the issue's targets, every
level, product ÷ baseline, SQL per answer, failures, the method) and the same
figures as JSON. Hand-written notes at the end of the previous file survive.
"""

import json
import os
import platform
import shlex
from pathlib import Path

from bench.load_report import production_data, production_rows, production_section, shape_rows
from bench.measure import COST_RATE, COST_TOKENS, Level, Target, ms, pct

# Targets of the issue.
TARGET_ALONE_P99_MS = 10
TARGET_CAPACITY_RATIO = 1.2
TARGET_DB_WRITES = 4
TARGET_REPLAY_MS = 50
TARGET_LIVE_BYTES = 3
TARGET_LIVE_CPU_RATIO = 1.5

NOTES_MARKER = "<!-- Written by hand: bench/run.py keeps everything from this line on when it rewrites the file. -->"

# A row of the summary: figure, product, baseline, product ÷ baseline, target, met.
Row = tuple[str, str, str, str, str, str]


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


def yes(ok: bool | None) -> str:
    return "–" if ok is None else ("yes" if ok else "**no**")


def within(value: float | None, limit: float, *, at_least: bool = False) -> str:
    """Met or not, and by how much it was missed."""
    if value is None:
        return "–"
    if (value >= limit) if at_least else (value <= limit):
        return "yes"
    return f"**no**: {value / limit:.2f}× the {'floor' if at_least else 'limit'}"


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


def report(args, argv: list[str], embedded: dict, production: dict | None, info: dict) -> tuple[str, dict]:
    """The Markdown report and the JSON figures of a run."""
    product, baseline, replay = embedded["product"], embedded["baseline"], embedded["replay"]
    pt, bt = totals(product), totals(baseline)
    cap_ratio = product.capacity / baseline.capacity if baseline.capacity else None
    warnings = _warnings(product, baseline)
    rows = [
        *_alone_rows(args, product.alone, baseline.alone),
        *_capacity_rows(args, product, baseline, pt, bt, cap_ratio),
        *shape_rows(args, embedded["shapes"]),
        *production_rows(args, product, production),
        *_database_rows(args, pt, info.get("rate_check") or {}),
        _replay_row(replay),
        *_live_markdown_rows(info.get("live_markdown")),
        *_memory_rows(pt, bt),
        *_cpu_rows(args, product, baseline, pt, bt),
    ]
    out = [
        *_header(args, argv, info),
        *_summary(rows, warnings),
        *_levels(args, product, baseline),
        *_product_over_baseline(product, baseline),
        *production_section(args, product, production),
        *_sql_per_answer(product),
        *_failures(product, baseline, replay),
        *_method(),
    ]
    data = {
        "command": ["python", "-m", "bench.run", *argv],
        "info": info,
        "args": vars(args),
        "product": _target_data(product, pt),
        "baseline": _target_data(baseline, bt),
        "capacity_ratio": cap_ratio,
        "costs": {"product": product.costs, "baseline": baseline.costs},
        "replay": replay,
        "shapes": embedded["shapes"],
        "production": None if production is None else production_data(product, production),
        "warnings": warnings,
    }
    return "\n".join(out), data


def _target_data(target: Target, target_totals: dict) -> dict:
    return {
        "capacity": target.capacity,
        "first_fail": target.first_fail,
        "totals": target_totals,
        "levels": [x.as_dict() for _, x in sorted(target.levels.items())],
    }


def _warnings(product: Target, baseline: Target) -> list[str]:
    """Levels where the load generator or the stub may have been the limit."""
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
    return warnings


# --------------------------------------------------------------------------- summary rows


def _compared(label: str, product: float | None, baseline: float | None, show) -> Row:
    """A figure of both targets and their ratio, with no target of its own."""
    return (label, show(product), show(baseline), ratio(product, baseline), "", "")


def _alone(level: Level | None) -> dict[str, float | None]:
    """The figures of N = 1: one answer at a time, nothing queued behind it."""
    if level is None:
        return dict.fromkeys(("p50", "p99", "max", "ttft"))
    return {
        "p50": pct(level.live, 50),
        "p99": level.p99,
        "max": max(level.live, default=None),
        "ttft": pct(level.ttft_added, 50),
    }


def _alone_rows(args, p1: Level | None, b1: Level | None) -> list[Row]:
    p, b = _alone(p1), _alone(b1)

    def ms2(value: float | None) -> str:
        return ms(value, 2)

    return [
        _compared(
            f"One answer alone ({args.alone_rounds} in a row): added latency per token, p50 (ms)",
            p["p50"],
            b["p50"],
            ms2,
        ),
        (
            "One answer alone: added latency per token, p99 (ms)",
            ms(p["p99"], 2),
            ms(b["p99"], 2),
            ratio(p["p99"], b["p99"]),
            f"< {TARGET_ALONE_P99_MS}",
            yes(None if p["p99"] is None else p["p99"] * 1000 < TARGET_ALONE_P99_MS),
        ),
        _compared("One answer alone: added latency per token, max (ms)", p["max"], b["max"], ms2),
        _compared("One answer alone: time to first token minus the stub's own, median (ms)", p["ttft"], b["ttft"], ms),
    ]


def _capacity_text(target: Target) -> str:
    if target.first_fail is None:
        return f"≥ {target.capacity} (none failed up to --max-n)"
    return f"**{target.capacity}** (fails at {target.first_fail})"


def _capacity_rows(args, product: Target, baseline: Target, pt: dict, bt: dict, cap_ratio: float | None) -> list[Row]:
    return [
        (
            f"Capacity under steady load: concurrent answers ({args.tokens} tokens at {args.rate:g} tokens/s, Poisson "
            f"arrivals) with p99 added latency < {args.p99_limit:g} ms and time to first token p95 < {args.ttft_limit:g} ms",
            _capacity_text(product),
            _capacity_text(baseline),
            "–" if cap_ratio is None else f"**{cap_ratio:.2f}×**",
            f"ratio ≥ {TARGET_CAPACITY_RATIO:g}",
            within(cap_ratio, TARGET_CAPACITY_RATIO, at_least=True),
        ),
        (
            "Answers completed / failed (whole run)",
            f"{pt['completed']} / {pt['failed']}",
            f"{bt['completed']} / {bt['failed']}",
            "",
            "failed = 0",
            yes(pt["failed"] == 0 and bt["failed"] == 0),
        ),
    ]


def _database_rows(args, pt: dict, rate_check: dict) -> list[Row]:
    return [
        (
            "Database write transactions (commits) per answer-second: every one the process made "
            "(a prompt's rows, one batch of streaming text for all answers, an answer's end)",
            num(pt["transactions_per_answer_second"], ".2f")
            + f" ({num(pt['transactions_per_answer'], '.1f')} per answer)",
            "0 (no database)",
            "",
            f"≤ {TARGET_DB_WRITES}",
            yes(
                None
                if pt["transactions_per_answer_second"] is None
                else pt["transactions_per_answer_second"] <= TARGET_DB_WRITES
            ),
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
            f"The same at {4 * args.rate:g} tokens/s (N = 10 within {args.ramp:g} s, {4 * args.alone_tokens} tokens: "
            "as long in time as the answers alone): "
            "transactions / statements / an answer's own row",
            f"{num(rate_check.get('transactions_per_answer_second'), '.2f')} / "
            f"{num(rate_check.get('sql_writes_per_answer_second'), '.2f')} / "
            f"{num(rate_check.get('db_writes_per_answer_second'), '.2f')}",
            "–",
            "",
            "independent of token rate",
            "",
        ),
    ]


def _replay_row(replay: dict) -> Row:
    replay_ok = replay.get("median_ms") is not None
    return (
        f"Replay of a finished {replay.get('events', 0):,}-event answer from after=0, request to terminal frame: median / min / max of {replay.get('repeats', 0)} (ms)",
        f"{replay.get('median_ms')} / {replay.get('min_ms')} / {replay.get('max_ms')}"
        if replay_ok
        else str(replay.get("error") or replay.get("errors")),
        "– (no log)",
        "",
        f"< {TARGET_REPLAY_MS}",
        yes(None if not replay_ok else replay["median_ms"] < TARGET_REPLAY_MS),
    )


def _live_markdown_rows(live: dict | None) -> list[Row]:
    """Markdown rendered as it streams (bench/live_markdown.py): the product alone."""
    if not live:
        return []
    return [
        (
            f"Live Markdown, a {live['answer_tokens']:,}-token Markdown answer: bytes of the text_delta fragments ÷ "
            f"final HTML ({live['fragment_bytes']:,} ÷ {live['final_html_bytes']:,}); whole SSE frames in brackets",
            f"{live['fragments_over_final']:.2f} ({live['frames_over_final']:.2f})",
            "–",
            "",
            f"≤ {TARGET_LIVE_BYTES}",
            yes(live["fragments_over_final"] <= TARGET_LIVE_BYTES),
        ),
        (
            f"Live Markdown, one {live['paragraph_chars']:,}-character paragraph: fragment bytes ÷ final HTML "
            "(whole SSE frames)",
            f"{live['paragraph_fragments_over_final']:.2f} ({live['paragraph_frames_over_final']:.2f})",
            "–",
            "",
            "bounded",
            yes(live["paragraph_fragments_over_final"] <= TARGET_LIVE_BYTES),
        ),
        (
            f"Live Markdown: server CPU per token over {live['cpu_window_tokens']} tokens from token 100 / from token "
            f"{live['cpu_late_at']:,}, median of {live['runs']} (µs)",
            f"{live['cpu_us_per_token_at_100']:.1f} / {live['cpu_us_per_token_at_10000']:.1f} "
            f"(× {live['cpu_late_over_early']:.2f})",
            "–",
            "",
            f"× ≤ {TARGET_LIVE_CPU_RATIO}",
            yes(live["cpu_late_over_early"] <= TARGET_LIVE_CPU_RATIO),
        ),
    ]


def _memory_rows(pt: dict, bt: dict) -> list[Row]:
    def mb(value: float) -> str:
        return f"{value:.1f}"

    return [
        _compared("Server RSS before any request (MB)", pt["rss_start_mb"], bt["rss_start_mb"], mb),
        _compared("Server RSS at rest, after warm-up (MB)", pt["rss_rest_mb"], bt["rss_rest_mb"], mb),
        _compared(
            f"Server RSS at the largest steady level: (peak − rest) / N, N = {pt['rss_per_stream_n']} / "
            f"{bt['rss_per_stream_n']} (KB; finished answers' events kept in the process count too)",
            pt["rss_per_stream_kb"],
            bt["rss_per_stream_kb"],
            num,
        ),
    ]


def _cpu_rows(args, product: Target, baseline: Target, pt: dict, bt: dict) -> list[Row]:
    def num1(value: float | None) -> str:
        return num(value, ".1f")

    return [
        _compared("Server CPU over all levels (% of one core)", pt["cpu_pct"], bt["cpu_pct"], num),
        _compared(
            "Server CPU per answer-second, all levels (ms; answer-second = an answer open for one second, setup included)",
            pt["cpu_ms_per_answer_second"],
            bt["cpu_ms_per_answer_second"],
            num1,
        ),
        _compared(
            "CPU-bound ceiling, derived: concurrent answers one core would carry at 100% busy (1000 ÷ the row above)",
            pt["answers_per_core"],
            bt["answers_per_core"],
            num1,
        ),
        _compared(
            "Server CPU per token delivered, all levels (µs)", pt["cpu_us_per_token"], bt["cpu_us_per_token"], num
        ),
        _compared(
            f"Answers one at a time: server CPU of an answer besides its tokens (mean of {args.cost_answers} 1-token answers, ms)",
            product.costs.get("answer_ms"),
            baseline.costs.get("answer_ms"),
            num1,
        ),
        _compared(
            f"Answers one at a time: server CPU per token ({COST_TOKENS}-token answers at {COST_RATE} tokens/s, µs)",
            product.costs.get("token_us"),
            baseline.costs.get("token_us"),
            num,
        ),
    ]


# --------------------------------------------------------------------------- sections


def _header(args, argv: list[str], info: dict) -> list[str]:
    m = info["machine"]
    return [
        "# Benchmarks: what the server adds to a streamed answer, and how many answers it carries\n",
        "Produced by `bench/run.py` (method in its docstring, summarised at the end).\n",
        "| | |\n|---|---|",
        f"| Command | `{' '.join(['.venv/bin/python -m bench.run', *map(shlex.quote, argv)])}` |",
        f"| Date | {info['date']} |",
        f"| Machine | {m['nproc']} CPUs ({m['cpu']}), {m['ram_gb']} GB RAM, Linux {m['kernel']}, Python {m['python']} |",
        f"| Load | load average {info['load_start']} at start, {info['load_end']} at end; "
        f"CPU pressure and the client's loop lag per level below |",
        f"| Answers | steady load: {args.tokens} tokens at {args.rate:g} tokens/s ({args.tokens / args.rate:.1f} s); a "
        f"level of N has answers arrive at random (Poisson) at N ÷ {args.tokens / args.rate:g} per second, so N are open "
        f"on average, and measures {args.window:g} s once the load is steady; a failed level is run again "
        f"{args.confirm}×, up to twice more while the load generator's own loop lag p99 is over {args.max_lag:g} ms |",
        f"| Product app | `{info['product_app']}` |",
        f"| Run time | {info['run_seconds']:.0f} s |",
        "",
    ]


def _summary(rows: list[Row], warnings: list[str]) -> list[str]:
    out = [
        "## Summary\n",
        "| Figure | Product | Baseline relay | Product ÷ baseline | Target | Met |",
        "|---|---|---|---|---|---|",
    ]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    out.append("")
    if warnings:
        out.append("**Warnings**\n")
        out.extend(f"- {w}" for w in warnings)
        out.append("")
    return out


def _levels(args, product: Target, baseline: Target) -> list[str]:
    out = [
        "## Levels\n",
        "Latency: added latency of the tokens emitted once the stream was established; *all p99* also counts the "
        "tokens replayed on connect. *TTFT+*: time to first token (from the answer's first request) minus the stub's "
        "own, median / p95 / max over the answers that started in the window. All figures are of the measuring "
        "window (tokens emitted in it, CPU spent in it). CPU: % of one core. *PSI*: share of the level's time some task on the machine "
        "waited for a CPU. *Lag*: p99 of the load generator's own event-loop lag. *Tries*: runs of the level (a failed "
        "level is run again, the best run is kept). DB writes per answer-second: write transactions of the process / writes of an answer's own row (log field).\n",
        "| Target | N | Tries | OK | Failed | p50 ms | p99 ms | max ms | all p99 ms | TTFT+ ms | Server CPU % | µs/token | Client CPU % | Stub CPU % | PSI % | Lag ms | Peak RSS MB | DB commits / row writes per answer-s | Pass |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for target in (product, baseline):
        alone = [target.alone] if target.alone else []
        out += [_level_row(args, target.name, x) for x in [*alone, *(target.levels[n] for n in sorted(target.levels))]]
    out.append("")
    return out


def _level_row(args, name: str, x: Level) -> str:
    d = x.as_dict()
    writes = "–"
    if d["db_writes_per_answer_second"] is not None:
        writes = f"{num(d['transactions_per_answer_second'], '.2f')} / {d['db_writes_per_answer_second']}"
    return (
        f"| {name} | {x.n}{' ×' + str(x.rounds) if x.rounds > 1 else ''} | {x.tries} | {x.completed} | {x.failed} | "
        f"{ms(pct(x.live, 50), 2)} | {ms(x.p99, 2)} | {ms(max(x.live, default=None), 2)} | {ms(pct(x.all_tokens, 99), 2)} | "
        f"{ms(pct(x.ttft_added, 50))} / {ms(x.ttft_p95)} / {ms(max(x.ttft_added, default=None))} | "
        f"{d['server_cpu_pct']:.0f} | {num(d['server_cpu_us_per_token'])} | {d['client_cpu_pct']:.0f} | {d['stub_cpu_pct']:.0f} | "
        f"{num(d['cpu_pressure_pct'])} | {num(d['client_loop_lag_p99_ms'], '.1f')} | {d['rss_peak_mb']:.0f} | {writes} | "
        f"{'yes' if x.passed else 'no'}{' (client lagged)' if x.noisy(args.max_lag / 1000) else ''} |"
    )


def _product_over_baseline(product: Target, baseline: Target) -> list[str]:
    common = sorted(set(product.levels) & set(baseline.levels))
    if not common:
        return []
    out = [
        "## Product ÷ baseline at the same N\n",
        "| N | p99 product / baseline (ms) | p99 ratio | Server CPU product / baseline (%) | CPU ratio |",
        "|---|---|---|---|---|",
    ]
    for n in common:
        p, b = product.levels[n], baseline.levels[n]
        pc, bc = p.cpu_pct(p.server_cpu), b.cpu_pct(b.server_cpu)
        out.append(
            f"| {n} | {ms(p.p99, 2)} / {ms(b.p99, 2)} | {ratio(p.p99, b.p99)} | {pc:.0f} / {bc:.0f} | {ratio(pc, bc)} |"
        )
    out.append("")
    return out


def _sql_per_answer(product: Target) -> list[str]:
    sql_levels = [x for x in product.levels.values() if x.sql]
    if not sql_levels:
        return []
    merged: dict[str, int] = {}
    for x in sql_levels:
        for k, v in x.sql.items():
            merged[k] = merged.get(k, 0) + v
    answers = sum(x.completed for x in sql_levels)
    return [
        "## SQL statements per product answer\n",
        "Counted in the daphne process over all levels (bench/product_asgi.py), divided by the answers completed; "
        "WRITE sums the INSERT/UPDATE/DELETE statements, TRANSACTION counts the write transactions.\n",
        "| " + " | ".join(sorted(merged)) + " |",
        "|" + "---|" * len(merged),
        "| " + " | ".join(f"{merged[k] / answers:.1f}" for k in sorted(merged)) + " |",
        "",
    ]


def _failures(product: Target, baseline: Target, replay: dict) -> list[str]:
    errors = [
        f"{t.name} N={n}: {e}" for t in (product, baseline) for n, x in sorted(t.levels.items()) for e in x.errors()
    ]
    errors += [f"replay: {e}" for e in replay.get("errors", [])]
    if not errors:
        return []
    return ["## Failures\n", *(f"- {e}" for e in errors[:30]), ""]


def _method() -> list[str]:
    return [
        "## Method\n",
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
        "- **Live Markdown** (`bench/live_markdown.py`): in a process of its own, each token of a long Markdown answer "
        "(sections of a heading, paragraphs with inline markup, a list, a code block, a table or a quote; split as a "
        "tokenizer splits words) and of a 20 KB paragraph through the generation's `LiveMarkdown.feed`, the event "
        "and its JSON, and the stream view's fragment and frame; process CPU time per token, compared over three "
        "sections' worth of tokens from token 100 and from token 10,000; bytes of the fragments and of whole SSE "
        "frames against the final render. The rest of a token's path is the figures above.\n"
        "- **Capacity** (steady load): N = 10, 20, 40, 80, ... then bisection; a level of N has answers arrive "
        "as a Poisson process at N ÷ (answer length) per second; after one answer length of arrivals the next "
        "window is measured, then arrivals stop and the open answers finish (they count in completed/failed). "
        "Product and baseline levels alternate; a level passes with p99 added latency and TTFT p95 under their "
        "limits and no failed answer; a failed level is run again before it counts, and again while the load "
        "generator's own event loop lagged (then the machine, not the server, was the limit).\n"
        "- **Burst**: on the warm server, answers already streaming (started over 2 s, then 2 s more), then the "
        "burst's answers start evenly within one second: their TTFT+, and the streaming answers' added latency "
        "for tokens emitted from the burst's first request to its last answer's first token, against the 2 s before.\n"
        "- **Long answer**: one answer at a high token rate, CPU of the server sampled every 20 ms and read, like "
        "the bytes received, at the moments the client held token 100, 100 + window, and the same near the end.\n"
        "- **Memory cycle**: slow answers (4 tokens over --memory-seconds) opened until a round's are all open (16 being "
        "opened at once), RSS read then; when they have all finished, the next round; RSS before the first and "
        "2 s after the last.\n"
        "- **Production configuration** (`bench/production.py`): two daphne workers on a PostgreSQL database of "
        "the run's own and a redis-server of the run's own; prompts are posted to one worker and every stream is "
        "read from the other. CPU of each process over the window (PostgreSQL: all its processes); Redis "
        "commands from `INFO commandstats` (a script's inner commands too) and PostgreSQL's from "
        "`pg_stat_database` over the whole level.\n"
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
        "token checked (the events are still in the in-memory log).",
        "",
    ]


# --------------------------------------------------------------------------- writing


def kept_notes(path: Path) -> str:
    """Hand-written notes at the end of the previous report survive a new run."""
    try:
        previous = path.read_text()
    except OSError:
        return ""
    at = previous.find(NOTES_MARKER)
    return "" if at < 0 else "\n" + previous[at:]


def write(text: str, data: dict, out: Path, json_path: str | None) -> None:
    """Print the report and write it (and the JSON figures, if asked)."""
    print()
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + kept_notes(out))
    if json_path:
        Path(json_path).write_text(json.dumps(data, indent=2, default=str))
