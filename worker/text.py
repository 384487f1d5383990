"""Text from outside, checked once where it enters and made harmless where it is stored.

Two things make a string dangerous here although Python holds it happily:

- a **lone surrogate** (``"\\udfff"``, which JSON can spell as an escape): it is not Unicode
  text, so it cannot be encoded as UTF-8, and a job holding one could not be written into a
  reply, a webhook or a log line any more;
- a **control character** (NUL, ESC, CR, LF, DEL, the C1 range): in a name or a URL it is a
  mistake or an attack; printed raw it can clear a terminal, retitle a window or forge a log
  line.

Input is refused at the door (:func:`problem_in`, :func:`check_tree`); what a third party says
and we keep anyway (an error message) is cut and neutralised first (:func:`neutralise`); and
what an older version stored before these checks is read back scrubbed (:func:`loads_stored`),
so a job can never become unreadable.
"""

from __future__ import annotations

import json
import re
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")
#: A JSON escape of a surrogate code point (paired ones included; the parse tells them apart).
_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")
#: Control characters (C0, DEL, C1); the second leaves out tab, LF and CR, which a
#: multi-line free text may hold.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_CONTROL_IN_LINES = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def has_lone_surrogate(value: str) -> bool:
    """Whether ``value`` holds a surrogate code point (never valid in Unicode text)."""
    return not value.isascii() and _SURROGATE.search(value) is not None


def problem_in(value: str, *, multiline: bool = False) -> str | None:
    """What makes ``value`` unfit as text from outside, or None: a lone surrogate, or a
    control character (tab, CR and LF are allowed when ``multiline``)."""
    if has_lone_surrogate(value):
        return "holds a lone surrogate (not valid Unicode): send UTF-8 text"
    found = (_CONTROL_IN_LINES if multiline else _CONTROL).search(value)
    if found:
        return f"holds the control character U+{ord(found.group()):04X}: remove it"
    return None


def check_tree(value: Any, where: str) -> str | None:
    """The first problem with the strings of a decoded JSON value (keys included), naming
    where it is (``metadata.notes[2]``), or None. Keys take no control characters; string
    values may hold tab, CR and LF."""
    stack: list[tuple[Any, str]] = [(value, where)]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            problem = problem_in(item, multiline=True)
            if problem:
                return f"{path} {problem}"
        elif isinstance(item, dict):
            for key, inner in item.items():
                if isinstance(key, str) and (problem := problem_in(key)):
                    return f"a key of {path} {problem}"
                stack.append((inner, f"{path}.{key}" if _plain(key) else f"{path}[…]"))
        elif isinstance(item, list | tuple):
            stack.extend((inner, f"{path}[{i}]") for i, inner in enumerate(item))
    return None


def _plain(key: object) -> bool:
    return isinstance(key, str) and len(key) <= 64 and key.isprintable() and key.isascii()


def may_hold_surrogate(raw: str) -> bool:
    """Whether JSON text could decode to a string with a surrogate (a cheap first look)."""
    return _ESCAPED_SURROGATE.search(raw) is not None or has_lone_surrogate(raw)


def scrubbed(value: Any) -> Any:
    """``value`` with every lone surrogate in its strings (keys too) replaced by U+FFFD."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value) if has_lone_surrogate(value) else value
    if isinstance(value, dict):
        return {scrubbed(k): scrubbed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrubbed(v) for v in value]
    return value


def loads_stored(raw: str | bytes) -> Any:
    """JSON this service stored, read back so that it can always be written out again: a
    lone surrogate kept by an older version comes back as U+FFFD."""
    value = json.loads(raw)
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return scrubbed(value) if may_hold_surrogate(text) else value


#: What is kept of one text from a third party (an error message from Vidgo, a callback's
#: hint), in characters.
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


def _visible(match: re.Match[str]) -> str:
    char = match.group()
    if char in _SPACES:
        return " "
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def neutralise(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """Third-party ``text`` made safe to store, log and print: every character that could act
    on a terminal or forge a log line (controls, bidirectional overrides) made visible as an
    escape, whitespace controls a space, lone surrogates U+FFFD, and at most ``limit``
    characters kept; a cut is marked with the full length, so a reader knows more was sent."""
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
