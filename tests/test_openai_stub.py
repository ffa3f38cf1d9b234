"""Self-test of tests/openai_stub.py against the real openai SDK (httpx2 transport).

Plain pytest functions driving ``asyncio.run``: no pytest-asyncio, no Django DB.
"""

import asyncio
import json
import time

import httpx2
import openai
import pytest

try:
    from tests.openai_stub import OpenAIStub, Status, Stream, Timed, ToolCallPart
except ImportError:  # tests/ itself on sys.path (rootdir-less run, no tests/__init__.py)
    from openai_stub import OpenAIStub, Status, Stream, Timed, ToolCallPart


@pytest.fixture
def stub():
    with OpenAIStub() as s:
        yield s


def client(stub, **kwargs) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=stub.base_url, api_key="test", max_retries=0, **kwargs)


async def create(c: openai.AsyncOpenAI, **kwargs):
    kwargs.setdefault("model", "stub-model")
    kwargs.setdefault("messages", [{"role": "user", "content": "hi"}])
    return await c.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kwargs)


async def collect(stream) -> list:
    return [chunk async for chunk in stream]


def test_base_url_and_404(stub):
    assert stub.base_url.startswith("http://127.0.0.1:") and stub.base_url.endswith("/v1")

    async def main():
        async with httpx2.AsyncClient() as http:
            r = await http.get(stub.base_url + "/embeddings")
            assert r.status_code == 404
            assert "error" in r.json()
            r = await http.post(
                stub.base_url + "/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
            )
            assert r.status_code == 400

    asyncio.run(main())
    assert stub.requests == []


def test_models_are_listed_or_refused(stub):
    async def main():
        async with httpx2.AsyncClient() as http:
            stub.models = ["b", "a"]
            r = await http.get(stub.base_url + "/models", headers={"Authorization": "Bearer k"})
            assert r.status_code == 200
            assert [m["id"] for m in r.json()["data"]] == ["b", "a"]
            stub.models_reply = Status(401, "bad key")
            r = await http.get(stub.base_url + "/models")
            assert r.status_code == 401 and r.json()["error"]["message"] == "bad key"

    asyncio.run(main())
    assert stub.authorizations == ["Bearer k", ""]
    assert stub.requests == []


def test_text_stream_finish_and_usage(stub):
    stub.script(Stream(["Hel", "lo", " world"], finish_reason="length", usage=(7, 3)))
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]

    async def main():
        return await collect(await create(client(stub), messages=messages))

    chunks = asyncio.run(main())
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello world"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["length"]
    assert chunks[-1].choices == []
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens, chunks[-1].usage.total_tokens) == (
        7,
        3,
        10,
    )
    assert {c.model for c in chunks} == {"stub-model"}
    assert len({c.id for c in chunks}) == 1

    assert len(stub.requests) == 1
    assert stub.requests[0]["messages"] == messages
    assert stub.requests[0]["stream"] is True
    assert stub.requests[0]["stream_options"] == {"include_usage": True}
    assert stub.disconnects == 0 and not stub.disconnected.is_set()


def test_no_finish_reason_no_usage_ends_cleanly(stub):
    stub.script(Stream(["a"], finish_reason=None, usage=None))

    async def main():
        return await collect(await create(client(stub)))

    chunks = asyncio.run(main())
    assert [c.choices[0].delta.content for c in chunks] == ["", "a"]
    assert all(c.choices[0].finish_reason is None for c in chunks)
    assert all(c.usage is None for c in chunks)
    assert stub.disconnects == 0


def test_tool_call_parts(stub):
    stub.script(
        Stream(
            [
                "Let me check.",
                ToolCallPart(0, id="call_a", name="get_weather", arguments='{"city": '),
                ToolCallPart(0, arguments='"Oslo"}'),
                ToolCallPart(1, id="call_b", name="get_time"),
                ToolCallPart(1, arguments="{}"),
            ],
            finish_reason="tool_calls",
        )
    )

    async def main():
        return await collect(await create(client(stub), tools=[]))

    chunks = asyncio.run(main())
    deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert len(deltas) == 4
    assert (deltas[0].index, deltas[0].id, deltas[0].type, deltas[0].function.name) == (
        0,
        "call_a",
        "function",
        "get_weather",
    )
    assert deltas[1].id is None and deltas[1].function.name is None
    calls: dict[int, dict] = {}
    for d in deltas:
        call = calls.setdefault(d.index, {"id": None, "name": None, "arguments": ""})
        call["id"] = call["id"] or d.id
        call["name"] = call["name"] or d.function.name
        call["arguments"] += d.function.arguments or ""
    assert calls == {
        0: {"id": "call_a", "name": "get_weather", "arguments": '{"city": "Oslo"}'},
        1: {"id": "call_b", "name": "get_time", "arguments": "{}"},
    }
    assert json.loads(calls[0]["arguments"]) == {"city": "Oslo"}
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["tool_calls"]


@pytest.mark.parametrize(
    ("status", "exc_type"),
    [(429, openai.RateLimitError), (500, openai.InternalServerError), (401, openai.AuthenticationError)],
)
def test_status_errors(stub, status, exc_type):
    stub.script(Status(status, "nope", headers={"retry-after": "0"}))

    async def main():
        await create(client(stub))

    with pytest.raises(exc_type) as info:
        asyncio.run(main())
    assert info.value.status_code == status
    assert info.value.body["message"] == "nope"
    assert info.value.response.headers["retry-after"] == "0"
    assert len(stub.requests) == 1


