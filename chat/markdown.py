"""Markdown for answers: parsed by markdown-it-py, code highlighted by Pygments,
then sanitised by nh3 so model output can never carry active markup.

The same renderer serves the finished answer and the live one
(chat/live_markdown.py), so that `done` changes nothing on screen. Why
markdown-it-py rather than Python-Markdown: its token stream gives every
top-level block its source lines (`Token.map`), which is how the live renderer
knows which blocks are settled; and it follows CommonMark, whose blocks are closed
line by line and never reopened. Measured on a 3.8 KB answer (a heading,
paragraphs, a list, a table, a quote, two code blocks), parsing, Pygments and nh3
included: 15.6 to 21.0 ms per render with Python-Markdown, 18.0 to 20.4 ms with
markdown-it-py (one core, two runs of 50); markdown-it-py parses alone in
about 5 ms. The same cost, then, and the live renderer needs the block map.

Two choices keep blocks independent of each other, so that a block rendered once
while the answer streams is the block the whole text renders:
- reference-style links and footnotes are not resolved (`[x][r]` and `[r]: url`
  show as written): a definition further down would change a block already sent;
- raw HTML is shown as text, never passed through: a person sees the `<script>`
  the model wrote instead of it silently vanishing.
"""

import re
from html import escape

import nh3
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markdown_it.rules_block.fence import fence
from markdown_it.rules_block.state_block import StateBlock
from markdown_it.token import Token
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import TextLexer, get_lexer_by_name
from pygments.util import ClassNotFound

_TAGS = {
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
_ATTRIBUTES = {
    "a": {"href", "title"},
    # Pygments marks tokens with classes; nothing else may set attributes.
    "span": {"class"},
    "div": {"class"},
    "code": {"class"},
    "pre": {"class"},
    "th": {"align"},
    "td": {"align"},
    "ol": {"start"},
}

_FORMATTER = HtmlFormatter(cssclass="highlight", wrapcode=True)


def _fence_with_end(state: StateBlock, start: int, end: int, silent: bool) -> bool:
    """markdown-it's fence rule, noting whether the fence was closed: a code block
    still being written is shown plain and highlighted once it is closed."""
    found = fence(state, start, end, silent)
    if found and not silent:
        token = state.tokens[-1]
        last = state.line - 1
        token.meta["closed"] = last > start and _closes_fence(state, last, token.markup)
    return found


def _closes_fence(state: StateBlock, line: int, markup: str) -> bool:
    if state.sCount[line] - state.blkIndent >= 4:
        return False
    text = state.src[state.bMarks[line] + state.tShift[line] : state.eMarks[line]].rstrip(" \t")
    return len(text) >= len(markup) and text == markup[0] * len(text)


def _render_fence(renderer, tokens: list[Token], idx: int, options, env) -> str:
    token = tokens[idx]
    lang = token.info.strip().split(maxsplit=1)[0] if token.info.strip() else ""
    if not token.meta.get("closed"):
        attrs = f' class="language-{escapeHtml(lang)}"' if lang else ""
        return f"<pre><code{attrs}>{escapeHtml(token.content)}</code></pre>\n"
    try:
        lexer = get_lexer_by_name(lang) if lang else TextLexer()
    except ClassNotFound:
        lexer = TextLexer()
    return highlight(token.content, lexer, _FORMATTER)


def _cell_alignment(state) -> None:
    """A table cell's alignment as an attribute: no markup from model output
    carries a style."""
    for token in state.tokens:
        if token.type in ("th_open", "td_open") and token.attrs.get("style"):
            style = str(token.attrs.pop("style"))
            token.attrs["align"] = style.removeprefix("text-align:")


def _parser() -> MarkdownIt:
    # nl2br: a single line break the reader saw while streaming stays one.
    md = MarkdownIt("commonmark", {"breaks": True, "html": False}).enable(["table", "strikethrough"])
    md.disable("reference")
    md.block.ruler.at("fence", _fence_with_end, {"alt": ["paragraph", "reference", "blockquote", "list"]})
    md.core.ruler.push("cell_alignment", _cell_alignment)
    md.add_render_rule("fence", _render_fence)
    md.add_render_rule("s_open", lambda *_: "<del>")
    md.add_render_rule("s_close", lambda *_: "</del>")
    return md


# Parsing keeps no state between texts: one parser serves every thread.
parser = _parser()


def sanitise(html: str) -> str:
    return nh3.clean(
        html,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )


def render_markdown(text: str) -> str:
    try:
        tokens = parser.parse(text)
        if any(t.nesting == 1 and t.level >= _DEEPEST for t in tokens):
            html = _with_deep_blocks_as_text(text, tokens)
        else:
            html = parser.renderer.render(tokens, parser.options, {})
    except RecursionError:
        # Nesting deeper than Python recurses: the text as it was written.
        html = f"<pre>{escape(text)}</pre>"
    return sanitise(html)


def top_level_blocks(tokens: list[Token]) -> list[int]:
    """The index of the first token of each top-level block."""
    return [i for i, t in enumerate(tokens) if t.level == 0 and t.nesting >= 0 and t.map is not None]


def line_starts(text: str) -> list[int]:
    """Where each line of `text` starts, as markdown-it counts lines."""
    return [0] + [m.end() for m in LINE_BREAK.finditer(text)]


LINE_BREAK = re.compile(r"\r\n|\r|\n")
# markdown-it drops what is nested deeper than its limit (a model steered to
# break the page nests "- - - … x"): a block that reaches it is shown as written.
_DEEPEST = parser.options["maxNesting"] - 1


def _with_deep_blocks_as_text(text: str, tokens: list[Token]) -> str:
    """Each top-level block rendered alone, the ones nested too deep as text: a
    block's rendering never depends on its neighbours (chat/live_markdown.py)."""
    starts = line_starts(text)
    firsts = top_level_blocks(tokens)
    parts = []
    for n, first in enumerate(firsts):
        last = firsts[n + 1] if n + 1 < len(firsts) else len(tokens)
        block = tokens[first:last]
        if any(t.nesting == 1 and t.level >= _DEEPEST for t in block):
            end = starts[tokens[last].map[0]] if last < len(tokens) else len(text)
            parts.append(f"<pre>{escape(text[starts[block[0].map[0]] : end])}</pre>\n")
        else:
            parts.append(parser.renderer.render(block, parser.options, {}))
    return "".join(parts)
