"""A local OpenAI-compatible chat-completions server for tests and benchmarks.

Speaks real HTTP/1.1 on 127.0.0.1 (random free port) so the real
``openai.AsyncOpenAI`` client (and its ``httpx2`` transport) is exercised end to
end. The server is an ``asyncio.start_server`` running on its own event loop in
a background daemon thread, so it works from sync tests, from ``asyncio.run``,
and from Django's test runner alike.

    from tests.openai_stub import OpenAIStub, Stream, ToolCallPart, Timed, Status

    with OpenAIStub() as stub:
        stub.script(Stream(["Hel", "lo"]), Status(429, "slow down"))
        client = openai.AsyncOpenAI(base_url=stub.base_url, api_key="test")
        ...
        assert stub.requests[0]["messages"] == [...]

``GET /v1/models`` lists ``stub.models``, or answers ``stub.models_reply`` (a
``Status``) instead; ``stub.authorizations`` holds every request's
``Authorization`` header, in order.

Every reply is sent with ``Connection: close`` and the connection is closed
after it, so the SDK opens a new connection per request.

Streaming replies use chunked transfer encoding. A client that goes away while
a streaming reply is still being sent (EOF seen on the socket, or a failed
write) is counted in ``disconnects`` and sets ``disconnected``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    from chat.provider.wire import (
        DONE,
        finish_chunk,
        reasoning_chunk,
        role_chunk,
        sse,
        text_chunk,
        tool_call_chunk,
        usage_chunk,
    )
except ModuleNotFoundError:  # run without the project root on sys.path (e.g. pytest -p no:django)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from chat.provider.wire import (
        DONE,
        finish_chunk,
        reasoning_chunk,
        role_chunk,
        sse,
        text_chunk,
        tool_call_chunk,
        usage_chunk,
    )

__all__ = ["OpenAIStub", "Reasoning", "Reply", "Status", "Stream", "Timed", "ToolCallPart"]

CHAT_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"
# Connections waiting to be accepted: the benchmark opens hundreds within a
# second, and a full queue drops a connection for a second (SYN retry).
BACKLOG = 4096


# --------------------------------------------------------------------------- replies


@dataclass
class ToolCallPart:
    """One streamed tool-call delta (see ``chat.provider.wire.tool_call_chunk``)."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass
class Reasoning:
    """One streamed piece of a reasoning model's thinking, in the delta field
    ``field`` (``reasoning_content``, ``reasoning`` or ``reasoning_text``)."""

    text: str
    field: str = "reasoning_content"


@dataclass
class Stream:
    """A streamed completion: role chunk, parts, finish, usage, [DONE].

    - ``str`` parts become content deltas, ``Reasoning`` parts reasoning deltas,
      ``ToolCallPart`` parts tool-call deltas, ``bytes`` parts are written into the body as they are (a broken or hostile
      provider: oversized lines, malformed events).
    - ``first_delay`` seconds before the first part, ``delay`` between parts.
    - ``finish_reason=None``: no finish chunk, but the stream still ends cleanly.
    - ``usage=None``: no usage chunk.
    - ``drop=True``: after the parts, close the socket mid chunked body.
    - ``hang=True``: after the parts, send nothing more until the client closes.
    - ``error="..."``: after the parts, an error chunk with that message, then the end.
    """

    parts: list = field(default_factory=list)
    delay: float = 0.0
    finish_reason: str | None = "stop"
    usage: tuple[int, int] | None = (10, 20)
    drop: bool = False
    hang: bool = False
    first_delay: float = 0.0
    error: str | None = None

    def __post_init__(self) -> None:
        for part in self.parts:
            if not isinstance(part, (str, Reasoning, ToolCallPart, bytes)):
                raise TypeError(f"Stream part must be str, Reasoning, ToolCallPart or bytes, not {type(part).__name__}")
        if self.drop and self.hang:
            raise ValueError("Stream: drop and hang are mutually exclusive")


