"""Markdown rendered while an answer streams: each settled block rendered and
sent once, the one open block replaced.

Where it runs. In the generation, once per `text_delta` event: the event's data
carries what changed (`settled`, `open`), so every viewer, every replay after a
cursor and every coalesced backlog is sent the same bytes, and a viewer costs
the server no Markdown at all. A page rendered while the answer streams (a
reload, a second tab, a reader who joins late) builds the state of the stored
text up to `last_seq` with `LiveMarkdown(text)` and the stream goes on after it.
A Continue starts from the stored text the same way.

What the page holds (chat/rendering.py, templates/chat/_message.html):
- `#msg-<id>-settled`: the settled blocks and the tool cards, appended to and
  never changed;
- `#msg-<id>-open`: the open part rendered up to a cut, with the text after the
  cut, escaped, in `#msg-<id>-raw` placed inside its innermost block (so the
  unrendered words flow on from the rendered ones). A delta that moves no cut is
  only its escaped text, appended to `#msg-<id>-raw`; one that does carries the
  new settled blocks and the open part, both as out-of-band swaps.

Settled. A top-level block is settled once markdown-it, parsing only the
complete lines, puts another block after it, or (a paragraph, a table) a blank
line, or when it cannot grow (a heading, a rule, a closed fence). CommonMark
closes blocks line by line and never reopens one; reference links, the one
thing that reaches back, are off (chat/markdown.py). So the settled blocks of a
text are the blocks its whole render has, and rendering each once gives the
whole render.

Deterministic throttling. The open part is rendered again only at cuts, and
where the cuts fall depends on the text alone, never on how it was split into
deltas or when it arrived: the state after any deltas is the state of their
concatenation. That is what makes a replay after a cursor build the DOM that a
page rendered at that cursor builds. The cuts fall at line ends, at least
MIN_GAP characters apart and further apart as the open part grows (the gap is
the open part's rendered length; half that after a line that may end or start a
block; none at the open part's first blank line, where most blocks end), and
inside a line that long: the work and bytes of re-rendering stay
within a small multiple of the block, never its square, and a 20 KB paragraph
with no line break is re-rendered about fifteen times, not once per token.
"""

import re
from dataclasses import dataclass

from chat.markdown import LINE_BREAK, line_starts, parser, render_markdown, top_level_blocks

# The shortest stretch of new text worth rendering the open part again for:
# at 50 tokens/s about a quarter of a second.
MIN_GAP = 48

# A line that may end a block or start one: blank, a heading, a fence, a rule,
# a list item, a quote, a table row, a setext underline.
_STRUCTURAL = re.compile(r"[ \t\r]*(?:$|[#`~>|*+=_-]|\d+[.)])")
_BLANK = re.compile(r"[ \t\r]*$")
_BLANK_LINE = re.compile(r"^[ \t\r]*\n", re.MULTILINE)
# Closing tags to step inside so that the raw text continues the innermost block.
_TRAILING_CLOSE = re.compile(r"</(p|li|ul|ol|blockquote|h[1-6]|table|thead|tbody|tr|td|th|pre)>\s*$")
_TRAILING_CODE = re.compile(r"</code>\s*$")
_EMPTY_CODE = re.compile(r"<code[^>]*>$")


@dataclass(frozen=True)
class Update:
    """What one delta changed: blocks to append once, and the open part when it
    was rendered again (None: the delta's text is appended as it is)."""

    settled: str = ""
    open: tuple[str, str, str] | None = None

    def as_data(self) -> dict:
        data: dict = {}
        if self.settled:
            data["settled"] = self.settled
        if self.open is not None:
            data["open"] = list(self.open)
        return data


