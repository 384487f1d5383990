"""Text from outside, checked once where it enters and made harmless where it is stored.

Two things make a string dangerous here although Python holds it happily:

- a **lone surrogate** (``"\\udfff"``, which JSON can spell as an escape): it is not Unicode
  text, so it cannot be encoded as UTF-8, and a job holding one could not be written into a
  reply, a webhook or a log line any more;
- a **control character** (NUL, ESC, CR, LF, DEL, the C1 range): in a name or a URL it is a
  mistake or an attack; printed raw it can clear a terminal, retitle a window or forge a log
  line.

Input is refused at the door (:func:`problem_in`, :func:`check_tree`); what a third party says
and we keep anyway (an error message) is cut and neutralised first (:func:`printable`); and
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


#: Third-party text we keep (an error message from Vidgo, a callback's hint) is cut to this.
MAX_KEPT_CHARS = 500


def printable(value: str, limit: int = MAX_KEPT_CHARS) -> str:
    """``value`` made safe to store, log and print: controls (ESC, CR, LF, DEL, C1...) become
    spaces, lone surrogates U+FFFD, runs of white space one space; cut to ``limit``
    characters with a note of the full length."""
    value = _SURROGATE.sub("\ufffd", value) if has_lone_surrogate(value) else value
    cleaned = _CONTROL.sub(" ", value)
    cleaned = " ".join(cleaned.split())
    if len(cleaned) > limit:
        return f"{cleaned[:limit]}… ({len(cleaned)} characters)"
    return cleaned
