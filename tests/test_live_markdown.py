"""The live Markdown renderer (chat/live_markdown.py) against the final render.

Over a corpus of documents split at every point, and over arbitrary texts and
splits: the state after any deltas is the state of their concatenation (so a
replay after a cursor builds what a page rendered at that cursor builds); the
settled blocks and the open part rendered in full are, at every moment, exactly
the final render of the text so far (so `done` changes nothing); and every
fragment sent on the way is inert.
"""

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chat import events, sse
from chat.events import Event
from chat.live_markdown import MIN_GAP, LiveMarkdown, merged
from chat.markdown import render_markdown
from chat.rendering import escape_text, event_fragment
from tests.conftest import live_page
from tests.live_page import LivePage
from tests.sse_client import parse
from tests.test_output_safety import HOSTILE, MARKDOWN, MARKDOWN_TAGS, PROPERTY, assert_inert, tree

MESSAGE_ID = 7

CORPUS = {
    "mixed": (
        "# Title\n\nSome **bold** and *italic* text, `code` and a [link](https://example.com/a).\n"
        "A second line.\n\n- one\n- two\n  - nested\n- three\n\n1. first\n2. second\n\n"
        "> a quote\n> on two lines\n\n---\n\nThe end."
    ),
    "fence closed": "Before:\n\n```python\ndef f(x):\n    return x * 2\n```\n\nAfter the code.",
    "fence never closed": "Look:\n\n```js\nconst a = 1;\n\nconst b = 2;\n",
    "tilde fence and a longer closer": "~~~\ncode ~~~ inside\n~~~~\ntext",
    "list continues after a blank line": "- a\n- b\n\n- c\n\n  more of c\n\nAfter the list.\n",
    "table growing row by row": "| a | b |\n|:--|--:|\n| 1 | 2 |\n| 3 | 4 |\n| 5 | 6 |\n\nBelow.",
    "table interrupting a paragraph": "text\na|b\n-|-\n1|2\n\nnot|a|table\n-|-x\n",
    "references and footnotes": "See [the docs][d] and [^1].\n\n[d]: https://example.com/docs\n\n[^1]: A note.\n\n[d]\n",
    "html in model output": '<div onclick="x">hi</div>\n\n<script>alert(1)</script> <img src=x onerror=alert(1)>\n',
    "setext headings and rules": "Title\n=====\n\nSub\n---\n\npara\n***\n",
    "indented code": "para\n\n    code line\n    more\n\nafter\n",
    "multi-byte and combining": "caf\u00e9 e\u0301 \U0001f469\u200d\U0001f4bb **gr\u00fc\u00df** \u4e2d\u6587\n\n\u2028x\r\ny\r\n",
    "crlf": "# T\r\n\r\n- a\r\n- b\r\n\r\npara\r\n",
    "deep nesting": "ok\n\n" + "> " * 30 + "deep\n\nafter\n",
    "hostile links": "[x](javascript:alert(1)) [y](data:text/html,x) <javascript:alert(2)>\n\n[ok](https://ok.example/)",
}
corpus = pytest.mark.parametrize("doc", CORPUS.values(), ids=CORPUS.keys())


def state(live: LiveMarkdown) -> tuple:
    return live.text, live.cut, live.open_parts


def fed(*deltas: str) -> tuple[LiveMarkdown, list]:
    live = LiveMarkdown()
    updates = [live.feed(d) for d in deltas]
    return live, updates


@corpus
def test_any_split_builds_the_state_of_the_whole_text(doc):
    whole = LiveMarkdown(doc)
    for i in range(len(doc) + 1):
        live, updates = fed(doc[:i], doc[i:])
        assert "".join(u.settled for u in updates) == whole.settled_html, i
        assert state(live) == state(whole), i


@corpus
def test_one_character_at_a_time_builds_the_state_of_the_whole_text(doc):
    live, updates = fed(*doc)
    whole = LiveMarkdown(doc)
    assert "".join(u.settled for u in updates) == whole.settled_html
    assert state(live) == state(whole)