@dataclass
class Timed:
    """Benchmark stream: ``tokens`` content chunks at ``rate`` per second.

    Chunk ``i`` (0-based) is due at ``start + i / rate`` on an absolute schedule
    (no drift from accumulated sleeps). Each chunk carries a top-level float
    ``"emitted_at": time.time()`` taken just before it is written. Then finish
    "stop", usage (10, tokens) and [DONE].

    ``stamp=True``: the time rides in the text instead, for a client at the far
    end of a relay that forwards text, not the chunk's JSON (the benchmark):
    chunk ``i`` says ``t=<time.time()>;``, the first ``r=<request
    arrival>;t=<time.time()>;`` (six decimals). ``text`` is not used then.
    """

    tokens: int
    rate: float
    text: str = "tok "
    stamp: bool = False

    def __post_init__(self) -> None:
        if self.rate <= 0:
            raise ValueError("Timed: rate must be > 0")


_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}


@dataclass
class Status:
    """A non-streaming JSON error in OpenAI's shape, with HTTP status ``code``.

    ``headers`` are added to the response (e.g. ``{"retry-after": "0"}``).
    ``error_type`` / ``error_code`` override the ``type`` / ``code`` fields of
    the error body (defaults depend on the status code).
    """

    code: int
    message: str = "stub error"
    headers: dict | None = None
    error_type: str | None = None
    error_code: str | None = None

    def body(self) -> dict:
        default_type, default_code = _ERROR_TYPES.get(
            self.code, ("server_error" if self.code >= 500 else "invalid_request_error", None)
        )
        return {
            "error": {
                "message": self.message,
                "type": self.error_type or default_type,
                "param": None,
                "code": self.error_code if self.error_code is not None else default_code,
            }
        }


Reply = Stream | Timed | Status

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Payload Too Large",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class _BadRequest(Exception):
    pass


class _Dropped(Exception):
    """Raised by a streaming body to ask for the connection to be cut."""


# --------------------------------------------------------------------------- server


