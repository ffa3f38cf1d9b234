"""A streaming answer's body as the page builds it, in Python: from the page's
HTML, then each text_delta, reasoning_delta and tool_start frame applied the way
htmx applies it (chat/live_markdown.py says what the page holds). The browser test checks the
same with htmx itself; this one lets every other test compare a stream with a
page without a browser.
"""

import html
import re
from dataclasses import dataclass

from tests.sse_client import Frame

_OPEN = re.compile(r'<div class="md-open" id="msg-\d+-open"(?: hx-swap-oob="true")?>')
_RAW = re.compile(r'<span class="md-raw" id="msg-\d+-raw">([^<]*)</span>')
_SETTLED_OOB = re.compile(r'<div hx-swap-oob="beforeend:#msg-\d+-settled">')
_SETTLED = re.compile(r'<div class="md-settled"[^>]*>')
_LABEL = re.compile(
    r'<span class="thinking-label" id="msg-\d+-thinking-label" data-thinking="(true|false)"'
    r'(?: hx-swap-oob="true")?>([^<]*)</span>'
)
_REASONING = re.compile(r'<div class="thinking-text" id="msg-\d+-reasoning">([^<]*)</div>')


@dataclass
class LivePage:
    # What `#msg-<id>-settled` holds; the open part around its raw text (all HTML).
    settled: str = ""
    before: str = ""
    raw: str = ""
    after: str = ""
    # The settled HTML without tool cards, for `text`.
    settled_text: str = ""
    # The thinking block: its text (escaped, as the page holds it), what its
    # label says, and whether it says "Thinking…".
    reasoning: str = ""
    label: str = ""
    thinking: bool = False

    @classmethod
    def from_frames(cls, frames: list[Frame]) -> "LivePage":
        page = cls()
        for frame in frames:
            page.apply(frame)
        return page

    @classmethod
    def from_page(cls, page_html: str, message_id: int) -> "LivePage":
        """The answer's body in a page (or a fragment) rendered while it streams."""
        start = page_html.index(f'<div class="msg-body live" id="msg-{message_id}-body">')
        settled = _SETTLED.search(page_html, start)
        opened = _OPEN.search(page_html, settled.end())
        inner = page_html[settled.end() : opened.start()].removesuffix("</div>")
        page = cls(settled=inner, settled_text=inner)
        page._set_open(page_html[opened.start() : _open_end(page_html, opened.end())])
        if reasoning := _REASONING.search(page_html):
            page.reasoning = reasoning[1]
            page._take_label(page_html)
        return page

    def apply(self, frame: Frame) -> None:
        data = frame.data
        if frame.event == "reasoning_delta":
            self.reasoning += self._take_label(data)
            return
        if frame.event == "text_delta":
            data = self._take_label(data)
            if "<" not in data:
                # Escaped text, appended to the raw text.
                self.raw += data
                return
            opened = _last_open(data)
            added = data[:opened]
            if added:
                wrapper = _SETTLED_OOB.match(added)
                assert wrapper and added.endswith("</div>"), added
                self.settled += added[wrapper.end() : -len("</div>")]
                self.settled_text += added[wrapper.end() : -len("</div>")]
            self._set_open(data[opened:])
        elif frame.event == "tool_start":
            opened = _last_open(data)
            self.settled += data[:opened]
            self.settled_text += data[: data.index('<div class="tool-card')]
            self._set_open(data[opened:])
        elif frame.event in ("tool_result", "tool_approval"):
            # The card, swapped out of band by its id.
            card = data.strip().replace(' hx-swap-oob="outerHTML"', "", 1)
            card_id = re.search(r'id="(tool-[0-9a-f]+)"', card)[1]
            start = self.settled.rindex("<div", 0, self.settled.index(f'id="{card_id}"'))
            end = _open_end(self.settled, self.settled.index(">", start) + 1)
            self.settled = self.settled[:start] + card + self.settled[end:]

    def _take_label(self, fragment: str) -> str:
        """The thinking block's label, swapped out of band; the rest of `fragment`."""
        label = _LABEL.search(fragment)
        if label is None:
            return fragment
        self.thinking, self.label = label[1] == "true", html.unescape(label[2])
        return fragment[: label.start()] + fragment[label.end() :]

    def reasoning_text(self) -> str:
        """The thinking as a reader sees it."""
        return html.unescape(self.reasoning)

    def _set_open(self, element: str) -> None:
        opened = _OPEN.match(element)
        assert opened and element.endswith("</div>"), element
        inner = element[opened.end() : -len("</div>")]
        raw = _RAW.search(inner)
        assert raw, inner
        self.before, self.raw, self.after = inner[: raw.start()], raw[1], inner[raw.end() :]

    def html(self) -> str:
        """The body as HTML, without the page's own wrappers."""
        return self.settled + self.before + self.raw + self.after

    def text(self) -> str:
        """The text a reader sees, without tool cards."""
        # Without the line break markdown-it writes after the last block's end.
        body = self.settled_text + self.before + self.raw + self.after.rstrip()
        return html.unescape(re.sub(r"<[^>]*>", "", body))


def _last_open(fragment: str) -> int:
    return fragment.rindex('<div class="md-open"')


def _open_end(page_html: str, start: int) -> int:
    """Where the `<div>` whose start tag ends at `start` ends."""
    depth = 1
    for match in re.finditer(r"<div\b|</div>", page_html[start:]):
        depth += 1 if match[0] == "<div" else -1
        if depth == 0:
            return start + match.end()
    raise AssertionError("unclosed open part")
