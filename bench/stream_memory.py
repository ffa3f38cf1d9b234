"""Memory of a daphne process that holds many idle answer streams of one user,
then lets them go: is what stays a leak (objects kept) or the allocator?

    .venv/bin/python -m bench.stream_memory [--streams 4000] [--rounds 2] [--tracemalloc]
                                            [--finish-an-answer] [--garbage] [--env NAME=VALUE ...]

(`--env CHAT_MAX_STREAMS_PER_USER=100000` lifts the limit on a user's streams.)

One answer is kept streaming (the model stub sends a word, then hangs), and
`--streams` connections of its owner read its stream at once, each from a raw
socket (no HTTP library: the client must not be what runs out of memory), then
all close. The product runs under bench/memory_probe.py, which reports the
server's resident memory, the objects the collector tracks, the streams still
open, glibc's heap and CPython's arenas: before, with the streams open, after
they closed, and after a full collection plus malloc_trim(0). A second round
opens and closes as many again: a leak grows with every round, memory the
allocator keeps for reuse does not.
"""

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import httpx2

from tests.live import Browserless, LiveServer
from tests.openai_stub import OpenAIStub, Stream

USERS = {"alice": "alice-password"}


async def open_stream(url: str, path: str, cookie: str) -> asyncio.StreamWriter:
    """A reader of the stream that stays after its first frame (the `retry:` line)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nCookie: sessionid={cookie}\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    received = b""
    while b"retry:" not in received:
        chunk = await asyncio.wait_for(reader.read(4096), 30)
        if not chunk:
            raise RuntimeError(f"the stream closed before its first frame: {received[:300]!r}")
        received += chunk
    return writer


async def open_streams(url: str, path: str, cookie: str, count: int, batch: int = 50) -> list[asyncio.StreamWriter]:
    writers: list[asyncio.StreamWriter] = []
    for start in range(0, count, batch):
        writers += await asyncio.gather(*(open_stream(url, path, cookie) for _ in range(min(batch, count - start))))
    return writers


async def probe(url: str, query: str = "") -> dict:
    async with httpx2.AsyncClient(timeout=120) as http:
        return (await http.get(f"{url}/__bench__/memory{query}")).json()


async def wait_for_streams(url: str, count: int, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        figures = await probe(url)
        if (figures["streams_open"], figures["stream_generators"]) == (count, count) or time.monotonic() > deadline:
            return figures
        await asyncio.sleep(0.5)


async def close(writers: list[asyncio.StreamWriter]) -> None:
    for writer in writers:
        writer.close()
    await asyncio.gather(*(writer.wait_closed() for writer in writers), return_exceptions=True)


HEADER = (
    "| moment | RSS MB | streams open | stream generators | gc objects | glibc held MB | glibc in use MB "
    "| pymalloc arenas (1 MiB) | arenas high-water | pymalloc used MB | pymalloc free MB | traced MB |\n"
    + "| --- " * 12
    + "|"
)


def row(label: str, f: dict) -> str:
    g, p = f["glibc"], f["pymalloc"]
    traced = f.get("traced_kb", {}).get("current")
    return (
        f"| {label} | {f['rss_kb'] / 1024:.0f} | {f['streams_open']} | {f['stream_generators']} | {f['gc_objects']} "
        f"| {g['held_kb'] / 1024:.0f} | {g['in_use_kb'] / 1024:.0f} | {p['arenas_current']} | {p['arenas_highwater']} "
        f"| {p['used_kb'] / 1024:.0f} | {(p['free_blocks_kb'] + p['free_pools_kb']) / 1024:.0f} "
        f"| {'' if traced is None else f'{traced / 1024:.0f}'} |"
    )


async def main(args) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="stream-memory-"))
    env = {
        "CHAT_IDLE_TIMEOUT": "3600",  # the hung answer stays streaming
        "CHAT_STREAM_POLL": "60",  # idle streams stay idle: no database poll every 3 s
        "CHAT_HEARTBEAT_STALE": "3600",
        "CHAT_HEARTBEAT_INTERVAL": "2",
        **({"BENCH_TRACEMALLOC": "1"} if args.tracemalloc else {}),
        **dict(item.split("=", 1) for item in args.env),
    }
    with OpenAIStub() as stub:
        server = LiveServer(
            workdir,
            {"OPENAI_BASE_URL": stub.base_url, "OPENAI_API_KEY": "test", "CHAT_MODEL": "stub-model", **env},
        )
        server.app = "bench.memory_probe:application"
        server.prepare(USERS)
        server.start()
        try:
            stub.script(Stream(["Hello"], hang=True))
            browser = Browserless(server.url, "alice", USERS["alice"])
            conversation_id, message_id = browser.new_conversation("Hang")
            path = f"/c/{conversation_id}/m/{message_id}/stream/"
            cookie = browser.http.cookies["sessionid"]
            # Warm up: lazy imports, caches, the first connections.
            await close(await open_streams(server.url, path, cookie, 50))
            await wait_for_streams(server.url, 0)
            rows = [row("before", await probe(server.url, "?trim=1&baseline=1"))]
            for n in range(1, args.rounds + 1):
                started = time.monotonic()
                writers = await open_streams(server.url, path, cookie, args.streams)
                opened = time.monotonic() - started
                # Beyond the server's CHAT_MAX_STREAMS_PER_USER, newer streams replace older ones.
                limit = (await probe(server.url))["stream_limit"]
                during = await wait_for_streams(server.url, min(args.streams, limit))
                rows.append(row(f"round {n}: {args.streams} opened in {opened:.1f} s", during))
                if args.finish_an_answer and n == 1:
                    # The process's first answer ends while the streams are open:
                    # chat/generation.py then freezes every object alive (gc.freeze).
                    stub.script(Stream(["Done"]))
                    other, answer = await asyncio.to_thread(browser.new_conversation, "Finish")
                    frames = await asyncio.to_thread(list, browser.frames(other, answer))
                    assert frames[-1].event == "done", frames
                    rows.append(
                        row(
                            f"round {n}: an answer finished (frozen: {(await probe(server.url))['gc_frozen']})",
                            await probe(server.url),
                        )
                    )
                await close(writers)
                after = await wait_for_streams(server.url, 0, args.close_wait)
                rows.append(row(f"round {n}: all closed", after))
                if args.garbage:
                    print(json.dumps(await probe(server.url, "?garbage=1"), indent=1))
                    if args.finish_an_answer:
                        print("frozen:", json.dumps(await probe(server.url, "?garbage=1&unfreeze=1"), indent=1))
                trimmed = await probe(server.url, "?trim=1")
                rows.append(row(f"round {n}: closed, gc + malloc_trim", trimmed))
                if args.verbose:
                    print(json.dumps({"during": during, "after": after, "trimmed": trimmed}))
            print(HEADER)
            print("\n".join(rows))
        finally:
            server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--tracemalloc", action="store_true", help="trace allocations in the server (slower, more memory)"
    )
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the server")
    parser.add_argument(
        "--close-wait", type=float, default=120, help="seconds to wait for the server to see the streams close"
    )
    parser.add_argument(
        "--finish-an-answer", action="store_true", help="let the process's first answer end while the streams are open"
    )
    parser.add_argument(
        "--garbage", action="store_true", help="after the streams closed, show what only reference cycles keep"
    )
    parser.add_argument("--verbose", action="store_true")
    asyncio.run(main(parser.parse_args()))
