"""Model text, tool arguments and tool results are data, never markup or SSE
frames: whatever they contain, the page shows them as text.

Property tests build the frames exactly as the stream view does (chat.sse.frame
around chat.rendering.event_fragment), parse them as a browser would
(tests/sse_client.parse, then an HTML parser) and check that every event arrives
once, intact, and inert. A last test sends hostile output through the real
stream view.
"""

import html
import itertools
import json
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chat import events, sse
from chat.events import Event
from chat.markdown import render_markdown
from chat.models import Message, ToolCall
from chat.rendering import ToolCard, event_fragment
from tests.conftest import finished, read_stream, send, shown, texts
from tests.openai_stub import Stream, ToolCallPart
from tests.sse_client import parse

# What a finished answer may contain. Spelled out here rather than imported from
# chat.markdown, so that allowing a new tag there is a decision made here too.
MARKDOWN_TAGS = {
    "p",
    "br",
    "hr",
    "strong",
    "em",
    "b",
    "i",
    "code",
    "pre",
    "blockquote",
    "ul",
    "ol",
    "li",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "a",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "span",
    "div",
    "del",
    "sup",
    "sub",
}
PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MESSAGE_ID = 7

# Pieces that matter to HTML, to SSE framing or to htmx, mixed into arbitrary text.
HOSTILE = [
    "\r",
    "\n",
    "\r\n",
    "\n\n",
    "\u2028",
    "\u2029",
    "\x85",
    "\x00",
    "\x0b",
    "\x0c",
    "\t",
    " ",
    "<",
    ">",
    "&",
    '"',
    "'",
    "`",
    "=",
    "/",
    ":",
    "event:",
    "data:",
    "id:",
    "retry:",
    ": ping",
    "event: done\ndata: pwned\n\n",
    "\r\ndata: <b>x</b>\r\n\r\n",
    "&amp;",
    "&#13;",
    "&lt;",
    "&#x3C;",
    "<script>alert(1)</script>",
    "</span>",
    "</pre>",
    "</div>",
    "<!--",
    "-->",
    "<![CDATA[",
    "<img src=x onerror=alert(1)>",
    '" onmouseover="alert(1)',
    "' hx-get='/c/new/' hx-trigger='load",
    "{{ x }}",
    "{% csrf_token %}",
    "javascript:alert(1)",
]
hostile_text = st.one_of(
    st.text(),
    st.lists(st.one_of(st.sampled_from(HOSTILE), st.text(max_size=4)), max_size=12).map("".join),
)


@st.composite
def split_text(draw) -> tuple[str, list[str]]:
    """A text and arbitrary deltas it arrives in."""
    text = draw(hostile_text)
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=8)))
    bounds = [0, *cuts, len(text)]
    return text, [text[a:b] for a, b in itertools.pairwise(bounds)]


def as_browser_reads(text: str) -> str:
    """HTML turns CR LF and CR into LF before anything else, so raw CRs in markup
    never reach the page as CRs (live text encodes them as &#13; to keep them)."""
    return re.sub(r"\r\n|\r", "\n", text)


# An HTML fragment as a tree, to check its tags, attributes and text.


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    children: list = field(default_factory=list)

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def walk(self):
        yield self
        for c in self.children:
            if isinstance(c, Element):
                yield from c.walk()

    def skeleton(self, ignore: tuple[str, ...] = ()) -> tuple:
        """Tags and attributes, without text and without the values of `ignore`."""
        attrs = tuple(sorted((k, None if k in ignore else v) for k, v in self.attrs.items()))
        return (self.tag, attrs, tuple(c.skeleton(ignore) for c in self.children if isinstance(c, Element)))

    def find(self, tag: str, cls: str | None = None) -> "Element":
        found = [e for e in self.walk() if e.tag == tag and (cls is None or cls in e.attrs.get("class", "").split())]
        assert len(found) == 1, (tag, cls, found)
        return found[0]


VOID = {"br", "hr", "img", "input", "meta", "link", "wbr", "source", "col", "area", "base", "embed", "track"}


class TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#root", {})
        self.stack = [self.root]
        self.unbalanced: list[str] = []

    def handle_starttag(self, tag, attrs):
        # A repeated attribute would be a sign of injection; keep them all to see it.
        names = [k for k, _ in attrs]
        assert len(names) == len(set(names)), f"repeated attribute in <{tag}>: {attrs}"
        element = Element(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(element)
        if tag not in VOID:
            self.stack.append(element)

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.stack.pop()

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if len(self.stack) > 1 and self.stack[-1].tag == tag:
            self.stack.pop()
        else:
            self.unbalanced.append(tag)

    def handle_data(self, data):
        self.stack[-1].children.append(data)

    def handle_comment(self, data):
        raise AssertionError(f"comment in fragment: {data!r}")

    def handle_decl(self, decl):
        raise AssertionError(f"declaration in fragment: {decl!r}")

    def handle_pi(self, data):
        raise AssertionError(f"processing instruction in fragment: {data!r}")

    def unknown_decl(self, data):
        raise AssertionError(f"unknown declaration in fragment: {data!r}")


def tree(fragment: str) -> Element:
    builder = TreeBuilder()
    builder.feed(fragment)
    builder.close()
    assert not builder.unbalanced and len(builder.stack) == 1, f"unbalanced markup: {fragment!r}"
    return builder.root


def url_scheme(href: str) -> str | None:
    """The scheme a browser sees (https://url.spec.whatwg.org/#concept-basic-url-parser):
    surrounding C0 controls and spaces dropped, tabs and newlines removed anywhere."""
    url = re.sub(r"[\t\n\r]", "", href.strip("".join(map(chr, range(0x21)))))
    match = re.match(r"([a-zA-Z][a-zA-Z0-9+.-]*):", url)
    return match.group(1).lower() if match else None


def assert_inert(root: Element, *, allowed_tags: set[str], allowed_scripts: bool = False) -> None:
    """No script, no event handler, no style, no link or source outside http(s)/mailto."""
    for e in root.walk():
        if e is root:
            continue
        if e.tag == "script":
            assert allowed_scripts and e.attrs.get("src", "").startswith("/static/") and not e.text(), e
            continue
        assert e.tag in allowed_tags, f"<{e.tag}> is not allowed here"
        for name, value in e.attrs.items():
            assert not name.startswith("on"), f"event handler {name}={value!r} on <{e.tag}>"
            assert name not in ("style", "srcdoc", "formaction"), f"{name} on <{e.tag}>"
            if name in ("href", "src", "action", "xlink:href"):
                assert url_scheme(value) in (None, "http", "https", "mailto"), f"{name}={value!r}"


# Live text


@PROPERTY
@given(split_text())
def test_live_text_arrives_as_exactly_its_deltas_and_inert(case):
    text, deltas = case
    stream = sse.retry(2000) + "".join(
        sse.frame(events.TEXT_DELTA, event_fragment(MESSAGE_ID, Event(seq, events.TEXT_DELTA, {"text": delta})), id=seq)
        + (sse.PING if seq % 3 == 0 else "")
        for seq, delta in enumerate(deltas, 1)
    )
    frames = parse(stream)
    assert [(f.event, f.id) for f in frames] == [(events.TEXT_DELTA, str(seq)) for seq in range(1, len(deltas) + 1)]
    received = []
    for frame, delta in zip(frames, deltas, strict=True):
        root = tree(frame.data)
        # A delta that moves no cut of the live Markdown: its text, no markup.
        assert all(isinstance(c, str) for c in root.children)
        assert root.text() == delta
        received.append(root.text())
    assert "".join(received) == text


@PROPERTY
@given(split_text())
def test_live_thinking_arrives_as_exactly_its_deltas_and_inert(case):
    text, deltas = case
    stream = "".join(
        sse.frame(
            events.REASONING_DELTA,
            event_fragment(MESSAGE_ID, Event(seq, events.REASONING_DELTA, {"text": delta, "started": seq == 1})),
            id=seq,
        )
        for seq, delta in enumerate(deltas, 1)
    )
    frames = parse(stream)
    assert [(f.event, f.id) for f in frames] == [(events.REASONING_DELTA, str(s)) for s in range(1, len(deltas) + 1)]
    received = []
    for frame, delta in zip(frames, deltas, strict=True):
        root = tree(frame.data)
        assert_inert(root, allowed_tags={"span"})
        # Its text, and on the first the block's label (the template's, out of band).
        labels = [c for c in root.children if isinstance(c, Element)]
        assert [label.attrs["id"] for label in labels] == (
            [f"msg-{MESSAGE_ID}-thinking-label"] if frame.id == "1" else []
        )
        thought = "".join(c for c in root.children if isinstance(c, str))
        assert thought == delta
        received.append(thought)
    assert "".join(received) == text


# Tool cards

call_arguments = st.one_of(
    hostile_text,
    st.dictionaries(hostile_text, st.one_of(hostile_text, st.integers()), max_size=3).map(json.dumps),
    st.dictionaries(hostile_text, hostile_text, max_size=3).map(lambda d: json.dumps(d, ensure_ascii=False)),
)


@st.composite
def tool_events(draw) -> tuple[dict, str, dict]:
    """A tool_start and its tool_result, from hostile model and tool data."""
    start = {"call_id": draw(hostile_text), "name": draw(hostile_text), "arguments": draw(call_arguments)}
    outcome = draw(st.sampled_from(["result", "error"]))
    result = {**start, "duration_ms": draw(st.integers(0, 10**6)), outcome: draw(hostile_text)}
    return start, outcome, result


def reference_card(state: str, *, oob: bool, duration: bool) -> Element:
    """The card the template makes from harmless data in the same state."""
    data = {"call_id": "c", "name": "n", "arguments": "{}"}
    if not oob:
        return tree(event_fragment(MESSAGE_ID, Event(1, events.TOOL_START, data)))
    data["duration_ms"] = 1 if duration else None
    data["result" if state == "ok" else "error"] = "r"
    return tree(event_fragment(MESSAGE_ID, Event(1, events.TOOL_RESULT, data)))


def check_card(fragment: str, data: dict, state: str, *, oob: bool) -> None:
    root = tree(fragment)
    cards = [c for c in root.children if isinstance(c, Element) and "tool-card" in c.attrs.get("class", "")]
    assert len(cards) == 1
    card = cards[0]
    assert_inert(root, allowed_tags={"div", "span", "details", "summary", "pre", "p"})
    # Only the template's own tags and attributes; model data only in text and
    # in the (escaped) values of data-tool and the hashed id.
    expected = reference_card(state, oob=oob, duration=data.get("duration_ms") is not None)
    assert root.skeleton(ignore=("data-tool", "id")) == expected.skeleton(ignore=("data-tool", "id"))
    assert re.fullmatch(r"tool-[0-9a-f]{16}", card.attrs["id"])
    assert card.attrs["data-tool"] == as_browser_reads(data["name"])
    assert card.find("span", "tool-name").text() == as_browser_reads(data["name"])
    arguments = ToolCard(MESSAGE_ID, data["call_id"], data["name"], data["arguments"], state).pretty_arguments
    assert card.find("details", "tool-args").find("pre").text() == as_browser_reads(arguments)
    if state == "ok":
        assert card.find("pre", "tool-result").text() == as_browser_reads(data["result"])
    if state == "error":
        assert card.find("p", "tool-error").text() == as_browser_reads(data["error"])


@PROPERTY
@given(st.lists(tool_events(), min_size=1, max_size=3), split_text())
def test_tool_cards_arrive_once_each_and_inert(calls, case):
    _, deltas = case
    stream_events = []
    for start, _, result in calls:
        stream_events += [(events.TOOL_START, start), (events.TOOL_RESULT, result)]
    stream_events += [(events.TEXT_DELTA, {"text": d}) for d in deltas]
    stream = "".join(
        sse.frame(kind, event_fragment(MESSAGE_ID, Event(seq, kind, data)), id=seq)
        for seq, (kind, data) in enumerate(stream_events, 1)
    )
    frames = parse(stream)
    assert [(f.event, f.id) for f in frames] == [(kind, str(seq)) for seq, (kind, _) in enumerate(stream_events, 1)]
    for frame, (start, _, _) in zip(frames[: 2 * len(calls) : 2], calls, strict=True):
        check_card(frame.data, start, "running", oob=False)
    for frame, (_, outcome, result) in zip(frames[1 : 2 * len(calls) : 2], calls, strict=True):
        check_card(frame.data, result, "ok" if outcome == "result" else "error", oob=True)
        assert tree(frame.data).children[0].attrs["hx-swap-oob"] == "outerHTML"
    text_frames = frames[2 * len(calls) :]
    assert [tree(f.data).text() for f in text_frames] == deltas


# Finished answers: Markdown, sanitised

MARKDOWN = [
    "[x](javascript:alert(1))",
    "[x](JaVaScRiPt:alert(1))",
    "[x]( javascript:alert(1))",
    "[x](java\tscript:alert(1))",
    "[x](&#106;avascript:alert(1))",
    "[x](javascript&colon;alert(1))",
    "[x](data:text/html,<script>alert(1)</script>)",
    "[x](vbscript:msgbox(1))",
    "[x](file:///etc/passwd)",
    "<javascript:alert(1)>",
    "<data:text/html,x>",
    "[x][r]\n\n[r]: javascript:alert(1)\n",
    '[x][r]\n\n[r]: data:text/html,x "t"\n',
    "![x](javascript:alert(1))",
    "![x](x.png)",
    '[x](https://ok.example/ "t\\" onmouseover=\\"alert(1)")',
    "<a href='javascript:alert(1)'>x</a>",
    "<img src=x onerror=alert(1)>",
    "<script>alert(1)</script>",
    "<svg onload=alert(1)>",
    "<style>*{}</style>",
    "<iframe src=//evil></iframe>",
    "```html\n<script>alert(1)</script>\n```\n",
    "```\n</code></pre><script>x</script>\n```\n",
    "`<b onclick=x>`",
    "[ok](http://ok.example/)",
    "[mail](mailto:a@b.example)",
    "<https://ok.example>",
    "|a|b|\n|-|-|\n|<script>|[x](javascript:y)|\n",
    "\n",
    "\n\n",
    "    ",
    "*",
    "_",
    "#",
    "> ",
    "- ",
    "1. ",
    "&",
    "&lt;",
    "&#x6A;",
    '"',
    "'",
    "(",
    ")",
    "[",
    "]",
    "!",
    "<",
    ">",
    ":",
    "\x00",
    "\r",
]
hostile_markdown = st.one_of(
    st.text(),
    st.lists(st.one_of(st.sampled_from(MARKDOWN), st.sampled_from(HOSTILE), st.text(max_size=4)), max_size=12).map(
        "".join
    ),
)


@PROPERTY
@given(hostile_markdown)
def test_rendered_markdown_is_sanitised(text):
    rendered = render_markdown(text)
    assert "<script" not in rendered.lower()
    root = TreeBuilder()
    root.feed(rendered)
    root.close()
    assert_inert(root.root, allowed_tags=MARKDOWN_TAGS)


@pytest.mark.parametrize(
    "text",
    ["[x](javascript:alert(1))", "[x](data:text/html,x)", "<img src=x onerror=alert(1)>", "<script>alert(1)</script>"],
)
def test_hostile_markdown_shows_as_text_or_a_plain_link(text):
    rendered = render_markdown(text)
    assert_inert(tree(rendered), allowed_tags=MARKDOWN_TAGS)
    # Raw HTML is shown, escaped, so a person sees what the model wrote.
    if text.startswith("<"):
        assert html.escape(text, quote=False) in rendered


def test_markdown_keeps_safe_links():
    rendered = render_markdown("[a](https://ok.example/) [b](mailto:a@b.example) [c](/c/1/)")
    hrefs = [e.attrs["href"] for e in tree(rendered).walk() if e.tag == "a"]
    assert hrefs == ["https://ok.example/", "mailto:a@b.example", "/c/1/"]


# End to end: hostile output through the real stream view.

HOSTILE_PARTS = [
    "<script>alert(1)</script>",
    "\n\nevent: done\ndata: pwned\n\n",
    "<img src=x onerror=alert(2)>\r\n",
    "[click](javascript:alert(3)) ",
    '" onmouseover="alert(4)',
]
HOSTILE_NAME = '<img src=x onerror=alert(5)>" hx-get="/c/new/'
HOSTILE_ID = '"><script>alert(6)</script>'
HOSTILE_QUERY = "</pre><script>alert(7)</script>\n\nevent: done\ndata: x"
AFTER_TOOLS = ["Done: ", "<svg onload=alert(8)>", " [x](data:text/html,hi)"]
PAGE_TAGS = MARKDOWN_TAGS | {
    "html",
    "head",
    "meta",
    "title",
    "link",
    "body",
    "article",
    "div",
    "details",
    "summary",
    "p",
    "form",
    "button",
    "input",
    "textarea",
    "select",
    "option",
    "label",
    "aside",
    "nav",
    "main",
    "header",
    "section",
    "time",
    "ul",
    "li",
    "span",
    "a",
    "h1",
    "h2",
    # The template's own icons; model output cannot make these (see MARKDOWN_TAGS).
    "svg",
    "path",
}


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("fast")
async def test_hostile_model_and_tool_output_is_inert_end_to_end(stub, alice_async, conversation):
    stub.script(
        Stream(
            [
                *HOSTILE_PARTS,
                ToolCallPart(0, id=HOSTILE_ID, name=HOSTILE_NAME, arguments=json.dumps({"x": "<b onclick=alert(9)>"})),
                ToolCallPart(
                    1, id="call_search", name="search_conversations", arguments=json.dumps({"query": HOSTILE_QUERY})
                ),
            ],
            finish_reason="tool_calls",
        ),
        Stream(AFTER_TOOLS),
    )
    message = await send(alice_async, conversation, "Be evil")
    frames = await read_stream(alice_async, message)
    kinds = [f.event for f in frames]
    assert kinds == (
        ["text_delta"] * len(HOSTILE_PARTS)
        + ["tool_start"] * 2
        + ["tool_result"] * 2
        + ["text_delta"] * len(AFTER_TOOLS)
        + ["done"]
    )
    assert [int(f.id) for f in frames] == list(range(1, len(frames) + 1))
    assert texts(frames) == shown("".join(HOSTILE_PARTS), "".join(AFTER_TOOLS))
    for frame in frames[:-1]:
        assert_inert(tree(frame.data), allowed_tags=MARKDOWN_TAGS | {"details", "summary"})
    cards = [
        c
        for f in frames
        if f.event.startswith("tool_")
        for c in tree(f.data).walk()
        if "tool-card" in c.attrs.get("class", "")
    ]
    names = sorted(card.find("span", "tool-name").text() for card in cards)
    assert names == sorted([HOSTILE_NAME, "search_conversations"] * 2)
    results = [card.text() for card in cards[2:]]
    assert any(f"There is no tool named {HOSTILE_NAME!r}." in r for r in results)
    assert any(f"No earlier messages mention {HOSTILE_QUERY!r}." in r for r in results)

    stored = await finished(message.pk)
    assert stored.status == "complete"
    assert stored.content == "".join(HOSTILE_PARTS + AFTER_TOOLS)
    assert {c.name async for c in ToolCall.objects.filter(message=message)} == {HOSTILE_NAME, "search_conversations"}

    # The finished answer (the done frame) and the page are sanitised Markdown.
    assert_inert(tree(frames[-1].data), allowed_tags=PAGE_TAGS)
    page = await alice_async.get(f"/c/{conversation.pk}/")
    assert page.status_code == 200
    body = page.content.decode()
    root = TreeBuilder()
    root.feed(body.removeprefix("<!doctype html>"))
    root.close()
    [article] = [e for e in root.root.walk() if e.attrs.get("id") == f"msg-{message.pk}"]
    assert_inert(article, allowed_tags=PAGE_TAGS)
    scripts = [e for e in root.root.walk() if e.tag == "script"]
    assert scripts and all(e.attrs.get("src", "").startswith("/static/") and not e.text() for e in scripts)
    for marker in ("alert(1)", "alert(2)", "alert(5)", "alert(8)"):
        assert marker in body  # shown as text...
    assert "pwned" not in [f.event for f in frames]
    assert await Message.objects.filter(conversation=conversation).acount() == 2
