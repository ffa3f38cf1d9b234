"""The benchmark's model: the tests' OpenAI-compatible stub (tests/openai_stub.py)
in a process of its own.

    python -m bench.stub      # prints "port <n>", serves until SIGTERM

Every request gets a `Timed(stamp=True)` stream, whose tokens carry the moment
they were written to the socket, so a client at the far end of any relay can
tell how long the relay held them:

    first token:  r=<request arrival>;t=<emission>;
    other tokens: t=<emission>;

(seconds since the epoch, `time.time()`, six decimals; same machine, same clock).
The product forwards token *text*, not the chunk's JSON, so the time has to ride in
the text. How much to send comes from the last user message: `tokens=<n> rate=<r>`
(defaults 20 tokens at 50/s). Tokens are due on an absolute schedule, token i at
start + i / rate, so a late wake-up does not delay the ones after it. Then a finish
chunk, a usage chunk and `[DONE]`, like a real provider.

Why a process of its own and not a thread in the load generator: both are Python
event loops; in one process they share a GIL, so the stub's work would delay the
client's receive timestamps (inflating the latency measured) and the client's work
would delay emissions. Apart, each gets its own core time and its CPU is measured
on its own.
"""

import re
import signal

from tests.openai_stub import OpenAIStub, Timed

SPEC = re.compile(r"tokens=(\d+)\s+rate=([0-9.]+)")
DEFAULT_TOKENS, DEFAULT_RATE = 20, 50.0
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def prompt_spec(tokens: int, rate: float) -> str:
    """The prompt that asks the stub for `tokens` tokens at `rate` per second."""
    return f"bench tokens={tokens} rate={rate:g}"


def _last_user_text(body: dict) -> str:
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
            return str(content or "")
    return ""


def reply_for(body: dict) -> Timed:
    """The stream a request's prompt asks for."""
    match = SPEC.search(_last_user_text(body))
    tokens, rate = (int(match[1]), float(match[2])) if match else (DEFAULT_TOKENS, DEFAULT_RATE)
    return Timed(tokens, rate, stamp=True)


def main() -> None:
    # Blocked before the stub's thread starts (it inherits the mask), so only
    # sigwait below receives them.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    with OpenAIStub() as stub:
        stub.default = reply_for
        print(f"port {stub.port}", flush=True)
        signal.sigwait(STOP_SIGNALS)


if __name__ == "__main__":
    main()
