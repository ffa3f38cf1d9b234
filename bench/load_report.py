"""The report's rows and sections for the load shapes besides the steady levels
(bench/load.py) and for the production configuration (bench/production.py)."""

from bench.measure import Level, Target, ms, pct

TARGET_BURST_TTFT_P95_MS = 250
TARGET_BURST_STREAMING_P99_MS = 100
TARGET_PRODUCTION_CPU_RATIO = 1.3
TARGET_STREAM_KB = 100
TARGET_MEMORY_GROWTH_PCT = 10

Row = tuple[str, str, str, str, str, str]


def _num(value: float | None, fmt: str = ".0f") -> str:
    return "–" if value is None else format(value, fmt)


def _ratio(a: float | None, b: float | None) -> str:
    return "–" if a is None or not b else f"{a / b:.2f}×"


def _within(value: float | None, limit: float) -> str:
    if value is None:
        return "–"
    return "yes" if value <= limit else f"**no**: {value / limit:.2f}× the limit"


def shape_rows(args, shapes: dict) -> list[Row]:
    """Burst, long answer and memory cycle: product against the relay."""
    p, b = shapes["product"], shapes["baseline"]
    pb, bb = p["burst"], b["burst"]
    pl, bl = p["long"], b["long"]
    pm, bm = p["memory"], b["memory"]
    late = args.long_tokens - args.long_window - 100  # as bench.load.measure_long reads it
    return [
        (
            f"Burst: {args.burst} answers start within 1 s while {args.burst_background} stream; their time to first "
            "token minus the stub's own, p50 / p95 / max (ms)",
            f"{_num(pb['ttft_p50_ms'])} / {_num(pb['ttft_p95_ms'])} / {_num(pb['ttft_max_ms'])}",
            f"{_num(bb['ttft_p50_ms'])} / {_num(bb['ttft_p95_ms'])} / {_num(bb['ttft_max_ms'])}",
            _ratio(pb["ttft_p95_ms"], bb["ttft_p95_ms"]),
            f"p95 < {TARGET_BURST_TTFT_P95_MS}",
            _within(pb["ttft_p95_ms"], TARGET_BURST_TTFT_P95_MS),
        ),
        (
            "Burst: the streaming answers' added latency p99 during the burst (the 2 s before it) (ms)",
            f"{_num(pb['streaming_p99_during_ms'], '.1f')} ({_num(pb['streaming_p99_before_ms'], '.1f')})",
            f"{_num(bb['streaming_p99_during_ms'], '.1f')} ({_num(bb['streaming_p99_before_ms'], '.1f')})",
            _ratio(pb["streaming_p99_during_ms"], bb["streaming_p99_during_ms"]),
            f"< {TARGET_BURST_STREAMING_P99_MS}",
            _within(pb["streaming_p99_during_ms"], TARGET_BURST_STREAMING_P99_MS),
        ),
        (
            f"Long answer ({args.long_tokens:,} tokens at {args.long_rate:g}/s): server CPU per token over "
            f"{args.long_window:,} tokens from token 100 / from token {late:,} (µs)",
            f"{_num(pl.get('cpu_us_per_token_early'))} / {_num(pl.get('cpu_us_per_token_late'))}",
            f"{_num(bl.get('cpu_us_per_token_early'))} / {_num(bl.get('cpu_us_per_token_late'))}",
            _ratio(pl.get("cpu_us_per_token_late"), bl.get("cpu_us_per_token_late")),
            "",
            "",
        ),
        (
            f"Long answer: bytes per token received from token 100 / from token {late:,}",
            f"{_num(pl.get('bytes_per_token_early'), '.1f')} / {_num(pl.get('bytes_per_token_late'), '.1f')}",
            f"{_num(bl.get('bytes_per_token_early'), '.1f')} / {_num(bl.get('bytes_per_token_late'), '.1f')}",
            _ratio(pl.get("bytes_per_token_late"), bl.get("bytes_per_token_late")),
            "",
            "",
        ),
        (
            f"Memory: server RSS per open stream, up to {args.memory_open} answers open at once, first round (KB)",
            f"{_num(pm['kb_per_open_stream'])} ({pm['rounds'][0]['open']} open)",
            f"{_num(bm['kb_per_open_stream'])} ({bm['rounds'][0]['open']} open)",
            _ratio(pm["kb_per_open_stream"], bm["kb_per_open_stream"]),
            f"≤ {TARGET_STREAM_KB}",
            _within(pm["kb_per_open_stream"], TARGET_STREAM_KB),
        ),
        (
            f"Memory: RSS growth after {pm['streams']:,} streams opened and closed, 2 s after the last (MB before → "
            "after)",
            f"{pm['growth_pct']:.1f}% ({pm['rss_before_mb']} → {pm['rss_after_mb']})",
            f"{bm['growth_pct']:.1f}% ({bm['rss_before_mb']} → {bm['rss_after_mb']})",
            "",
            f"≤ {TARGET_MEMORY_GROWTH_PCT}%",
            _within(max(pm["growth_pct"], 0.0), TARGET_MEMORY_GROWTH_PCT),
        ),
    ]


def _common_level(product: Target, production: Target) -> tuple[Level, Level] | None:
    """The largest N that both the embedded product and the production
    configuration passed: their CPU per answer-second is compared there."""
    both = sorted(
        n
        for n in set(product.levels) & set(production.levels)
        if product.levels[n].passed and production.levels[n].passed
    )
    if not both:
        both = sorted(set(product.levels) & set(production.levels))
    if not both:
        return None
    return product.levels[both[-1]], production.levels[both[-1]]


def _per_answer_second(level: Level) -> dict[str, float]:
    seconds = level.answer_wall
    return {name: 1e3 * cpu / seconds for name, cpu in (level.cpu_by_process or {}).items()} if seconds else {}


