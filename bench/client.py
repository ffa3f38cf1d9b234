"""The load generator's side: simulated browsers reading answers as SSE.

One asyncio process. The page flow (log in, POST the prompt, which answers with
the exchange's fragment) goes through `httpx2.AsyncClient`; the SSE stream itself
is read from a raw asyncio socket, timestamped the moment each read returns, then
parsed. That keeps the client's own cost per token small (no HTTP library between
the socket and the clock), so at high N the client is the last thing to saturate.

Per token, added latency = receive time - the emission time the stub wrote into
the token's text (bench/stub.py). Frames may carry several tokens (a server may
coalesce deltas): each token still gets its own latency.
"""

import asyncio
import html
import re
import time
from dataclasses import dataclass, field

import httpx2

from bench.stub import prompt_spec

TOKEN = re.compile(rb"t=(\d+\.\d+);")
ARRIVAL = re.compile(rb"r=(\d+\.\d+);")
TERMINAL = (b"done", b"error")
MARKUP = re.compile(rb"<[^>]*>")


@dataclass
class Answer:
    started: float  # time.time() when the answer's first request was sent
    ok: bool = False
    error: str = ""
    posted: float | None = None  # the POST's response arrived (product)
    stream_sent: float | None = None  # the SSE GET was written
    opened: float | None = None  # the SSE response's headers arrived
    stub_arrival: float | None = None  # the model request reached the stub
    first_emit: float | None = None
    first_recv: float | None = None
    finished: float | None = None
    # Tokens emitted once the stream is established (its response headers have
    # arrived): the live relay path.
    live: list[float] = field(default_factory=list)
    live_emitted: list[float] = field(default_factory=list)  # their emission times
    # Tokens emitted before (replayed or waiting on connect): in time to first token.
    catchup: list[float] = field(default_factory=list)
    tokens: int = 0
    frames: int = 0
    terminal: str = ""
    # When set (long answers): (receive time, tokens so far, body bytes so far) at every read.
    progress: list[tuple[float, int, int]] | None = None

    seen: set[bytes] = field(default_factory=set, repr=False)

    def received(self, data: bytes, now: float, live: bool = True) -> bool:
        """Account for the tokens in `data`, received at `now`; False (and an
        error) if one came twice. Tokens emitted before the stream was
        established, or shown by the page, are catch-up, not live.

        A delta that moves a cut of the live Markdown renders the open block
        again (chat/live_markdown.py): its tokens already seen are not counted
        again, and its markup (the raw text's element may split a token) is
        dropped first."""
        rendered = b"hx-swap-oob" in data
        if rendered:
            data = MARKUP.sub(b"", data)
        if self.first_recv is None:
            arrival = ARRIVAL.search(data)
            if arrival:
                self.stub_arrival = float(arrival[1])
        for match in TOKEN.finditer(data):
            if match[1] in self.seen:
                if rendered:
                    continue
                self.error = "a token arrived twice"
                return False
            self.seen.add(match[1])
            emitted = float(match[1])
            if self.first_recv is None:
                self.first_recv, self.first_emit = now, emitted
            self.tokens += 1
            if live and self.opened is not None and emitted >= self.opened:
                self.live.append(now - emitted)
                self.live_emitted.append(emitted)
            else:
                self.catchup.append(now - emitted)
        return True

    @property
    def ttft(self) -> float | None:
        if self.first_recv is None:
            return None
        return self.first_recv - self.started

    @property
    def stub_ttft(self) -> float | None:
        if self.first_emit is None or self.stub_arrival is None:
            return None
        return self.first_emit - self.stub_arrival

    @property
    def ttft_added(self) -> float | None:
        if self.ttft is None or self.stub_ttft is None:
            return None
        return self.ttft - self.stub_ttft


class _Chunked:
    """Incremental decoder of an HTTP/1.1 chunked body."""

    def __init__(self) -> None:
        self.buffer = b""
        self.remaining = 0  # bytes left in the current chunk (+2 for its CRLF)
        self.ended = False

    def feed(self, data: bytes) -> bytes:
        self.buffer += data
        out = []
        while self.buffer and not self.ended:
            if self.remaining == 0:
                end = self.buffer.find(b"\r\n")
                if end < 0:
                    break
                size = int(self.buffer[:end].split(b";", 1)[0], 16)
                self.buffer = self.buffer[end + 2 :]
                if size == 0:
                    self.ended = True
                    break
                self.remaining = size + 2
            take = self.buffer[: self.remaining]
            self.buffer = self.buffer[len(take) :]
            self.remaining -= len(take)
            # Drop the CRLF that ends a chunk (it may arrive split).
            keep = len(take) - max(0, 2 - self.remaining)
            out.append(take[: max(keep, 0)])
        return b"".join(out)


