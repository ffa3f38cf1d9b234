"""The benchmark runs end to end: stub, product and baseline under daphne, a few
answers each, a report with every figure. Tiny N: this checks the tool, not the
numbers (they depend on the machine)."""

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import openai
import pytest

from bench.stub import prompt_spec

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def test_the_benchmark_model_streams_what_the_prompt_asks_with_each_tokens_emission_time():
    """bench/stub.py: the tests' stub in a process of its own, answering every
    request with the tokens and pace its prompt names, the times in the text."""
    process = subprocess.Popen([sys.executable, "-m", "bench.stub"], cwd=ROOT, stdout=subprocess.PIPE)
    try:
        port = int(process.stdout.readline().split()[1])
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="bench", max_retries=0)
        chunks = list(
            client.chat.completions.create(
                model="bench-model",
                messages=[{"role": "user", "content": prompt_spec(5, 50)}],
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(texts) == 5
    arrival, first = map(float, re.fullmatch(r"r=(\d+\.\d{6});t=(\d+\.\d{6});", texts[0]).groups())
    emitted = [first] + [float(re.fullmatch(r"t=(\d+\.\d{6});", text)[1]) for text in texts[1:]]
    assert arrival <= first and emitted == sorted(emitted)
    # An absolute schedule: token i is never sent before i / rate.
    assert all(t - arrival >= i / 50 for i, t in enumerate(emitted))
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].usage.completion_tokens == 5


def _postgres_reachable() -> bool:
    """The benchmark's production configuration needs the machine's PostgreSQL
    (required under REQUIRE_SERVICES=1)."""
    import psycopg

    from bench.production import ADMIN_URL

    try:
        psycopg.connect(ADMIN_URL, connect_timeout=3).close()
    except psycopg.OperationalError:
        if os.environ.get("REQUIRE_SERVICES") == "1":
            raise
        return False
    return True


PRODUCTION_FIGURES = (
    "Production configuration (2 daphne workers",
    "Production configuration: CPU per answer-second",
    "Redis commands per token",
    "PostgreSQL commits / rows written",
)


# The benchmark starts its own servers and services whatever the suite's pass is
# on: the PostgreSQL + Redis pass would run the same thing again.
@pytest.mark.skipif(bool(os.environ.get("DATABASE_URL")), reason="runs once, in the first pass")
def test_quick_benchmark_reports_every_figure(tmp_path):
    production = _postgres_reachable()
    out, data_path = tmp_path / "benchmarks.md", tmp_path / "benchmarks.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "DJANGO_SETTINGS"))}
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--out", str(out), "--json", str(data_path)]
        + ([] if production else ["--no-production"]),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    report = out.read_text()
    for figure in (
        "added latency per token, p50",
        "added latency per token, p99",
        "added latency per token, max",
        "time to first token minus the stub's own",
        "Capacity",
        "Answers completed / failed",
        "Database write transactions (commits) per answer-second",
        "Writes of an answer's own row per answer-second",
        "Replay of a finished",
        "Live Markdown, a ",
        "Live Markdown, one ",
        "Live Markdown: server CPU per token",
        "Answers one at a time: server CPU of an answer besides its tokens",
        "Answers one at a time: server CPU per token",
        "Server RSS at rest",
        "Server RSS at the largest steady level",
        "Burst: ",
        "Long answer (",
        "Memory: server RSS per open stream",
        "Memory: RSS growth after",
        *(PRODUCTION_FIGURES if production else ()),
        "Server CPU",
        "CPUs (",
        "Command",
    ):
        assert figure in report, figure

    data = json.loads(data_path.read_text())
    for name in ("product", "baseline"):
        totals = data[name]["totals"]
        assert totals["completed"] > 0, name
        assert totals["failed"] == 0, (name, [x["errors"] for x in data[name]["levels"]])
        assert [x["n"] for x in data[name]["levels"]] == [5]
        assert all(x["p99_ms"] is not None for x in data[name]["levels"])
        shapes = data["shapes"][name]
        assert shapes["burst"]["failed"] == 0 and shapes["burst"]["ttft_p95_ms"] is not None, shapes["burst"]
        assert shapes["burst"]["streaming_tokens_during"] > 0, shapes["burst"]
        assert shapes["long"]["cpu_us_per_token_early"] is not None, shapes["long"]
        assert shapes["memory"]["failed"] == 0 and shapes["memory"]["streams"] == 20, shapes["memory"]
    # The product logs its database writes per answer, its commits were counted,
    # and the server was sampled.
    assert data["product"]["totals"]["writes_per_answer_second"] > 0
    assert data["product"]["totals"]["transactions_per_answer_second"] > 0
    assert all(data["costs"][name]["answer_ms"] > 0 for name in ("product", "baseline")), data["costs"]
    assert data["product"]["totals"]["rss_rest_mb"] > 0
    assert data["replay"].get("median_ms") is not None, data["replay"]
    if not production:
        return
    # Two workers on PostgreSQL and Redis: every process's CPU and the services'
    # counters were read.
    level = data["production"]["levels"][0]
    assert level["failed"] == 0, level["errors"]
    assert set(level["cpu_by_process_s"]) == {"daphne (posts)", "daphne (streams)", "PostgreSQL", "Redis"}
    assert level["counters"]["redis (all)"] > 0 and level["counters"]["postgres commits"] > 0