def _per_token(level: Level, key: str) -> float | None:
    if not level.counters or not level.tokens:
        return None
    return level.counters.get(key, 0) / level.tokens


def production_data(product: Target, production: dict) -> dict:
    target: Target = production["target"]
    common = _common_level(product, target)
    return {
        "capacity": target.capacity,
        "first_fail": target.first_fail,
        "costs": target.costs,
        "levels": [x.as_dict() for _, x in sorted(target.levels.items())],
        "burst": production["burst"],
        "compared_at_n": None if common is None else common[0].n,
    }


def production_rows(args, product: Target, production: dict | None) -> list[Row]:
    if production is None:
        return []
    target: Target = production["target"]
    burst = production["burst"]
    rows: list[Row] = [
        (
            "Production configuration (2 daphne workers, PostgreSQL, Redis; posted to one, streamed from the other): "
            "capacity under the same steady load (embedded default beside it)",
            f"**{target.capacity}**" + ("" if target.first_fail is None else f" (fails at {target.first_fail})"),
            f"{product.capacity} (embedded)",
            _ratio(target.capacity, product.capacity),
            "",
            "",
        ),
        (
            "Production configuration: burst TTFT p95 / streaming p99 during it (ms)",
            f"{_num(burst['ttft_p95_ms'])} / {_num(burst['streaming_p99_during_ms'], '.1f')}",
            "",
            "",
            f"< {TARGET_BURST_TTFT_P95_MS} / < {TARGET_BURST_STREAMING_P99_MS}",
            "yes"
            if (burst["ttft_p95_ms"] or 1e9) < TARGET_BURST_TTFT_P95_MS
            and (burst["streaming_p99_during_ms"] or 1e9) < TARGET_BURST_STREAMING_P99_MS
            else "**no**",
        ),
    ]
    common = _common_level(product, target)
    if common is None:
        return rows
    embedded, prod = common
    embedded_cpu = 1e3 * embedded.server_cpu / embedded.answer_wall if embedded.answer_wall else None
    prod_cpu = 1e3 * prod.server_cpu / prod.answer_wall if prod.answer_wall else None
    parts = _per_answer_second(prod)
    rows += [
        (
            f"Production configuration: CPU per answer-second at N = {prod.n}, all processes (daphne ×2 + PostgreSQL + "
            "Redis) against the embedded default's one daphne (ms)",
            f"{_num(prod_cpu, '.1f')} (" + ", ".join(f"{k} {v:.1f}" for k, v in parts.items()) + ")",
            f"{_num(embedded_cpu, '.1f')} (embedded)",
            _ratio(prod_cpu, embedded_cpu),
            f"≤ {TARGET_PRODUCTION_CPU_RATIO}×",
            "–"
            if prod_cpu is None or not embedded_cpu
            else _within(prod_cpu / embedded_cpu, TARGET_PRODUCTION_CPU_RATIO),
        ),
        (
            f"Production configuration at N = {prod.n}: Redis commands per token (all / EVALSHA / XREAD)",
            f"{_num(_per_token(prod, 'redis (all)'), '.2f')} / {_num(_per_token(prod, 'redis evalsha'), '.2f')} / "
            f"{_num(_per_token(prod, 'redis xread'), '.2f')}",
            "",
            "",
            "",
            "",
        ),
        (
            f"Production configuration at N = {prod.n}: PostgreSQL commits / rows written per answer-second "
            "(pg_stat_database over the level)",
            f"{_num(prod.per_answer_second((prod.counters or {}).get('postgres commits')), '.2f')} / "
            f"{_num(prod.per_answer_second((prod.counters or {}).get('postgres rows written')), '.2f')}",
            "",
            "",
            "",
            "",
        ),
    ]
    return rows


def production_section(args, product: Target, production: dict | None) -> list[str]:
    """Every level of the production configuration, CPU by process."""
    if production is None:
        return []
    target: Target = production["target"]
    out = [
        "## Production configuration: levels\n",
        "Two daphne workers (prompts posted to one, streams read from the other), PostgreSQL and Redis. CPU: ms per "
        "answer-second of each process over the window; Redis commands and PostgreSQL writes over the whole level.\n",
        "| N | OK | Failed | p50 ms | p99 ms | TTFT+ p50 / p95 ms | CPU ms per answer-s: daphne posts / daphne "
        "streams / PostgreSQL / Redis | Redis commands per token | PostgreSQL commits / rows per answer-s | Pass |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n in sorted(target.levels):
        x = target.levels[n]
        parts = _per_answer_second(x)
        counters = x.counters or {}
        out.append(
            f"| {n} | {x.completed} | {x.failed} | {ms(pct(x.live, 50), 2)} | {ms(x.p99, 2)} | "
            f"{ms(pct(x.ttft_added, 50))} / {ms(x.ttft_p95)} | "
            + " / ".join(f"{v:.1f}" for v in parts.values())
            + f" | {_num(_per_token(x, 'redis (all)'), '.2f')} | "
            f"{_num(x.per_answer_second(counters.get('postgres commits')), '.2f')} / "
            f"{_num(x.per_answer_second(counters.get('postgres rows written')), '.2f')} | {'yes' if x.passed else 'no'} |"
        )
    common = _common_level(product, target)
    if common is not None and common[1].counters:
        top = sorted(
            ((k, v) for k, v in common[1].counters.items() if k.startswith("redis ") and k != "redis (all)"),
            key=lambda kv: -kv[1],
        )[:8]
        tokens = common[1].tokens or 1
        out += [
            "",
            f"Redis commands per token at N = {common[1].n}, by command: "
            + ", ".join(f"{k.removeprefix('redis ')} {v / tokens:.2f}" for k, v in top),
        ]
    out.append("")
    return out