async def read_sse(
    host: str,
    port: int,
    path: str,
    answer: Answer,
    *,
    cookie: str = "",
    expect_tokens: int | None = None,
    timeout: float = 60,
) -> Answer:
    """Read one SSE response to its terminal frame, timing every token."""
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port, limit=1 << 22)
            request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n"
            if cookie:
                request += f"Cookie: {cookie}\r\n"
            answer.stream_sent = time.time()
            writer.write((request + "\r\n").encode())
            head = await reader.readuntil(b"\r\n\r\n")
            answer.opened = time.time()
            status = int(head.split(b" ", 2)[1])
            if status != 200:
                answer.error = f"stream answered {status}"
                return answer
            decoder = _Chunked() if b"transfer-encoding: chunked" in head.lower() else None
            body = b""
            received = 0
            while True:
                data = await reader.read(1 << 20)
                now = time.time()
                if not data:
                    answer.error = "stream ended without a terminal frame"
                    return answer
                received += len(data)
                body += decoder.feed(data) if decoder is not None else data
                while (end := body.find(b"\n\n")) >= 0:
                    block, body = body[:end], body[end + 2 :]
                    event, payload = b"message", []
                    for line in block.split(b"\n"):
                        if line.startswith(b"data:"):
                            payload.append(line[6:] if line[5:6] == b" " else line[5:])
                        elif line.startswith(b"event:"):
                            event = line[6:].strip()
                    if not payload:
                        continue  # retry:, a comment (ping)
                    answer.frames += 1
                    if event in TERMINAL:
                        answer.terminal = event.decode()
                        answer.finished = now
                        if event == b"error":
                            answer.error = (
                                "error frame: " + re.sub(r"<[^>]+>|\s+", " ", b"\n".join(payload).decode())[:200]
                            )
                        elif expect_tokens is not None and answer.tokens != expect_tokens:
                            answer.error = f"{answer.tokens} tokens arrived, {expect_tokens} were sent"
                        else:
                            answer.ok = True
                        return answer
                    if event != b"text_delta":
                        continue
                    if not answer.received(b"\n".join(payload), now):
                        return answer
                if answer.progress is not None:
                    answer.progress.append((now, answer.tokens, received))
                if decoder is not None and decoder.ended:
                    answer.error = "stream ended without a terminal frame"
                    return answer
    except TimeoutError:
        answer.error = f"no terminal frame within {timeout:g} s"
    except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
        answer.error = f"{type(exc).__name__}: {exc}"
    finally:
        if writer is not None:
            writer.close()
    return answer


class Browser:
    """What the page does, for one logged-in user (shared by many tabs)."""

    def __init__(self, base_url: str, stream_url: str | None = None) -> None:
        """`stream_url`: another worker to read the streams from, as a proxy
        without sticky sessions may send them (the production configuration)."""
        self.base_url = base_url
        host_port = (stream_url or base_url).split("://", 1)[1]
        self.host, port = host_port.rsplit(":", 1)
        self.port = int(port)
        self.http = httpx2.AsyncClient(
            base_url=base_url,
            timeout=60,
            limits=httpx2.Limits(max_connections=None, max_keepalive_connections=1000),
        )
        self.csrf = ""

    async def login(self, username: str, password: str) -> None:
        await self.http.get("/accounts/login/")
        response = await self.http.post(
            "/accounts/login/",
            data={"username": username, "password": password, "csrfmiddlewaretoken": self.http.cookies["csrftoken"]},
            headers={"Referer": self.base_url + "/accounts/login/"},
        )
        if response.status_code != 302:
            raise RuntimeError(f"login failed ({response.status_code})")
        self.csrf = self.http.cookies["csrftoken"]

    @property
    def cookie(self) -> str:
        return "; ".join(f"{name}={value}" for name, value in self.http.cookies.items())

    async def start_answer(self, prompt: str, answer: Answer | None = None) -> tuple[str | None, str]:
        """POST the prompt as htmx does and return the SSE URL of the assistant
        message in the fragment it answers with (or None and why)."""
        response = await self.http.post(
            "/c/new/",
            data={"prompt": prompt},
            headers={"X-CSRFToken": self.csrf, "HX-Request": "true", "Referer": self.base_url + "/"},
        )
        now = time.time()
        urls = re.findall(r'sse-connect="([^"]+)"', response.text)
        if response.status_code != 200 or not urls:
            return None, f"POST /c/new/ answered {response.status_code} without a live stream: {response.text[:200]}"
        url = html.unescape(urls[-1])
        if answer is not None:
            answer.posted = now
            # The fragment shows the text stored so far and its stream resumes after
            # it: those tokens reach the reader with the fragment.
            match = re.search(r"/m/(\d+)/stream/", url)
            start = response.text.find(f'id="msg-{match[1]}"') if match else -1
            if start >= 0:
                end = response.text.find("</article>", start)
                answer.received(response.text[start : end if end >= 0 else None].encode(), now, live=False)
        return url, ""

    async def answer(self, tokens: int, rate: float, timeout: float = 60, answer: Answer | None = None) -> Answer:
        """One answer as the page has it; `answer` (optional) is filled in as it
        goes, for a caller that watches it."""
        answer = answer or Answer(started=time.time())
        try:
            url, why = await self.start_answer(prompt_spec(tokens, rate), answer)
        except httpx2.HTTPError as exc:
            url, why = None, f"{type(exc).__name__}: {exc}"
        if url is None:
            answer.error = why
            return answer
        return await read_sse(
            self.host, self.port, url, answer, cookie=self.cookie, expect_tokens=tokens, timeout=timeout
        )

    async def replay(self, url: str, expect_tokens: int, timeout: float = 30) -> tuple[float, Answer]:
        """Reconnect to a finished answer from its start: seconds from request to the
        terminal frame. Every token must come back once (frames may be coalesced)."""
        answer = Answer(started=time.time())
        await read_sse(
            self.host, self.port, url, answer, cookie=self.cookie, expect_tokens=expect_tokens, timeout=timeout
        )
        return ((answer.finished or time.time()) - answer.started), answer

    async def aclose(self) -> None:
        await self.http.aclose()


class RelayClient:
    """A viewer of the baseline relay: one GET, no page."""

    def __init__(self, base_url: str) -> None:
        host_port = base_url.split("://", 1)[1]
        self.host, port = host_port.rsplit(":", 1)
        self.port = int(port)

    async def answer(self, tokens: int, rate: float, timeout: float = 60, answer: Answer | None = None) -> Answer:
        answer = answer or Answer(started=time.time())
        return await read_sse(
            self.host, self.port, f"/?tokens={tokens}&rate={rate:g}", answer, expect_tokens=tokens, timeout=timeout
        )

    async def aclose(self) -> None:
        pass
