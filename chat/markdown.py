"""Markdown for finished answers: rendered by Python-Markdown, highlighted by
Pygments, then sanitised by nh3 so model output can never carry active markup."""

import threading
from html import escape

import markdown as md
import nh3

# nl2br: a single line break the reader saw while streaming stays one.
_EXTENSIONS = ["fenced_code", "tables", "sane_lists", "codehilite", "nl2br"]
_EXTENSION_CONFIGS = {"codehilite": {"guess_lang": False, "css_class": "highlight"}}

_TAGS = {
    "p", "br", "hr", "strong", "em", "b", "i", "code", "pre", "blockquote", "ul", "ol", "li",
    "h1", "h2", "h3", "h4", "h5", "h6", "a", "table", "thead", "tbody", "tr", "th", "td",
    "span", "div", "del", "sup", "sub",
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


_converters = threading.local()


def _converter() -> md.Markdown:
    """One converter per thread, reset between texts: building one (its
    extensions, their patterns) costs more than converting a short answer."""
    converter = getattr(_converters, "markdown", None)
    if converter is None:
        converter = md.Markdown(extensions=_EXTENSIONS, extension_configs=_EXTENSION_CONFIGS, output_format="html")
        # Raw HTML in model output is shown as text, not passed through: a person
        # sees the <script> the model wrote instead of it silently vanishing.
        converter.preprocessors.deregister("html_block")
        converter.inlinePatterns.deregister("html")
        _converters.markdown = converter
    return converter.reset()


def render_markdown(text: str) -> str:
    try:
        html = _converter().convert(text)
    except RecursionError:
        # Nesting deeper than Python-Markdown recurses ("- - - … x" from a model
        # steered to break the page): the text as it was written.
        html = f"<pre>{escape(text)}</pre>"
    return nh3.clean(
        html,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )
