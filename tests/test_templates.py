"""Rules every template follows, checked over all of them."""

from pathlib import Path

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"


def test_no_short_comment_spans_lines():
    """Django's {# #} ends at the line's end: one that goes on is printed in the
    page (in <head> it even moves the icon link into <body>). Longer ones use
    {% comment %}."""
    for path in TEMPLATES.rglob("*.html"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for opened in line.split("{#")[1:]:
                assert "#}" in opened, f"{path.relative_to(TEMPLATES)}:{number}: {{# without #}} on the same line"