class LiveMarkdown:
    """One stretch of an answer's text between tool cards, as it grows."""

    def __init__(self, text: str = "") -> None:
        self._reset()
        # The blocks `text` settles, for a page that starts from it.
        self.settled_html = self.feed(text).settled

    def _reset(self) -> None:
        # The open part's text (what is settled is let go: the work per delta
        # never grows with the answer) and where its rendering stops (what
        # follows is shown as text).
        self.text = ""
        self.cut = 0
        # How far line ends have been looked at for the next cut, and how much of
        # the open part is complete lines found not to settle anything.
        self._scanned = 0
        self._unsettling = 0
        self._open_html: tuple[str, str] | None = ("", "")

    @property
    def open_parts(self) -> tuple[str, str, str]:
        """The open part: its HTML before the raw text, the raw text, the HTML after."""
        if self._open_html is None:
            # Rendered when asked for: of several cuts in one delta (a page built
            # from the stored text makes hundreds), only the last one's is shown.
            self._open_html = _split_for_raw(render_markdown(self.text[: self.cut])) if self.cut else ("", "")
        before, after = self._open_html
        raw = self.text[self.cut :]
        if raw.startswith("\n") and _EMPTY_CODE.search(before):
            # A fence just opened: its code starts after the line break.
            raw = raw[1:]
        return before, raw, after

    def feed(self, delta: str) -> Update:
        self.text += delta
        settled: list[str] = []
        moved = False
        while (cut := self._next_cut()) is not None:
            settled.append(self._cut_at(cut))
            moved = True
        if not moved:
            return Update()
        return Update("".join(settled), self.open_parts)

    def close(self) -> str:
        """The stretch ends (a tool card follows): the open part rendered as settled.
        The object then holds an empty stretch."""
        rest = render_markdown(self.text) if self.text else ""
        self._reset()
        return rest

    def _next_cut(self) -> int | None:
        """The next cut the text has reached, if any. A cut at a line end falls on
        the line break itself: the break stays in the raw text, where it shows as
        the break the final render makes (`.md-raw` keeps white space)."""
        text, cut = self.text, self.cut
        rendered = cut
        gap = max(MIN_GAP, rendered)
        quick_gap = rendered // 2
        position = self._scanned
        while True:
            newline = text.find("\n", position)
            if newline < 0 or newline - cut > gap + MIN_GAP:
                break
            line_start = text.rfind("\n", 0, newline) + 1
            need = quick_gap if _STRUCTURAL.match(text, line_start, newline) else gap
            if _BLANK.match(text, line_start, newline) and not _BLANK_LINE.search(text, 0, line_start):
                # The first blank line of the open part ends a paragraph or a
                # table: settled at once. (Later ones are inside a list, a quote
                # or code, which the geometric gap keeps from being parsed again
                # at every blank line.)
                need = 1
            if newline - cut >= max(need, 1):
                return newline
            position = newline + 1
        self._scanned = max(position, cut)
        # Inside a long line, once the character after the cut is known (were it a
        # line break, the cut would be a line end's). Before the spaces that end the
        # rendered words: rendering would drop them, the raw text keeps them.
        if len(text) - cut > gap + MIN_GAP:
            mid = cut + gap + MIN_GAP
            words_end = len(text[cut + 1 : mid].rstrip(" \t")) + cut + 1
            return words_end
        return None

    def _cut_at(self, cut: int) -> str:
        """Settle what the complete lines up to `cut` settle, render the open part
        up to `cut`; the HTML of the blocks settled."""
        settled = ""
        line_end = cut + 1 if self.text[cut : cut + 1] == "\n" else cut
        newline = self.text.rfind("\n", 0, line_end)
        if newline + 1 > self._unsettling:
            lines = self.text[: newline + 1]
            settled_length = _settled_length(lines)
            if settled_length:
                settled = render_markdown(lines[:settled_length])
                self.text = self.text[settled_length:]
                cut = max(cut - settled_length, 0)
                self._unsettling = 0
            else:
                self._unsettling = len(lines)
        self.cut = self._scanned = cut
        self._open_html = None
        return settled


def merged(datas: list[dict]) -> dict:
    """The data of consecutive text deltas as one delta's (a backlog sent at once):
    every settled block in order, the last open part with the text after it."""
    merged_data = {"text": "".join(d.get("text", "") for d in datas)}
    settled = "".join(d.get("settled", "") for d in datas)
    if settled:
        merged_data["settled"] = settled
    last_open = max((i for i, d in enumerate(datas) if "open" in d), default=None)
    if last_open is not None:
        before, raw, after = datas[last_open]["open"]
        later = "".join(d.get("text", "") for d in datas[last_open + 1 :])
        merged_data["open"] = [before, raw + later, after]
    return merged_data


def _settled_length(lines: str) -> int:
    """How much of `lines` (complete lines) is settled blocks."""
    tokens = parser.parse(lines)
    blocks = [tokens[i] for i in top_level_blocks(tokens)]
    if not blocks:
        return len(lines)  # Blank lines only.
    last = blocks[-1]
    if _cannot_grow(last, len(LINE_BREAK.findall(lines))):
        return len(lines)
    if len(blocks) == 1:
        return 0
    return line_starts(lines)[last.map[0]]


def _cannot_grow(block, line_count: int) -> bool:
    if block.type in ("heading_open", "hr"):
        return True
    if block.type == "fence":
        return bool(block.meta.get("closed"))
    if block.type in ("paragraph_open", "table_open"):
        # A blank line after it: nothing that follows can continue it.
        return block.map[1] < line_count
    return False


def _split_for_raw(html: str) -> tuple[str, str]:
    """`html` cut where the raw text goes: inside its innermost last block, so
    that the words still unrendered continue the paragraph, item, cell or code
    being written. Never inside a highlighted (closed) code block or inline markup."""
    end = len(html)
    while match := _TRAILING_CLOSE.search(html, 0, end):
        end = match.start()
        if match.group(1) == "pre":
            code = _TRAILING_CODE.search(html, 0, end)
            if code:
                end = code.start()
            break
    return html[:end], html[end:]
