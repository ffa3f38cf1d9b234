"""A real daphne process serving the app, for tests that need what only a real
server does: streaming over a socket, several processes, a crash.

Each LiveServer has its own SQLite file (or the DATABASE_URL it is given) and
talks to the model through the environment it is started with.
"""

import os
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2

from tests.sse_client import Frame, parse

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """A server in a subprocess that a test can stop, or kill like a crash."""

    process: subprocess.Popen | None = None

    def kill(self) -> None:
        """A crash: no cleanup, no goodbye."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


class LiveServer(ServerProcess):
    app = "chatproject.asgi:application"

    def __init__(
        self,
        workdir: Path,
        env: dict[str, str] | None = None,
        port: int | None = None,
        daphne_args: tuple[str, ...] = (),
    ) -> None:
        self.workdir = workdir
        self.daphne_args = daphne_args
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "DJANGO_SETTINGS"))},
            "DJANGO_SETTINGS_MODULE": "chatproject.settings",
            "DJANGO_DEBUG": "0",
            "SECRET_KEY": "live-test-secret-key-" + "x" * 40,
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SQLITE_PATH": str(workdir / "db.sqlite3"),
            "CHAT_HEARTBEAT_STALE": "2",
            "CHAT_HEARTBEAT_INTERVAL": "0.5",
            "CHAT_STREAM_POLL": "0.3",
            "CHAT_MAX_RETRIES": "0",
            # With a DATABASE_URL every live server of the session shares alice's
            # answers; the per-minute limit (tests/test_limits.py) must not turn
            # the suite's pace into a 429 in whichever test comes twentieth.
            "CHAT_PROMPTS_PER_MINUTE": "1000",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.process: subprocess.Popen | None = None
        self.log_path = workdir / f"daphne-{self.port}.log"

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=120
        )
        if result.returncode:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def prepare(self, users: dict[str, str], *, template: Path | None = None) -> "LiveServer":
        """Migrate and create `users`; with `template`, copy an SQLite file that
        was prepared so once per test session instead."""
        if template is not None and "DATABASE_URL" not in self.env:
            shutil.copyfile(template, self.env["SQLITE_PATH"])
            return self
        self.manage("migrate", "--noinput", "-v0")
        script = "from django.contrib.auth import get_user_model as g\nU = g()\n" + "".join(
            f"U.objects.filter(username={u!r}).exists() or U.objects.create_user({u!r}, password={p!r})\n"
            for u, p in users.items()
        )
        self.manage("shell", "-c", script)
        return self

    def new_user(self) -> tuple[str, str]:
        """A user of the caller's own in the server's database: name and password."""
        username, password = f"user-{secrets.token_hex(4)}", secrets.token_urlsafe(12)
        self.manage(
            "shell",
            "-c",
            f"from django.contrib.auth.models import User as U\nU.objects.create_user({username!r}, password={password!r})",
        )
        return username, password

    def spawn(self) -> "LiveServer":
        """Start daphne without waiting for it (several can boot at once)."""
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), *self.daphne_args, self.app],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        return self

    def start(self, timeout: float = 20) -> "LiveServer":
        """Start daphne (unless spawned) and wait until it accepts connections."""
        if self.process is None or self.process.poll() is not None:
            self.spawn()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"daphne exited:\n{self.log_path.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"daphne did not start in {timeout:g} s")

    def sql(self, query: str, *params) -> list[tuple]:
        """Read the server's database directly, as an operator would."""
        url = self.env.get("DATABASE_URL")
        if url:
            import psycopg

            with psycopg.connect(url) as conn:
                return conn.execute(query.replace("?", "%s"), params).fetchall()
        with sqlite3.connect(self.env["SQLITE_PATH"]) as conn:
            return conn.execute(query, params).fetchall()

    def message(self, message_id: int) -> dict:
        columns = ("status", "content", "stop_reason", "error", "last_seq", "reasoning", "reasoning_seconds")
        row = self.sql(f"SELECT {', '.join(columns)} FROM chat_message WHERE id = ?", message_id)[0]
        return dict(zip(columns, row, strict=True))


class Browserless:
    """A logged-in HTTP session that does what the page does, without a browser."""

    def __init__(self, base_url: str, username: str, password: str) -> None:
        self.base_url = base_url
        self.http = httpx2.Client(base_url=base_url, timeout=30)
        page = self.http.get("/accounts/login/")
        token = self.http.cookies["csrftoken"]
        response = self.http.post(
            "/accounts/login/",
            data={"username": username, "password": password, "csrfmiddlewaretoken": token},
            headers={"Referer": base_url + "/accounts/login/"},
        )
        assert response.status_code == 302, page.text
        self.csrf = self.http.cookies["csrftoken"]

    def use(self, base_url: str) -> "Browserless":
        """The same session against another worker."""
        other = object.__new__(Browserless)
        other.base_url = base_url
        other.http = httpx2.Client(base_url=base_url, timeout=30, cookies=self.http.cookies)
        other.csrf = self.csrf
        return other

    def post(self, path: str, data: dict | None = None) -> httpx2.Response:
        return self.http.post(
            path,
            data=data or {},
            headers={"X-CSRFToken": self.csrf, "HX-Request": "true", "Referer": self.base_url + "/"},
        )

    def new_conversation(self, prompt: str) -> tuple[int, int]:
        """Start a conversation; its id and the id of the assistant message."""
        response = self.post("/c/new/", {"prompt": prompt})
        assert response.status_code == 200, response.text
        conversation_id = int(re.search(r"/c/(\d+)/", response.headers["HX-Push-Url"]).group(1))
        message_id = int(re.findall(r'id="msg-(\d+)" data-status', response.text)[-1])
        return conversation_id, message_id

    def page(self, conversation_id: int) -> str:
        return self.http.get(f"/c/{conversation_id}/").text

    def frames(
        self, conversation_id: int, message_id: int, after: int = 0, limit: int | None = None
    ) -> Iterator[Frame]:
        """Frames as they arrive; stops after `limit` frames or at the end of the stream."""
        url = f"/c/{conversation_id}/m/{message_id}/stream/?after={after}"
        count = 0
        with self.http.stream("GET", url, timeout=httpx2.Timeout(30, read=30)) as response:
            assert response.status_code == 200
            buffer = ""
            for chunk in response.iter_text():
                buffer += chunk
                while "\n\n" in buffer:
                    block, buffer = buffer.split("\n\n", 1)
                    for frame in parse(block + "\n\n"):
                        yield frame
                        count += 1
                        if limit is not None and count >= limit:
                            return


class RedisServer(ServerProcess):
    """A redis-server of a test's own: nothing persisted, killed like a crash."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    @staticmethod
    def available() -> bool:
        return shutil.which("redis-server") is not None

    def start(self) -> "RedisServer":
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited on port {self.port}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")