@corpus
def test_at_every_moment_the_live_render_completed_is_the_final_render(doc):
    for i in range(len(doc) + 1):
        live = LiveMarkdown(doc[:i])
        assert live.settled_html + live.close() == render_markdown(doc[:i]), i


@corpus
def test_every_fragment_on_the_way_is_inert(doc):
    live = LiveMarkdown()
    for char in doc:
        update = live.feed(char)
        for html in (update.settled, opened(update)):
            assert_inert(tree(html), allowed_tags=MARKDOWN_TAGS)
        assert_inert(tree(event_fragment(MESSAGE_ID, text_event(char, update.as_data()))), allowed_tags=LIVE_TAGS)


LIVE_TAGS = MARKDOWN_TAGS | {"div", "span"}


def opened(update) -> str:
    """The open part an update carries, its raw text escaped, as the page holds it."""
    before, raw, after = update.open or ("", "", "")
    return before + escape_text(raw) + after


def text_event(text: str, data: dict, seq: int = 1) -> Event:
    return Event(seq, events.TEXT_DELTA, {"text": text, **data})


# What a reader sees at given moments.


def test_a_fence_shows_as_code_from_its_opening_and_is_highlighted_once_closed():
    live = LiveMarkdown("Code:\n\n```python\n")
    assert live.open_parts == ('<pre><code class="language-python">', "", "</code></pre>\n")
    live.feed("x = 1\n")
    before, raw, after = live.open_parts
    assert (before + raw).startswith('<pre><code class="language-python">x = 1')
    assert after == "</code></pre>\n"
    update = live.feed("```\n")
    assert update.settled.startswith('<div class="highlight"><pre><span></span><code><span class="n">x</span>')


def test_a_fence_never_closed_ends_as_plain_code():
    assert render_markdown("```sh\nls -l\n") == '<pre><code class="language-sh">ls -l\n</code></pre>\n'


def test_a_list_continued_after_a_blank_line_stays_open_until_it_ends():
    _, updates = fed("- a\n- b\n\n", "- c\n", "\n", "After.\n", "\n")
    assert [u.settled for u in updates[:4]] == ["", "", "", ""]
    assert updates[4].settled == render_markdown("- a\n- b\n\n- c\n\nAfter.\n\n")
    assert "<p>a</p>" in updates[4].settled  # A loose list, as in the final render.


def test_a_table_grows_row_by_row_and_settles_at_the_blank_line():
    rows = ["| a | b |\n|---|---|\n", *(f"| {i} | {i * i} |\n" for i in range(8)), "\n"]
    _, updates = fed(*rows)
    assert [u.settled for u in updates[:-1]] == [""] * (len(rows) - 1)
    # The rows rendered so far, at each cut: the table grows while it streams.
    assert [u.open[0].count("<tr>") for u in updates[:-1] if u.open is not None] == [1, 2, 4, 7]
    assert updates[-1].settled == render_markdown("".join(rows))


def test_reference_links_and_footnotes_show_as_written():
    doc = CORPUS["references and footnotes"]
    final = render_markdown(doc)
    assert "<a" not in final
    assert "[the docs][d]" in final and "[^1]: A note." in final


def test_html_in_model_output_shows_as_text():
    live = LiveMarkdown()
    fragments = [live.feed(part) for part in ("<scr", "ipt>alert(1)</scr", "ipt>\n\n")]
    assert fragments[-1].settled == "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>\n"


def test_a_token_splitting_bold_shows_the_asterisks_until_it_is_closed():
    live = LiveMarkdown("A long enough paragraph to be rendered while it streams, **bo")
    before, raw, _ = live.open_parts
    assert "<strong>" not in before and "**" in before + raw
    live.feed("ld** and more words after it, enough for another cut to happen here.")
    assert "<strong>bold</strong>" in live.open_parts[0]


