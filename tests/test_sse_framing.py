"""SSE framing: whatever the model writes arrives intact and inert."""

import html
import re

import pytest

from chat import sse
from chat.rendering import text_delta_fragment
from tests.sse_client import parse

TRICKY = [
    "line one\nline two",
    "  leading spaces",
    "<script>alert(1)</script>",
    "data: not a field\n\nid: 99\nevent: done\n",
    "crlf\r\nand cr\rend",
    "\n\n",
    "unicode \u2028 separator \u0085 kept",
    " ",
]


def text_fragment(text: str) -> str:
    """A delta that moves no cut: its text, escaped, appended to the raw text."""
    return text_delta_fragment(7, {"text": text})


def _browser_text(fragment: str) -> str:
    """What the page shows for a text fragment: no tags, entities decoded."""
    assert re.fullmatch(r"[^<>]*", fragment), fragment
    return html.unescape(fragment)


@pytest.mark.parametrize("text", TRICKY)
def test_it_carries_text_exactly(text):
    frames = parse(sse.frame("text_delta", text_fragment(text), id=7))
    assert len(frames) == 1
    assert frames[0].event == "text_delta"
    assert frames[0].id == "7"
    assert _browser_text(frames[0].data) == text


def test_it_makes_markup_inert():
    fragment = text_fragment('<img src=x onerror="alert(1)"><script>x</script>')
    assert "<img" not in fragment and "<script" not in fragment
    assert "&lt;img" in fragment


def test_it_splits_payload_lines_on_every_line_break():
    assert sse.frame("done", "a\r\nb\rc\nd") == "event: done\ndata: a\ndata: b\ndata: c\ndata: d\n\n"


def test_every_event_has_data():
    assert "data: \n" in sse.frame("done", "")
    assert parse(sse.frame("done", ""))[0].event == "done"


def test_it_does_not_split_on_unicode_line_separators():
    assert sse.frame("text_delta", "a\u2028b") == "event: text_delta\ndata: a\u2028b\n\n"
