"""Does a staff export hold up the text of streaming answers?

    .venv/bin/python -m bench.staff_export [--messages 20000] [--tokens 150] [--rate 25]

One daphne process (the defaults: SQLite, one database thread for requests and
answers) with `--messages` stored messages. An answer streams from the OpenAI
stub at `--rate` tokens/s; once its first text is stored, alice (staff) exports
every conversation as CSV from the admin. This process reads the answer's stream
as a browser would and polls the database row every few milliseconds.

The write delay of a token: when its text was first seen in the database, minus
when it was due there (CHAT_FLUSH_INTERVAL after it reached the reader, which is
after the server had it: the figure errs low by the stream's own latency, a few
milliseconds). Printed for the tokens that arrived while the export ran, and for
all of them.
"""

import argparse
import html
import re
import sqlite3
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.live import Browserless, LiveServer
from tests.openai_stub import OpenAIStub, Stream

FLUSH_INTERVAL = 0.25
USERS = {"alice": "alice-password"}
POLL = 0.005

SEED = """
from django.contrib.auth import get_user_model
from chat.models import Conversation, Message
alice = get_user_model().objects.get(username="alice")
alice.is_staff = alice.is_superuser = True
alice.save()
per = {per}
conversations = Conversation.objects.bulk_create(
    Conversation(owner=alice, title=f"Stored chat {{i}}") for i in range({messages} // per)
)
text = "A stored answer, long enough to look like one. " * 8
Message.objects.bulk_create(
    (Message(conversation=c, role="user" if i % 2 == 0 else "assistant", content=text) for c in conversations for i in range(per)),
    batch_size=2000,
)
"""


@dataclass
class Run:
    """What one measured answer and export gave."""

    export_started: float = 0.0
    export_ended: float = 0.0
    export_status: int = 0
    export_rows: int = 0
    # (arrival at the reader, answer length then) per text frame
    arrivals: list[tuple[float, int]] = field(default_factory=list)
    # (time, stored length) per poll of the row
    stored: list[tuple[float, int]] = field(default_factory=list)

    def delays(self, during_export: bool) -> list[float]:
        delays = []
        polls = iter(self.stored)
        seen_at, seen_length = next(polls, (float("inf"), 0))
        for arrived, length in self.arrivals:
            if during_export and not self.export_started <= arrived <= self.export_ended:
                continue
            while seen_length < length:
                seen_at, seen_length = next(polls, (float("inf"), length))
            # Stored before it reached the reader: not late.
            delays.append(max(seen_at, arrived) - (arrived + FLUSH_INTERVAL))
        return delays


def prepare(workdir: Path, stub: OpenAIStub, messages: int) -> LiveServer:
    server = LiveServer(
        workdir,
        {
            "OPENAI_BASE_URL": stub.base_url,
            "OPENAI_API_KEY": "test",
            "CHAT_MODEL": "stub-model",
            # The defaults, whatever this process was given.
            "DATABASE_URL": "",
            "REDIS_URL": "",
        },
    )
    server.prepare(USERS)
    server.manage("shell", "-c", SEED.format(messages=messages, per=20))
    return server.start()


def measure(server: LiveServer, stub: OpenAIStub, tokens: int, rate: float) -> Run:
    """One answer streamed while an export of every conversation runs."""
    alice = Browserless(server.url, "alice", "alice-password")
    # A fresh process's first admin page and first answer pay for imports: not
    # during the measurement.
    alice.http.get("/admin/chat/conversation/").raise_for_status()
    stub.script(Stream(["warm "]))
    list(alice.frames(*alice.new_conversation("Warm up")))

    run = Run()
    stub.script(Stream([f"w{i} " for i in range(tokens)], delay=1 / rate))
    conversation_id, message_id = alice.new_conversation("Count for me")

    def read() -> None:
        length = 0
        for frame in alice.frames(conversation_id, message_id):
            if frame.event == "text_delta":
                length += len(html.unescape(re.sub(r"</?span>", "", frame.data)))
                run.arrivals.append((time.monotonic(), length))

    def export() -> None:
        staff = alice.use(server.url)
        run.export_started = time.monotonic()
        response = staff.post(
            "/admin/chat/conversation/",
            {"action": "export_csv", "select_across": "1", "index": "0", "_selected_action": "1"},
        )
        run.export_ended = time.monotonic()
        run.export_status = response.status_code
        run.export_rows = response.text.count(",Stored chat ")

    reader = threading.Thread(target=read)
    reader.start()
    exporter = threading.Thread(target=export)
    with _database(server) as db:
        while True:
            (status, length), now = _row(db, message_id), time.monotonic()
            run.stored.append((now, length))
            if length and not exporter.is_alive() and not run.export_started:
                exporter.start()
            if status != "streaming":
                break
            time.sleep(POLL)
    reader.join(30)
    exporter.join(60)
    return run


def _database(server: LiveServer):
    return sqlite3.connect(server.env["SQLITE_PATH"], timeout=20)


def _row(db: sqlite3.Connection, message_id: int) -> tuple[str, int]:
    return db.execute("SELECT status, length(content) FROM chat_message WHERE id = ?", (message_id,)).fetchone()


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def summary(run: Run) -> str:
    lines = [
        f"export: HTTP {run.export_status}, {run.export_rows} rows, {_ms(run.export_ended - run.export_started)}",
    ]
    for label, during in (("tokens during the export", True), ("all tokens", False)):
        delays = sorted(run.delays(during))
        if not delays:
            lines.append(f"{label}: none")
            continue
        p50, p99 = delays[len(delays) // 2], delays[min(len(delays) - 1, int(len(delays) * 0.99))]
        lines.append(f"{label} ({len(delays)}): write delay p50 {_ms(p50)}, p99 {_ms(p99)}, max {_ms(delays[-1])}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--tokens", type=int, default=150)
    parser.add_argument("--rate", type=float, default=25)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir, OpenAIStub() as stub:
        server = prepare(Path(workdir), stub, args.messages)
        try:
            for number in range(1, args.runs + 1):
                print(f"run {number}: {args.messages} messages, answer of {args.tokens} tokens at {args.rate:g}/s")
                print(summary(measure(server, stub, args.tokens, args.rate)))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
