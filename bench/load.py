"""Load shapes besides the steady-load levels (bench/measure.py): a burst of new
answers on a warm server, one long answer, and streams opened and closed by the
thousand. Each runs against a Target (product, relay, or the production
configuration) and answers a dict of figures for the report.
"""

import asyncio
import itertools
import time

from bench.client import Answer
from bench.measure import Target, pct


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


# --------------------------------------------------------------------------- burst


async def measure_burst(target: Target, args) -> dict:
    """`--burst` answers start within one second while `--burst-background`
    answers are already streaming: the new answers' time to first token, and
    the streaming answers' added latency during the burst against just before it."""
    timeout = max(args.tokens, 10 * args.rate) / args.rate + 60

    async def later(delay: float, tokens: int) -> Answer:
        await asyncio.sleep(delay)
        return await target.client.answer(tokens, args.rate, timeout=timeout)

    spread = 2.0
    # Long enough to stream through the whole burst.
    background_tokens = max(args.tokens, round(10 * args.rate))
    background = [
        asyncio.create_task(later(spread * i / args.burst_background, background_tokens))
        for i in range(args.burst_background)
    ]
    # Every background answer streams, and has for a while, when the burst comes.
    await asyncio.sleep(spread + 2.0)
    cpu0, start = sum(target.cpu().values()), time.time()
    burst = await asyncio.gather(*(later(i / args.burst, args.alone_tokens) for i in range(args.burst)))
    firsts = [a.first_recv for a in burst if a.first_recv is not None]
    # The burst lasts until its last answer's first token has arrived.
    end = max(firsts, default=time.time())
    cpu1 = sum(target.cpu().values())
    streaming = await asyncio.gather(*background)

    def latencies(lo: float, hi: float) -> list[float]:
        return [x for a in streaming for x, t in zip(a.live, a.live_emitted, strict=True) if lo <= t < hi]

    during, before = latencies(start, end), latencies(start - 2.0, start)
    ttft = [a.ttft_added for a in burst if a.ttft_added is not None]
    result = {
        "answers": args.burst,
        "background": args.burst_background,
        "failed": sum(not a.ok for a in burst) + sum(not a.ok for a in streaming),
        "seconds": round(end - start, 2),
        "ttft_p50_ms": _ms(pct(ttft, 50)),
        "ttft_p95_ms": _ms(pct(ttft, 95)),
        "ttft_max_ms": _ms(max(ttft, default=None)),
        "streaming_p99_during_ms": _ms(pct(during, 99)),
        "streaming_p99_before_ms": _ms(pct(before, 99)),
        "streaming_tokens_during": len(during),
        "server_cpu_pct_during": round(100 * (cpu1 - cpu0) / (end - start), 0) if end > start else None,
        "errors": sorted({a.error for a in (*burst, *streaming) if not a.ok})[:3],
    }
    print(f"  {target.name:8} burst: {result}", flush=True)
    await asyncio.sleep(args.settle)
    return result


# --------------------------------------------------------------------------- long answers


def _at(series: list[tuple[float, float]], when: float) -> float:
    """A cumulative series (time, value) read at `when`, linearly between samples."""
    for (t0, v0), (t1, v1) in itertools.pairwise(series):
        if t0 <= when <= t1:
            return v0 if t1 == t0 else v0 + (v1 - v0) * (when - t0) / (t1 - t0)
    return series[-1][1] if when > series[-1][0] else series[0][1]


async def _sampled(target: Target, work) -> tuple[object, list[tuple[float, float]]]:
    """Await `work` while sampling the target's CPU seconds every 20 ms."""
    cpu: list[tuple[float, float]] = []
    done = asyncio.Event()

    async def sample() -> None:
        while not done.is_set():
            cpu.append((time.time(), sum(target.cpu().values())))
            await asyncio.sleep(0.02)

    sampling = asyncio.create_task(sample())
    try:
        return await work, cpu
    finally:
        done.set()
        await sampling


def _per_token(progress: list[tuple[float, int, int]], cpu: list[tuple[float, float]], first: int, span: int):
    """CPU µs and bytes received per token from token `first` to `first + span`
    (None when one read brought the whole window: no time between its ends)."""
    t0, n0, b0 = next(p for p in progress if p[1] >= first)
    t1, n1, b1 = next(p for p in progress if p[1] >= first + span)
    if n1 == n0:
        return None, None
    return 1e6 * (_at(cpu, t1) - _at(cpu, t0)) / (n1 - n0), (b1 - b0) / (n1 - n0)


