"""The smallest relay of the benchmark stub's stream as SSE: the floor the product
is measured against.

    daphne -b 127.0.0.1 -p 8001 bench.baseline_relay:app

A bare ASGI app: no framework, no database, no HTML, no auth, no event log. On
GET /?tokens=<n>&rate=<r> it asks the model (OPENAI_BASE_URL, OPENAI_API_KEY,
CHAT_MODEL) with the same `openai.AsyncOpenAI` client and `stream=True` the
product uses, and writes every text delta as an SSE frame as soon as it arrives,
then `done`. Nothing else: whatever the product spends beyond this is what the
product adds.
"""

import logging
import os
import re
from urllib.parse import parse_qs

import openai

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_client: openai.AsyncOpenAI | None = None
# As in the product's settings: no log line per provider request.
logging.getLogger("httpx2").setLevel(logging.WARNING)

HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


def client() -> openai.AsyncOpenAI:
    global _client
    if _client is None:
        _client = openai.AsyncOpenAI(
            base_url=os.environ["OPENAI_BASE_URL"], api_key=os.environ.get("OPENAI_API_KEY") or "bench", max_retries=0
        )
    return _client


async def app(scope, receive, send) -> None:
    if scope["type"] != "http":
        return
    query = parse_qs(scope["query_string"].decode())
    tokens = int(query.get("tokens", ["20"])[0])
    rate = float(query.get("rate", ["50"])[0])
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    stream = await client().chat.completions.create(
        model=os.environ.get("CHAT_MODEL") or "bench",
        messages=[{"role": "user", "content": f"bench tokens={tokens} rate={rate:g}"}],
        stream=True,
    )
    seq = 0
    try:
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta and chunk.choices[0].delta.content:
                seq += 1
                data = "".join(f"data: {line}\n" for line in _LINE_BREAK.split(chunk.choices[0].delta.content))
                body = f"id: {seq}\nevent: text_delta\n{data}\n".encode()
                await send({"type": "http.response.body", "body": body, "more_body": True})
    finally:
        await stream.close()
    await send({"type": "http.response.body", "body": f"id: {seq + 1}\nevent: done\ndata: done\n\n".encode()})
