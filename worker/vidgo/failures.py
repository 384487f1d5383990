"""Is a failed Vidgo task worth resubmitting? Decided from its free-form ``error_message``.

Vidgo documents no failure codes, only text. Reasons that concern the input itself (content
policy, unsupported or unreadable audio, file format, size or length limits) fail the same way
every time, so the job fails without paying again; anything else is treated as transient.
"""

from __future__ import annotations

import re

PERMANENT_PATTERNS = (
    r"content[ _-]?polic",
    r"violat",
    r"moderat",
    r"unsupported",
    r"not supported",
    r"unreadable",
    r"(could not|cannot|can't|unable to|failed to) (be )?(decode|read|open|parse)",
    r"(could not|cannot|can't|unable to|failed to) (download|fetch|access)",
    r"(invalid|corrupt\w*|damaged|unknown|bad) (audio|file|format|media|input|url)",
    r"file[ _-]?format",
    r"(too (long|large|big|short)|exceeds? (the )?(maximum|max|limit))",
    r"(no|missing) audio",
    r"copyright",
)
_PERMANENT = re.compile("|".join(PERMANENT_PATTERNS), re.IGNORECASE)


def is_permanent_failure(message: str | None) -> bool:
    """True when a failed task's message says resubmitting the same input cannot help."""
    return bool(message) and _PERMANENT.search(message or "") is not None