def test_spaces_at_a_cut_stay_in_the_raw_text():
    live = LiveMarkdown("x" * 95 + "   " + "y" * 60)
    before, raw, _ = live.open_parts
    assert before.endswith("x") and raw.startswith("   y")


def test_a_line_break_at_a_cut_stays_in_the_raw_text():
    text = "x" * MIN_GAP + "\nsecond line"
    live = LiveMarkdown(text)
    before, raw, after = live.open_parts
    assert (before, raw, after) == ("<p>" + "x" * MIN_GAP, "\nsecond line", "</p>\n")


def test_a_20_kb_paragraph_is_rendered_a_bounded_number_of_times():
    words = [f"w{i} " for i in range(4000)]  # About 22 KB, no line break.
    live, updates = fed(*words)
    final = render_markdown("".join(words))
    renders = [u for u in updates if u.open is not None]
    assert len(renders) <= 16
    rendered_bytes = sum(len(u.open[0]) + len(u.open[2]) for u in renders)
    assert rendered_bytes < 3 * len(final)
    assert live.settled_html + live.close() == final


def test_close_settles_the_open_part_and_starts_afresh():
    live = LiveMarkdown("Let me check: **now**")
    assert live.close() == render_markdown("Let me check: **now**")
    assert state(live) == ("", 0, ("", "", ""))
    assert live.feed("Done.").open is None


# The page: fragments applied as htmx applies them build the page rendered at the end.


def frames_for(deltas: list[str], *, coalesce: bool = False) -> list:
    live = LiveMarkdown()
    evs = [text_event(d, live.feed(d).as_data(), seq) for seq, d in enumerate(deltas, 1)]
    if coalesce and evs:
        evs = [Event(evs[-1].seq, events.TEXT_DELTA, merged([e.data for e in evs]))]
    stream = "".join(sse.frame(e.type, event_fragment(MESSAGE_ID, e), id=e.seq) for e in evs)
    return parse(stream)


markdownish = st.lists(
    st.one_of(
        st.sampled_from(
            ["\n", "\n\n", "# ", "- ", "1. ", "> ", "```", "```py\n", "|", "|-|-|\n", "**", "*", "`", "    "]
        ),
        st.sampled_from(MARKDOWN),
        st.sampled_from(HOSTILE),
        st.text(max_size=30),
        st.just("word " * 12),
    ),
    max_size=25,
).map("".join)


@st.composite
def split_markdown(draw) -> tuple[str, list[str]]:
    text = draw(markdownish)
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=12)))
    return text, [text[a:b] for a, b in itertools.pairwise([0, *cuts, len(text)])]


@PROPERTY
@given(split_markdown(), st.booleans())
def test_frames_applied_to_the_page_build_the_page_of_the_whole_text(case, coalesce):
    text, deltas = case
    page = LivePage()
    for frame in frames_for(deltas, coalesce=coalesce):
        assert_inert(tree(frame.data), allowed_tags=LIVE_TAGS)
        page.apply(frame)
    assert page.html() == live_page(text).html()


@PROPERTY
@given(split_markdown())
def test_a_page_at_any_cursor_and_the_frames_after_it_build_the_same_page(case):
    text, deltas = case
    frames = frames_for(deltas)
    for cursor in range(len(deltas) + 1):
        page = live_page("".join(deltas[:cursor]))
        for frame in frames[cursor:]:
            page.apply(frame)
        assert page.html() == live_page(text).html()


@PROPERTY
@given(split_markdown())
def test_the_live_render_completed_is_the_final_render_for_any_text(case):
    text, deltas = case
    live, updates = fed(*deltas)
    settled = "".join(u.settled for u in updates)
    for update in updates:
        for html in (update.settled, opened(update)):
            assert "<script" not in html.lower()
            assert_inert(tree(html), allowed_tags=MARKDOWN_TAGS)
    assert settled + live.close() == render_markdown(text)
