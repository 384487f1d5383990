"""Text that came from Vidgo, made safe to store, log and print.

Vidgo's ``error_message`` (and any error text it sends) is free-form, and whatever is stored
from it reaches log lines, the job view, webhooks and ``vidgo-stems status`` in a terminal.
:func:`neutralise` bounds such text and makes every character that could act on a terminal
or forge a log line visible: C0 and C1 control characters (ESC, BEL, CR, LF, DEL, ...) and
bidirectional overrides become ``\\xNN``/``\\uNNNN`` escapes, whitespace controls a space, and
lone surrogates U+FFFD. :func:`is_plain` says whether an identifier Vidgo sends (a task id,
a status) holds none of them at all, for the fields that are refused rather than cleaned.
"""

from __future__ import annotations

import re

#: What is kept of one text from Vidgo (an error message, a detail), in characters.
MAX_TEXT_CHARS = 500
#: Identifiers from Vidgo (task ids, statuses) longer than this are refused.
MAX_ID_CHARS = 128

#: Whitespace controls read as a space: a message keeps its words, a log line stays one line.
_SPACES = "\t\n\v\f\r\x1c\x1d\x1e\x1f\x85\u2028\u2029"
#: C0, DEL and C1 controls; bidirectional embeddings, overrides and isolates (they reorder
#: what a terminal shows); zero-width and BOM characters.
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2028\u2029\u2066-\u2069\ufeff]"
)
_SURROGATE = re.compile("[\ud800-\udfff]")


def _visible(match: re.Match[str]) -> str:
    char = match.group()
    if char in _SPACES:
        return " "
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def neutralise(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """``text`` with every unsafe character made visible and at most ``limit`` characters
    kept; a cut is marked with the full length, so a reader knows more was sent."""
    cut = len(text) > limit
    head = text[:limit] if cut else text
    safe = _UNSAFE.sub(_visible, _SURROGATE.sub("\ufffd", head))
    if len(safe) > limit:  # escapes made it longer
        safe, cut = safe[:limit], True
    return f"{safe}... [cut: {len(text)} characters in all]" if cut else safe


def is_plain(text: str, limit: int = MAX_ID_CHARS) -> bool:
    """True when ``text`` is at most ``limit`` characters with no control character, no
    bidirectional override and no lone surrogate: fit to store as an identifier."""
    return len(text) <= limit and _UNSAFE.search(text) is None and _SURROGATE.search(text) is None


__all__ = ["MAX_ID_CHARS", "MAX_TEXT_CHARS", "is_plain", "neutralise"]