async def measure_long(target: Target, args) -> dict:
    """One answer of `--long-tokens` tokens at `--long-rate`: server CPU and bytes
    received per token over `--long-window` tokens from token 100 against the
    same near the end (from token 10,000 in a full run), the median of
    `--long-runs` answers. CPU is sampled every 20 ms (10 ms ticks) and read at
    the moments the client held those tokens."""
    span = args.long_window
    # The late window ends before the last tokens, which may come with the end.
    late_at = args.long_tokens - span - 100
    timeout = args.long_tokens / args.long_rate + 60
    runs = []
    for _ in range(args.long_runs):
        answer = Answer(started=time.time(), progress=[])
        _, cpu = await _sampled(
            target, target.client.answer(args.long_tokens, args.long_rate, timeout=timeout, answer=answer)
        )
        if not answer.ok:
            print(f"  {target.name:8} long answer failed: {answer.error}", flush=True)
            return {"error": answer.error}
        runs.append((*_per_token(answer.progress, cpu, 100, span), *_per_token(answer.progress, cpu, late_at, span)))
        await asyncio.sleep(args.settle)

    def median(i: int) -> float | None:
        values = sorted(r[i] for r in runs if r[i] is not None)
        return values[len(values) // 2] if values else None

    result = {
        "tokens": args.long_tokens,
        "rate": args.long_rate,
        "window": span,
        "late_at": late_at,
        "runs": len(runs),
        "cpu_us_per_token_early": median(0),
        "bytes_per_token_early": median(1),
        "cpu_us_per_token_late": median(2),
        "bytes_per_token_late": median(3),
        "each_run": [[None if x is None else round(x, 1) for x in r] for r in runs],
    }
    print(f"  {target.name:8} long answer: {result}", flush=True)
    return result


# --------------------------------------------------------------------------- memory


async def measure_memory_cycle(target: Target, args) -> dict:
    """Streams opened and closed by the thousand: `--memory-open` answers open at
    once (slow ones: 4 tokens over `--memory-seconds`), until `--memory-streams` have
    opened and closed. RSS before, with all of a round open, and after the
    last round: per open stream, and what did not come back."""
    length = args.memory_seconds
    tokens = 4
    rate = (tokens - 1) / length
    gate = asyncio.Semaphore(args.memory_concurrency)

    async def open_one(answer: Answer) -> Answer:
        async with gate:
            answer.started = time.time()
            task = asyncio.create_task(target.client.answer(tokens, rate, timeout=length + 120, answer=answer))
            # Hold the gate until the stream is open: that is what the server is asked to do at once.
            while answer.opened is None and not task.done():
                await asyncio.sleep(0.01)
        return await task

    before = target.rss_kb()
    rounds, per_stream, failed = [], [], 0
    total = 0
    while total < args.memory_streams:
        count = min(args.memory_open, args.memory_streams - total)
        answers = [Answer(started=0.0) for _ in range(count)]
        round_start = target.rss_kb()
        tasks = [asyncio.create_task(open_one(a)) for a in answers]
        deadline = time.monotonic() + length + 60
        while sum(a.opened is not None or a.finished is not None or bool(a.error) for a in answers) < count:
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        open_now = sum(a.opened is not None and a.finished is None for a in answers)
        with_open = target.rss_kb()
        done = await asyncio.gather(*tasks)
        failed += sum(not a.ok for a in done)
        total += count
        rounds.append(
            {"open": open_now, "rss_before_mb": round(round_start / 1024, 1), "rss_open_mb": round(with_open / 1024, 1)}
        )
        if open_now:
            per_stream.append((with_open - round_start) / open_now)
        print(f"  {target.name:8} memory round: {rounds[-1]}", flush=True)
    await asyncio.sleep(max(args.settle, 2.0))
    after = target.rss_kb()
    result = {
        "streams": total,
        "open_at_once": args.memory_open,
        "failed": failed,
        "rss_before_mb": round(before / 1024, 1),
        "rss_after_mb": round(after / 1024, 1),
        "growth_pct": round(100 * (after - before) / before, 1),
        # The first round's: later rounds reuse what the allocator kept from it.
        "kb_per_open_stream": round(per_stream[0]) if per_stream else None,
        "rounds": rounds,
    }
    print(f"  {target.name:8} memory: {result}", flush=True)
    return result
