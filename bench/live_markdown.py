"""Live Markdown: what rendering an answer as it streams costs, per token and in
bytes, against the final render.

    .venv/bin/python -m bench.live_markdown [--tokens 12000] [--runs 5]

In this process, on the path every token of an answer takes on the server (no
network, no database: the rest of the path is the main benchmark's): the
generation's `LiveMarkdown.feed` and its event (with the JSON the Redis event
log stores), and the stream view's frame (chat/rendering.event_fragment inside
chat/sse.frame). Two answers, split into tokens the way a model's tokenizer
splits text (a word with its leading space, a run of punctuation):

- a long Markdown answer of ordinary structure (headings, paragraphs with inline
  markup, lists, code blocks, tables, quotes), for the bytes sent against the
  final HTML, and the CPU per token around token 100 and around token 10,000;
- a single 20 KB paragraph with no line break, for the bytes.

Bytes are counted two ways: the fragments (what htmx swaps) and whole SSE frames
(`id:`, `event:` and `data:` lines included: about 30 bytes per event whatever
the event carries, which the plain escaped text had too).
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

from chat import events, sse
from chat.events import Event

MESSAGE_ID = 12345
# Where the CPU per token is compared: the tokens from each point on, over three
# sections of the long answer (its structure repeats, so the two windows hold
# the same mix of blocks whatever their phase).
EARLY, LATE, SECTIONS_PER_WINDOW = 100, 10_000, 3
_TOKEN = re.compile(r" ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+")


def long_answer(min_tokens: int) -> list[str]:
    """An answer of ordinary structure, at least `min_tokens` tokens long, by section."""
    sections = []
    n = 0
    while sum(len(tokens(s)) for s in sections) < min_tokens:
        n += 1
        sections.append(
            f"## Step {n}: configure the service\n\n"
            f"First, open the **settings file** and check the `timeout` value; the default of {n * 5} seconds "
            "is *usually* enough, but a slow network needs more. See [the manual](https://example.com/manual) "
            "for the details of each option.\n\n"
            "- Stop the service before changing anything.\n"
            "- Edit `config.toml` with the values below.\n"
            "- Start it again and watch the log for **errors**.\n\n"
            "```python\n"
            f"def configure(path: str, timeout: int = {n * 5}) -> dict:\n"
            "    with open(path) as f:\n"
            "        settings = toml.load(f)\n"
            "    settings['timeout'] = timeout\n"
            "    return settings\n"
            "```\n\n"
            + (
                "| option | default | meaning |\n|---|---|---|\n| timeout | 30 | seconds before giving up |\n"
                "| retries | 3 | attempts after a failure |\n\n"
                if n % 3 == 0
                else "> Note: a change takes effect only after a restart.\n\n"
            )
            + "Once it runs, the service answers on port 8080 and the health check turns green.\n\n"
        )
    return sections


def one_paragraph(chars: int = 20_000) -> str:
    words = []
    i = 0
    while sum(len(w) for w in words) < chars:
        words.append(f"word{i} " if i % 7 else f"**bold{i}** ")
        i += 1
    return "".join(words).rstrip()


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def stream(parts: list[str]) -> tuple[list[int], int, int]:
    """Each token through the server's path: its nanoseconds, and the bytes of
    the fragments and of the SSE frames."""
    from chat.live_markdown import LiveMarkdown
    from chat.rendering import event_fragment

    live = LiveMarkdown()
    spent = []
    fragment_bytes = frame_bytes = 0
    for seq, part in enumerate(parts, 1):
        started = time.process_time_ns()
        event = Event(seq, events.TEXT_DELTA, {"text": part, **live.feed(part).as_data()})
        event.to_json()
        fragment = event_fragment(MESSAGE_ID, event)
        frame = sse.frame(event.type, fragment, id=event.seq)
        spent.append(time.process_time_ns() - started)
        fragment_bytes += len(fragment.encode())
        frame_bytes += len(frame.encode())
    return spent, fragment_bytes, frame_bytes


def _window_us(spent: list[int], at: int, width: int) -> float:
    window = spent[at : at + width]
    return sum(window) / len(window) / 1000


def measure(min_tokens: int = 12_000, runs: int = 5) -> dict:
    from chat.markdown import render_markdown

    sections = long_answer(min_tokens)
    text = "".join(sections)
    parts = tokens(text)
    assert "".join(parts) == text
    width = SECTIONS_PER_WINDOW * len(parts) // len(sections)
    late_at = min(LATE, len(parts) - width)
    final = render_markdown(text).encode()
    early, late, mean = [], [], []
    for _ in range(runs):
        spent, fragment_bytes, frame_bytes = stream(parts)
        early.append(_window_us(spent, EARLY, width))
        late.append(_window_us(spent, late_at, width))
        mean.append(sum(spent) / len(spent) / 1000)
    paragraph = one_paragraph()
    paragraph_parts = tokens(paragraph)
    _, paragraph_fragments, paragraph_frames = stream(paragraph_parts)
    paragraph_final = len(render_markdown(paragraph).encode())
    return {
        "answer_chars": len(text),
        "answer_tokens": len(parts),
        "final_html_bytes": len(final),
        "fragment_bytes": fragment_bytes,
        "frame_bytes": frame_bytes,
        "fragments_over_final": fragment_bytes / len(final),
        "frames_over_final": frame_bytes / len(final),
        "cpu_window_tokens": width,
        "cpu_late_at": late_at,
        "cpu_us_per_token_at_100": statistics.median(early),
        "cpu_us_per_token_at_10000": statistics.median(late),
        "cpu_late_over_early": statistics.median(late) / statistics.median(early),
        "cpu_us_per_token_mean": statistics.median(mean),
        "runs": runs,
        "paragraph_chars": len(paragraph),
        "paragraph_tokens": len(paragraph_parts),
        "paragraph_final_html_bytes": paragraph_final,
        "paragraph_fragments_over_final": paragraph_fragments / paragraph_final,
        "paragraph_frames_over_final": paragraph_frames / paragraph_final,
    }


def measure_apart(quick: bool = False) -> dict:
    """`measure` in a process of its own (bench.run's process is the load
    generator, without Django settings of its own)."""
    argv = ["--tokens", "10600", "--runs", "1"] if quick else []
    done = subprocess.run(
        [sys.executable, "-m", "bench.live_markdown", *argv], capture_output=True, text=True, check=True, timeout=600
    )
    return json.loads(done.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Live Markdown: bytes and CPU per token of rendering as it streams.")
    parser.add_argument("--tokens", type=int, default=12_000, help="tokens of the long answer (at least; 12,000)")
    parser.add_argument("--runs", type=int, default=5, help="runs for the CPU figures; the median is kept (5)")
    args = parser.parse_args(argv)
    # The renderer's modules import the models: settings, and nothing more of
    # Django. Here only: bench.run imports this module, and its servers must not
    # inherit these variables.
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatproject.settings")
    os.environ.setdefault("DJANGO_DEBUG", "1")
    import django

    django.setup()
    print(json.dumps(measure(args.tokens, args.runs), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