class OpenAIStub:
    """Local OpenAI-compatible server; see the module docstring."""

    def __init__(self) -> None:
        self.base_url: str = ""
        self.port: int = 0
        self.requests: list[dict] = []
        # The reply when nothing is scripted: a Reply, or a function of the
        # request's body that returns one.
        self.default: Reply | Callable[[dict], Reply | None] | None = None
        # GET /v1/models: these model ids, or `models_reply` (a Status) instead.
        self.models: list[str] = []
        self.models_reply: Status | None = None
        # The Authorization header of every request, in order.
        self.authorizations: list[str] = []
        self.disconnects: int = 0
        self.disconnected = threading.Event()
        self._queue: collections.deque[Reply] = collections.deque()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task] = set()

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> OpenAIStub:
        if self._thread is not None:
            raise RuntimeError("OpenAIStub already started")
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                try:
                    self._server = loop.run_until_complete(
                        asyncio.start_server(self._handle, "127.0.0.1", 0, limit=1 << 20, backlog=BACKLOG)
                    )
                except BaseException as exc:  # pragma: no cover - startup failure
                    failure.append(exc)
                    return
                finally:
                    ready.set()
                loop.run_forever()
            finally:
                with contextlib.suppress(Exception):
                    loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name="openai-stub", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        if self._server is None:  # pragma: no cover
            raise RuntimeError("OpenAIStub failed to start")
        self.port = self._server.sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        return self

    def stop(self) -> None:
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        if loop.is_running():
            fut = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
            with contextlib.suppress(Exception):
                fut.result(timeout=5)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        self._thread = None
        self._loop = None
        self._server = None

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    def __enter__(self) -> OpenAIStub:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    # ---------------------------------------------------------------- scripting

    def script(self, *replies: Reply) -> None:
        """Queue replies for the next requests (FIFO)."""
        for reply in replies:
            if not isinstance(reply, (Stream, Timed, Status)):
                raise TypeError(f"not a stub reply: {reply!r}")
        with self._lock:
            self._queue.extend(replies)

    def reset(self) -> None:
        """Clear the reply queue, recorded requests and disconnect counters."""
        with self._lock:
            self._queue.clear()
            self.requests.clear()
            self.authorizations.clear()
            self.models = []
            self.models_reply = None
            self.disconnects = 0
            self.disconnected.clear()
            self.default = None

    @property
    def pending(self) -> int:
        """How many scripted replies are still queued."""
        with self._lock:
            return len(self._queue)

    def _next_reply(self, body: dict) -> Reply | None:
        with self._lock:
            self.requests.append(body)
            if self._queue:
                return self._queue.popleft()
            default = self.default
        return default(body) if callable(default) else default

    def _note_disconnect(self) -> None:
        with self._lock:
            self.disconnects += 1
        self.disconnected.set()

    # ---------------------------------------------------------------- HTTP

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await self._serve_one(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, _Dropped):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            if task is not None:
                self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1)

    async def _read_request(self, reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str], bytes]:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, target, _version = lines[0].split(" ", 2)
        except ValueError:
            raise _BadRequest("malformed request line") from None
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep:
                raise _BadRequest("malformed header line")
            headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = bytearray()
            while True:
                size_line = await reader.readuntil(b"\r\n")
                size = int(size_line.split(b";", 1)[0].strip(), 16)
                if size == 0:
                    # trailers, then the blank line
                    while (await reader.readuntil(b"\r\n")) != b"\r\n":
                        pass
                    break
                body += await reader.readexactly(size)
                await reader.readexactly(2)
            return method, target, headers, bytes(body)
        length = int(headers.get("content-length", "0") or 0)
        body = await reader.readexactly(length) if length else b""
        return method, target, headers, body

    @staticmethod
    def _head(status: int, headers: dict[str, str]) -> bytes:
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def _send_json(self, writer: asyncio.StreamWriter, status: int, obj: dict, extra: dict | None = None) -> None:
        payload = json.dumps(obj).encode()
        headers = {
            "content-type": "application/json",
            "content-length": str(len(payload)),
            "connection": "close",
            "x-request-id": f"req_stub_{next(self._ids)}",
        }
        for k, v in (extra or {}).items():
            headers[str(k).lower()] = str(v)
        writer.write(self._head(status, headers) + payload)
        await writer.drain()

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            method, target, headers, raw = await self._read_request(reader)
        except (_BadRequest, ValueError) as exc:
            await self._send_json(writer, 400, Status(400, f"stub: bad request ({exc})").body())
            return
        path = target.split("?", 1)[0]
        with self._lock:
            self.authorizations.append(headers.get("authorization", ""))
        if method == "GET" and path == MODELS_PATH:
            reply = self.models_reply
            if reply is not None:
                await self._send_json(writer, reply.code, reply.body(), reply.headers)
            else:
                listed = [{"id": m, "object": "model", "created": 0, "owned_by": "stub"} for m in self.models]
                await self._send_json(writer, 200, {"object": "list", "data": listed})
            return
        if method != "POST" or path != CHAT_PATH:
            await self._send_json(
                writer, 404, Status(404, f"stub: no route for {method} {path}", error_code="not_found").body()
            )
            return
        try:
            body = json.loads(raw or b"null")
            if not isinstance(body, dict):
                raise ValueError("body is not a JSON object")
        except ValueError as exc:
            await self._send_json(writer, 400, Status(400, f"stub: invalid JSON body ({exc})").body())
            return

        reply = self._next_reply(body)
        if reply is None:
            await self._send_json(writer, 500, Status(500, "stub: no scripted reply").body())
        elif isinstance(reply, Status):
            await self._send_json(writer, reply.code, reply.body(), reply.headers)
        else:
            await self._stream(reader, writer, reply, body)

    # ---------------------------------------------------------------- streaming

    async def _stream(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, reply: Stream | Timed, request: dict
    ) -> None:
        arrival = time.time()  # the request has been read (Timed(stamp=True) reports it)
        n = next(self._ids)
        chunk_id, model = f"chatcmpl-stub-{n}", str(request.get("model") or "demo")

        def event(obj: dict) -> bytes:
            # Same id for every chunk of one reply, and the model the client asked for.
            # (Set afterwards: tool_call_chunk's own ``id`` is the tool call's id.)
            obj["id"], obj["model"] = chunk_id, model
            return sse(obj)

        finished = False  # set once the last byte of a complete reply has been handed to the transport

        async def send(data: bytes) -> None:
            writer.write(b"%x\r\n%s\r\n" % (len(data), data))
            await writer.drain()

        async def body() -> str:
            nonlocal finished
            writer.write(
                self._head(
                    200,
                    {
                        "content-type": "text/event-stream; charset=utf-8",
                        "transfer-encoding": "chunked",
                        "cache-control": "no-cache",
                        "connection": "close",
                        "x-request-id": f"req_stub_{n}",
                    },
                )
            )
            await send(event(role_chunk()))
            if isinstance(reply, Timed) and reply.stamp:
                await _send_stamped(writer, reply, chunk_id, model, arrival)
                tail = event(finish_chunk("stop")) + event(usage_chunk(10, reply.tokens)) + DONE
            elif isinstance(reply, Timed):
                loop = asyncio.get_running_loop()
                start = loop.time()
                for i in range(reply.tokens):
                    wait = start + i / reply.rate - loop.time()
                    if wait > 0:
                        await asyncio.sleep(wait)
                    obj = text_chunk(reply.text)
                    obj["emitted_at"] = time.time()
                    await send(event(obj))
                tail = event(finish_chunk("stop")) + event(usage_chunk(10, reply.tokens)) + DONE
            else:
                for i, part in enumerate(reply.parts):
                    wait = reply.first_delay if i == 0 else reply.delay
                    if wait > 0:
                        await asyncio.sleep(wait)
                    if isinstance(part, str):
                        await send(event(text_chunk(part)))
                    elif isinstance(part, Reasoning):
                        await send(event(reasoning_chunk(part.text, field=part.field)))
                    elif isinstance(part, bytes):
                        if part:  # an empty chunk would end the chunked body
                            await send(part)
                    else:
                        await send(
                            event(tool_call_chunk(part.index, id=part.id, name=part.name, arguments=part.arguments))
                        )
                if reply.hang:
                    await asyncio.Event().wait()  # until the client goes away (or stop())
                if reply.drop:
                    return "drop"
                tail = b""
                if reply.error is not None:
                    tail += sse({"error": {"message": reply.error, "type": "server_error"}})
                if reply.finish_reason is not None:
                    tail += event(finish_chunk(reply.finish_reason))
                if reply.usage is not None:
                    tail += event(usage_chunk(reply.usage[0], reply.usage[1]))
                tail += DONE
            writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(tail), tail))
            finished = True
            await writer.drain()
            return "done"

        async def watch_eof() -> None:
            # The client sends nothing after its request; EOF (or a reset) means it closed.
            with contextlib.suppress(ConnectionError):
                while await reader.read(65536):
                    pass

        sender = asyncio.ensure_future(body())
        watcher = asyncio.ensure_future(watch_eof())
        try:
            await asyncio.wait({sender, watcher}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # stop(): tear both down quietly
            sender.cancel()
            watcher.cancel()
            await asyncio.gather(sender, watcher, return_exceptions=True)
            raise
        if sender.done():
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            try:
                outcome = sender.result()
            except ConnectionError:
                if not finished:
                    self._note_disconnect()
                return
            if outcome == "drop":
                # Abrupt end mid chunked body: no terminating chunk. Flush what
                # was written so the client sees the parts, then cut.
                raise _Dropped()
            return
        # Client went away first.
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await sender
        if not finished:
            self._note_disconnect()


async def _send_stamped(writer: asyncio.StreamWriter, reply: Timed, chunk_id: str, model: str, arrival: float) -> None:
    """The text chunks of ``Timed(stamp=True)``. The chunk's JSON is formatted
    once and only the time per token: the benchmark runs hundreds of streams
    at once, and the stub's CPU competes with the server it measures."""
    chunk = {
        "id": chunk_id,
        "object": "chat.completion.chunk",
        "created": int(arrival),
        "model": model,
        "choices": [{"index": 0, "delta": {"content": "\0"}, "finish_reason": None}],
    }
    # The chunk's JSON around its text (a NUL there, which JSON writes as \u0000).
    before, after = json.dumps(chunk, separators=(",", ":")).split("\\u0000")
    prefix, suffix = f"data: {before}".encode(), f"{after}\n\n".encode()
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(reply.tokens):
        wait = start + i / reply.rate - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        text = b"t=%.6f;" % time.time() if i else b"r=%.6f;t=%.6f;" % (arrival, time.time())
        data = prefix + text + suffix
        writer.write(b"%x\r\n%s\r\n" % (len(data), data))
        # Waiting for the socket only when the client falls behind: an await
        # per token would be most of a token's cost.
        if writer.transport.get_write_buffer_size() > 1 << 16:
            await writer.drain()
