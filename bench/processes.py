"""The benchmark's processes: the model stub, the product and the baseline relay
under daphne, and what /proc says about them (CPU time, memory, CPU pressure).

The product gets a fresh SQLite file and the in-process event log (the embedded
defaults, whatever the calling shell points at) and the production timing
defaults, not the test suite's fast timers; the baseline relay gets the same
environment and the same daphne command.
"""

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

from tests.live import ROOT, LiveServer

USER, PASSWORD = "bench", "bench-password-8273"
CLK_TCK = os.sysconf("SC_CLK_TCK")


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
    """The model stub (bench/stub.py) in a process of its own."""

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

    def start(self, timeout: float = 120) -> "AppServer":
        # A busy machine may take a while to import the product.
        return super().start(timeout)


def server_env(stub: Stub) -> dict[str, str]:
    """The environment of both servers."""
    return {
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
        # The long answer's 11,000 stamped tokens are ~220,000 characters.
        "CHAT_MAX_ANSWER_CHARS": "1000000",
    }


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


def start_servers(work: Path, stub: Stub, product_app: str, servers: list[LiveServer]) -> tuple[LiveServer, LiveServer]:
    """The product and the baseline relay, up and accepting connections. Each is
    appended to `servers` as soon as it exists, so the caller stops whatever
    started even when the other did not."""
    env = server_env(stub)
    (work / "product").mkdir()
    (work / "baseline").mkdir()
    # The baseline starts while the product's database is prepared.
    baseline = AppServer(work / "baseline", "bench.baseline_relay:app", env)
    servers.append(baseline)
    baseline.spawn()
    product = AppServer(work / "product", product_app, env)
    servers.append(product)
    prepare_database(product)
    product.start()
    baseline.start()
    return product, baseline
