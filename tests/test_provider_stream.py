"""Reading the provider's event stream without the SDK's per-chunk objects: the
framing rules of server-sent events, and errors sent inside the stream."""

import json

import httpx2
import openai
import pytest

from chat.provider import stream as provider_stream
from chat.provider.stream import LineTooLong, ResponseTooLarge, chunks


def _response(pieces: list[bytes]) -> httpx2.Response:
    async def body():
        for piece in pieces:
            yield piece

    return httpx2.Response(
        200, content=body(), request=httpx2.Request("POST", "http://provider.invalid/v1/chat/completions")
    )


async def _read(pieces: list[bytes], max_line_bytes: int = 1_000_000, max_bytes: int = 10**8) -> list[dict]:
    return [chunk async for chunk in chunks(_response(pieces), max_line_bytes=max_line_bytes, max_bytes=max_bytes)]


def _data(obj: dict, newline: bytes = b"\n") -> bytes:
    return b"data: " + json.dumps(obj).encode() + newline + newline


async def test_events_split_anywhere_across_reads_come_out_whole():
    body = _data({"n": 1}) + _data({"n": 2}) + b"data: [DONE]\n\n"
    for cut in range(1, len(body)):
        assert await _read([body[:cut], body[cut:]]) == [{"n": 1}, {"n": 2}]


async def test_crlf_and_cr_line_ends_including_a_crlf_split_between_reads():
    body = _data({"n": 1}, b"\r\n") + _data({"n": 2}, b"\r") + b"data: [DONE]\r\n\r\n"
    assert await _read([body]) == [{"n": 1}, {"n": 2}]
    split = body.index(b"\r\n") + 1  # between the CR and the LF
    assert await _read([body[:split], body[split:]]) == [{"n": 1}, {"n": 2}]


async def test_pieces_of_any_size_give_the_same_chunks_whatever_the_line_ends():
    body = _data({"n": 1}, b"\r\n") + b": c\r\r" + _data({"n": 2}, b"\r") + _data({"n": 3}) + b"data: [DONE]\r\n\r\n"
    for size in range(1, len(body) + 1):
        pieces = [body[i : i + size] for i in range(0, len(body), size)]
        assert await _read(pieces) == [{"n": 1}, {"n": 2}, {"n": 3}], size


async def test_comments_other_fields_and_multi_line_data():
    body = b': keep-alive\n\nid: 7\nretry: 100\ndata: {"a":\ndata: 1}\n\ndata: [DONE]\n\n'
    assert await _read([body]) == [{"a": 1}]


async def test_nothing_after_done_is_taken_and_a_cut_off_event_is_dropped():
    assert await _read([_data({"n": 1}) + b"data: [DONE]\n\n" + _data({"n": 2})]) == [{"n": 1}]
    assert await _read([_data({"n": 1}) + b'data: {"n": 2}\n']) == [{"n": 1}]


@pytest.mark.parametrize(
    "body",
    [
        _data({"error": {"message": "The model is overloaded", "type": "server_error"}}),
        b'event: error\ndata: {"error": {"message": "The model is overloaded"}}\n\n',
    ],
    ids=["error chunk", "error event"],
)
async def test_an_error_inside_the_stream_raises_with_the_providers_message(body):
    with pytest.raises(openai.APIError, match="The model is overloaded"):
        await _read([_data({"n": 1}), body])


async def test_a_chunk_that_is_not_an_object_is_refused():
    with pytest.raises(ValueError, match="not a JSON object"):
        await _read([b"data: [1, 2]\n\n"])
    with pytest.raises(ValueError, match="Expecting property name"):
        await _read([b"data: {not json\n\n"])


@pytest.mark.parametrize("size", [100_000, 800_000], ids=["1x", "8x"])
async def test_a_long_line_in_small_pieces_is_worked_on_once(monkeypatch, size):
    """The work is linear in the body however it is cut: every byte is split into
    lines at most twice (its piece, then its line once that ends). A parser that
    split the whole buffer again for every piece took 17 s for a 40 MB line."""
    split = []

    def counted(buffer: bytes) -> list[bytes]:
        split.append(len(buffer))
        return lines(buffer)

    lines = provider_stream._lines
    monkeypatch.setattr(provider_stream, "_lines", counted)
    body = _data({"text": "x" * size}) + _data({"n": 2}, b"\r\n") + _data({"n": 3}, b"\r") + b"data: [DONE]\n\n"
    pieces = [body[i : i + 100] for i in range(0, len(body), 100)]
    assert await _read(pieces, max_line_bytes=10**7) == [{"text": "x" * size}, {"n": 2}, {"n": 3}]
    assert sum(split) <= 2 * len(body)


@pytest.mark.parametrize(
    "body",
    [
        b"data: " + b"x" * 2000,
        b"data: " + b"x" * 2000 + b"\n\n",
        b": " + b"x" * 2000 + b"\n\n",
        b"data: " + b"x" * 600 + b"\ndata: " + b"x" * 600 + b"\n\n",
    ],
    ids=["unfinished line", "finished line", "comment", "event of two lines"],
)
async def test_a_line_or_event_over_the_limit_is_refused(body):
    for piece in (10, len(body)):
        with pytest.raises(LineTooLong):
            await _read(
                [_data({"n": 1}), *(body[i : i + piece] for i in range(0, len(body), piece))], max_line_bytes=1000
            )


async def test_a_line_at_the_limit_is_read_and_one_byte_more_is_not():
    line = b"data: " + json.dumps({"t": "x" * 985}).encode()
    assert len(line) == 1000
    assert await _read([line + b"\n\n", b"data: [DONE]\n\n"], max_line_bytes=1000) == [{"t": "x" * 985}]
    with pytest.raises(LineTooLong):
        await _read([line + b" \n\n", b"data: [DONE]\n\n"], max_line_bytes=1000)


async def test_a_reply_over_the_limit_is_refused_even_after_done():
    body = _data({"n": 1}) * 100
    assert len(await _read([body, b"data: [DONE]\n\n"], max_bytes=len(body) + 14)) == 100
    with pytest.raises(ResponseTooLarge):
        await _read([body, b"data: [DONE]\n\n"], max_bytes=len(body) + 13)
    with pytest.raises(ResponseTooLarge):
        await _read([_data({"n": 1}), b"data: [DONE]\n\n", body], max_bytes=len(body))
