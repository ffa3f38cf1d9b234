"""Text the database can store, and the database refusing a row.

Prompts, titles, feedback, the model's text, tool calls and their results come
from users, models and tools: any of them may hold a NUL (PostgreSQL refuses it
in text) or a lone surrogate (`"\\ud800"` in JSON; no database can encode it in
UTF-8). Such text is made storable where it comes in, before it is shown or
stored, so what was streamed is what a reload shows.

Each such character becomes U+FFFD, the replacement character, which is what a
decoder puts where it met something it cannot represent: the reader sees that
something was there (dropping it would silently join the text around it), and
one character stands for one, so lengths and offsets into the text do not move.
"""

import re

from django.db import DataError, IntegrityError

REPLACEMENT = "\ufffd"
# The largest count a PositiveIntegerField holds on every database (a provider's
# usage is a number from outside as well).
LARGEST_COUNT = 2**31 - 1

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> str:
    """`text` with every NUL and surrogate replaced by U+FFFD."""
    if text.isascii():
        # The common case (and every token of English text): one check, no copy.
        return text.replace("\x00", REPLACEMENT) if "\x00" in text else text
    return _UNSTORABLE.sub(REPLACEMENT, text)


def refused(exc: BaseException) -> bool:
    """Whether a failed write failed for the row's values rather than for the
    database: the database refused them (DataError, IntegrityError; Django too
    keeps the connection after these), or they could not even be encoded (a lone
    surrogate, an integer too large for SQLite). A write that fails otherwise
    (unreachable, locked, full) may succeed later."""
    return isinstance(exc, (DataError, IntegrityError, UnicodeError, OverflowError))


def reason(exc: BaseException) -> str:
    """A refusal as the log says it: its kind and first line. PostgreSQL's next
    lines quote the refused row, which is somebody's text."""
    lines = str(exc).splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"
