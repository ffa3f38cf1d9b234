"""An OpenAI-compatible streaming endpoint for the benchmark, in a process of its own.

    python -m bench.stub [--port 0]      # prints "port <n>", serves until SIGTERM

Every token's text carries the moment it was written to the socket, so a client at
the far end of any relay can tell how long the relay held it:

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

import argparse
import asyncio
import contextlib
import itertools
import json
import re
import signal
import sys
import time
from pathlib import Path

try:
    from chat.openai_wire import DONE, finish_chunk, role_chunk, sse, usage_chunk
except ModuleNotFoundError:  # started from elsewhere than the project root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from chat.openai_wire import DONE, finish_chunk, role_chunk, sse, usage_chunk

SPEC = re.compile(r"tokens=(\d+)\s+rate=([0-9.]+)")
DEFAULT_TOKENS, DEFAULT_RATE = 20, 50.0


def prompt_spec(tokens: int, rate: float) -> str:
    """The prompt that asks the stub for `tokens` tokens at `rate` per second."""
    return f"bench tokens={tokens} rate={rate:g}"


def _chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _last_user_text(body: dict) -> str:
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
            return str(content or "")
    return ""


class BenchStub:
    def __init__(self) -> None:
        self.ids = itertools.count(1)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        arrival = time.time()
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name:
                headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            raw = bytearray()
            while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                raw += await reader.readexactly(size)
                await reader.readexactly(2)
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass
        else:
            raw = await reader.readexactly(int(headers.get("content-length") or 0))
        if method != "POST" or not target.split("?", 1)[0].endswith("/chat/completions"):
            payload = json.dumps({"error": {"message": f"no route {method} {target}", "type": "invalid_request_error"}}).encode()
            writer.write(
                b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s"
                % (len(payload), payload)
            )
            await writer.drain()
            return
        body = json.loads(raw or b"{}")
        match = SPEC.search(_last_user_text(body))
        tokens, rate = (int(match[1]), float(match[2])) if match else (DEFAULT_TOKENS, DEFAULT_RATE)
        n = next(self.ids)
        chunk_id, model = f"chatcmpl-bench-{n}", str(body.get("model") or "bench")

        def event(obj: dict) -> bytes:
            obj["id"], obj["model"] = chunk_id, model
            return sse(obj)

        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ntransfer-encoding: chunked\r\n"
            b"cache-control: no-cache\r\nconnection: close\r\nx-request-id: req_bench_%d\r\n\r\n" % n
        )
        writer.write(_chunked(event(role_chunk())))
        # A text chunk is always this JSON with the text in the middle: format it
        # once, so the stub spends as little as possible per token.
        prefix = (
            'data: {"id":"%s","object":"chat.completion.chunk","created":%d,"model":%s,'
            '"choices":[{"index":0,"delta":{"content":"' % (chunk_id, int(arrival), json.dumps(model))
        ).encode()
        suffix = b'"},"finish_reason":null}]}\n\n'
        transport = writer.transport
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i in range(tokens):
            wait = start + i / rate - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if transport.is_closing():
                return
            if i:
                text = b"t=%.6f;" % time.time()
            else:
                text = b"r=%.6f;t=%.6f;" % (arrival, time.time())
            writer.write(_chunked(prefix + text + suffix))
            if transport.get_write_buffer_size() > 1 << 16:
                await writer.drain()
        tail = event(finish_chunk("stop")) + event(usage_chunk(10, tokens)) + DONE
        writer.write(_chunked(tail) + b"0\r\n\r\n")
        await writer.drain()


async def serve(port: int = 0) -> None:
    stub = BenchStub()
    server = await asyncio.start_server(stub.handle, "127.0.0.1", port, limit=1 << 20, backlog=4096)
    print(f"port {server.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
