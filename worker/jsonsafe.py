"""JSON from outside, parsed so that no input can crash the parser.

Python's ``json`` recurses once per nesting level (a body nested 100,000 deep raises
RecursionError) and refuses integers over 4,300 digits with a ValueError that names neither
the field nor the fix. :func:`loads` measures the nesting first, in one pass and without
recursion, caps integer length, refuses strings that are not Unicode text (a lone surrogate
escape such as ``"\\udfff"``, which no reply or log could then encode), and raises
:class:`JsonRefused` (a ValueError) whose message says what was wrong and which setting sets
the limit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from vidgo_stems.errors import shown
from vidgo_stems.text import has_lone_surrogate, may_hold_surrogate

#: Defaults; ``VIDGO_STEMS_MAX_JSON_DEPTH`` and ``VIDGO_STEMS_MAX_JSON_INT_DIGITS`` change them.
MAX_DEPTH = 32
MAX_INT_DIGITS = 40


class JsonRefused(ValueError):
    """Raised when input is not JSON, or is JSON beyond the limits; the message says which."""


@dataclass(frozen=True)
class JsonLimits:
    max_depth: int = MAX_DEPTH
    max_int_digits: int = MAX_INT_DIGITS


def nesting_depth(text: str) -> int:
    """The deepest nesting of ``[`` and ``{`` outside strings (no recursion, one pass)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


DEFAULT_LIMITS = JsonLimits()


def loads(data: str | bytes, limits: JsonLimits = DEFAULT_LIMITS) -> Any:
    """Parse ``data`` (UTF-8 when bytes); raise JsonRefused saying what is wrong."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JsonRefused(f"not UTF-8 text (bad byte at offset {exc.start})") from None
    depth = nesting_depth(data)
    if depth > limits.max_depth:
        raise JsonRefused(
            f"nested {depth} levels deep; the limit is {limits.max_depth} "
            "(VIDGO_STEMS_MAX_JSON_DEPTH)"
        )

    def parse_int(digits: str) -> int:
        if len(digits.lstrip("-")) > limits.max_int_digits:
            raise JsonRefused(
                f"holds an integer of {len(digits.lstrip('-'))} digits; the limit is "
                f"{limits.max_int_digits} (VIDGO_STEMS_MAX_JSON_INT_DIGITS)"
            )
        return int(digits)

    try:
        value = json.loads(data, parse_int=parse_int)
    except JsonRefused:
        raise
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise JsonRefused(f"not valid JSON ({exc.msg} at {where})") from None
    except (ValueError, RecursionError) as exc:  # a last guard: never a traceback for input
        raise JsonRefused(f"not usable JSON ({type(exc).__name__})") from None
    spot = _lone_surrogate_at(value) if may_hold_surrogate(data) else None
    if spot:
        raise JsonRefused(
            f"not valid Unicode text: {spot} holds a lone surrogate (a \\uD800-\\uDFFF escape "
            "without its pair); send UTF-8 text"
        )
    return value


def _lone_surrogate_at(value: Any) -> str | None:
    """Where in a decoded value a string (or key) holds a lone surrogate, or None."""
    stack: list[tuple[Any, str]] = [(value, "the document")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            if has_lone_surrogate(item):
                return path
        elif isinstance(item, dict):
            for key, inner in item.items():
                if has_lone_surrogate(key):
                    return f"a key of {path}"
                stack.append((inner, f"{shown(key, 40)}" if path == "the document" else path))
        elif isinstance(item, list):
            stack.extend((inner, path) for inner in item)
    return None