def test_queue_fifo_then_default_then_unscripted(stub):
    stub.script(Stream(["one"]), Stream(["two"]))
    stub.default = Stream(["default"])

    async def text():
        chunks = await collect(await create(client(stub)))
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    assert asyncio.run(text()) == "one"
    assert asyncio.run(text()) == "two"
    assert asyncio.run(text()) == "default"
    stub.default = None
    with pytest.raises(openai.InternalServerError, match="stub: no scripted reply"):
        asyncio.run(text())
    assert len(stub.requests) == 4

    stub.script(Stream(["queued"]))
    stub.reset()
    assert stub.requests == [] and stub.disconnects == 0
    with pytest.raises(openai.InternalServerError):
        asyncio.run(text())


def test_retry_after_429_with_real_retries(stub):
    stub.script(Status(429, "slow down", headers={"retry-after": "0"}), Stream(["ok"]))

    async def main():
        c = openai.AsyncOpenAI(base_url=stub.base_url, api_key="test", max_retries=1)
        return await collect(await create(c))

    chunks = asyncio.run(main())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "ok"
    assert len(stub.requests) == 2


def test_drop_raises_api_connection_error(stub):
    stub.script(Stream(["a", "b"], drop=True))
    got: list[str] = []

    async def main():
        stream = await create(client(stub))
        async for chunk in stream:
            got.append(chunk.choices[0].delta.content)

    with pytest.raises(openai.APIConnectionError) as info:
        asyncio.run(main())
    # Observed: openai.APIConnectionError("Connection error.") raised from
    # httpx2.RemoteProtocolError("peer closed connection without sending complete
    # message body (incomplete chunked read)").
    assert type(info.value) is openai.APIConnectionError
    assert isinstance(info.value.__cause__, httpx2.RemoteProtocolError)
    assert "incomplete chunked read" in str(info.value.__cause__)
    assert got == ["", "a", "b"]
    # The server cut the connection itself: not a client disconnect.
    assert stub.disconnects == 0


def test_hang_then_client_close_is_detected(stub):
    stub.script(Stream(["a"], hang=True))

    async def main():
        stream = await create(client(stub))
        got = []
        async for chunk in stream:
            got.append(chunk.choices[0].delta.content)
            if chunk.choices[0].delta.content == "a":
                break
        assert not stub.disconnected.is_set()
        await stream.close()  # observed: returns normally, raises nothing
        return got

    assert asyncio.run(main()) == ["", "a"]
    assert stub.disconnected.wait(2)
    assert stub.disconnects == 1


def test_hang_idle_timeout(stub):
    stub.script(Stream(["a"], hang=True))

    async def main():
        c = client(stub, timeout=httpx2.Timeout(5.0, read=0.3))
        stream = await create(c)
        async for _ in stream:
            pass

    t0 = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        asyncio.run(main())
    assert time.monotonic() - t0 < 3
    assert stub.disconnected.wait(2)
    assert stub.disconnects == 1


def test_client_abandons_stream_midway(stub):
    stub.script(Stream(["x"] * 50, delay=0.02))

    async def main():
        stream = await create(client(stub))
        n = 0
        async for _ in stream:
            n += 1
            if n == 3:
                break
        await stream.close()

    asyncio.run(main())
    assert stub.disconnected.wait(2)
    assert stub.disconnects == 1


def test_delays(stub):
    stub.script(Stream(["a", "b", "c"], first_delay=0.2, delay=0.1))

    async def main():
        stream = await create(client(stub))
        times = {}
        t0 = time.monotonic()
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                times[chunk.choices[0].delta.content] = time.monotonic() - t0
        return times

    times = asyncio.run(main())
    assert times["a"] >= 0.18
    assert times["b"] - times["a"] >= 0.08
    assert times["c"] - times["b"] >= 0.08


def test_timed_emits_emitted_at(stub):
    stub.script(Timed(tokens=10, rate=100.0, text="t "))

    async def main():
        stream = await create(client(stub))
        out = []
        async for chunk in stream:
            out.append((time.time(), chunk))
        return out

    out = asyncio.run(main())
    timed = [(recv, c) for recv, c in out if c.choices and c.choices[0].delta.content == "t "]
    assert len(timed) == 10
    stamps = [c.model_extra["emitted_at"] for _, c in timed]
    assert all(isinstance(s, float) for s in stamps)
    assert stamps == sorted(stamps)
    # 10 tokens at 100/s: first at ~0, last at ~0.09 s on an absolute schedule.
    assert 0.07 <= stamps[-1] - stamps[0] < 0.5
    assert all(recv >= s - 0.01 for (recv, _), s in zip(timed, stamps, strict=True))
    assert [c.choices[0].finish_reason for _, c in out if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert out[-1][1].usage.completion_tokens == 10


def test_concurrent_streams(stub):
    stub.default = Timed(tokens=5, rate=50.0)

    async def one(c):
        return len([ch async for ch in await create(c)])

    async def main():
        c = client(stub)
        return await asyncio.gather(*(one(c) for _ in range(8)))

    t0 = time.monotonic()
    counts = asyncio.run(main())
    assert counts == [8] * 8  # role + 5 tokens + finish + usage
    assert time.monotonic() - t0 < 2
    assert len(stub.requests) == 8


def test_stop_with_hanging_connection_is_prompt():
    stub = OpenAIStub().start()
    stub.script(Stream([], hang=True))

    async def main():
        stream = await create(client(stub))
        await stream.__anext__()
        t0 = time.monotonic()
        stub.stop()
        assert time.monotonic() - t0 < 2
        with pytest.raises(openai.APIConnectionError):
            async for _ in stream:
                pass

    asyncio.run(main())
