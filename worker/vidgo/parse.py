"""Pure parsers for Vidgo's answers, written to the robust reading of the contract.

Every function takes decoded JSON and returns a typed record or raises VidgoProtocolError /
VidgoOutputError. Nothing here does I/O. The quirks handled (vidgo-api.md §5): a missing
``status`` on submit, naive timestamps, unknown statuses, ``vocal_removal`` as a JSON string or an
object, single-quoted JSON, keys with stray spaces, empty values, every element of ``files[]``,
and wrapped or flat callback bodies.

Hostile answers are held to the same rule: ``vocal_removal`` is decoded within the JSON limits
(:mod:`vidgo_stems.jsonsafe`), a task id or status holding a control character or a lone surrogate
is refused, ``progress`` outside 0-100 is ignored, and ``error_message`` is stored bounded and
neutralised (:mod:`vidgo_stems.text`), so nothing Vidgo sends can crash a job or reach a
log line or a terminal raw.
"""

from __future__ import annotations

import ast
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from vidgo_stems import jsonsafe
from vidgo_stems.errors import VidgoOutputError, VidgoProtocolError
from vidgo_stems.jsonsafe import DEFAULT_LIMITS, JsonLimits, JsonRefused
from vidgo_stems.text import MAX_ID_CHARS, is_plain, neutralise

log = logging.getLogger(__name__)

#: A ``vocal_removal`` string longer than this is refused unread (six URLs take a few hundred).
MAX_STEM_MAP_CHARS = 64 * 1024
#: A stem URL longer than this is refused (browsers and servers stop near 8 KB).
MAX_URL_CHARS = 4096
#: Keys nobody asked for that are kept (and stored) from one answer.
MAX_EXTRA_KEYS = 16


class VidgoStatus(StrEnum):
    """A Vidgo task status; anything undocumented becomes UNKNOWN (treated as not finished)."""

    NOT_STARTED = "not_started"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    UNKNOWN = "unknown"

    @property
    def is_terminal(self) -> bool:
        return self in (VidgoStatus.FINISHED, VidgoStatus.FAILED)


@dataclass(frozen=True)
class SubmitResult:
    task_id: str
    status: VidgoStatus
    created_time: datetime | None


@dataclass(frozen=True)
class TaskDetail:
    """One answer of Query Music Detail (or one callback body)."""

    task_id: str
    status: VidgoStatus
    raw_status: str
    files: tuple[Any, ...]
    created_time: datetime | None
    error_message: str | None
    progress: int | None = None


@dataclass(frozen=True)
class StemUrls:
    """The stem URLs found in a finished task, plus the keys nobody asked for."""

    urls: dict[str, str]
    extra: dict[str, str] = field(default_factory=dict)


def unwrap_data(body: Any) -> Mapping[str, Any]:
    """Return ``body['data']`` when it is an object, else the body itself (flat callbacks)."""
    if not isinstance(body, Mapping):
        raise VidgoProtocolError(f"expected a JSON object from Vidgo, got {type(body).__name__}")
    data = body.get("data")
    return data if isinstance(data, Mapping) else body


def parse_time(value: Any) -> datetime | None:
    """Parse Vidgo's naive ISO 8601 timestamps; they are taken as UTC. Unparseable gives None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        log.warning("unparseable Vidgo timestamp %s", neutralise(repr(value), 80))
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_status(value: Any) -> VidgoStatus:
    """Map a status string to VidgoStatus; undocumented values are UNKNOWN, never terminal.
    Raises VidgoProtocolError for a string holding control characters or a lone surrogate."""
    if isinstance(value, str):
        _refuse_unplain("status", value)
        try:
            return VidgoStatus(value.strip().lower())
        except ValueError:
            pass
    log.warning("undocumented Vidgo status %s treated as not finished", neutralise(repr(value), 80))
    return VidgoStatus.UNKNOWN


def _refuse_unplain(name: str, value: str) -> None:
    if not is_plain(value):
        raise VidgoProtocolError(
            f"Vidgo's {name} holds control characters or a lone surrogate, or is over "
            f"{MAX_ID_CHARS} characters ({neutralise(repr(value), 80)}); the answer cannot be used"
        )


def _task_id(data: Mapping[str, Any]) -> str:
    task_id = data.get("task_id")
    if isinstance(task_id, int | float) and not isinstance(task_id, bool):
        task_id = str(task_id)
    if not isinstance(task_id, str) or not task_id.strip():
        raise VidgoProtocolError("Vidgo answered without a task_id; the answer cannot be used")
    _refuse_unplain("task_id", task_id)
    return task_id.strip()


def _progress(value: Any) -> int | None:
    """A percentage, or None for anything that is not an integer from 0 to 100."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 100:
        return value
    return None


def _error_message(value: Any) -> str | None:
    """Vidgo's failure text, bounded and neutralised; None when there is none."""
    if value is None or value == "":
        return None
    return neutralise(value if isinstance(value, str) else repr(value))


def parse_submit(body: Any) -> SubmitResult:
    """Parse a submit answer; a missing status means not_started."""
    data = unwrap_data(body)
    status = data.get("status")
    return SubmitResult(
        task_id=_task_id(data),
        status=VidgoStatus.NOT_STARTED if status is None else parse_status(status),
        created_time=parse_time(data.get("created_time")),
    )


def parse_detail(body: Any) -> TaskDetail:
    """Parse a Query Music Detail answer, a status answer or a callback body (wrapped or flat)."""
    data = unwrap_data(body)
    files = data.get("files")
    if files is None:
        files = []
    if not isinstance(files, list):
        raise VidgoProtocolError(f"Vidgo 'files' should be an array, got {type(files).__name__}")
    raw_status = data.get("status")
    return TaskDetail(
        task_id=_task_id(data),
        status=parse_status(raw_status),
        raw_status=raw_status if isinstance(raw_status, str) else neutralise(repr(raw_status), 40),
        files=tuple(files),
        created_time=parse_time(data.get("created_time")),
        error_message=_error_message(data.get("error_message")),
        progress=_progress(data.get("progress")),
    )


def _decode_stem_map(value: Any, limits: JsonLimits = DEFAULT_LIMITS) -> Mapping[str, Any]:
    """Decode one ``vocal_removal`` value: a JSON string, a Python-literal string, or an object.
    The string is parsed within ``limits``: no depth or number in it can crash the parse."""
    if isinstance(value, Mapping):
        return value
    if not isinstance(value, str):
        raise VidgoOutputError(
            f"vocal_removal should be a JSON string or object, got {type(value).__name__}"
        )
    if len(value) > MAX_STEM_MAP_CHARS:
        raise VidgoOutputError(
            f"vocal_removal is {len(value)} characters long; at most {MAX_STEM_MAP_CHARS} are read"
        )
    try:
        decoded = jsonsafe.loads(value, limits)
    except JsonRefused as exc:
        decoded = _literal(value, limits, exc)
    if not isinstance(decoded, Mapping):
        raise VidgoOutputError(
            f"vocal_removal should decode to an object, got {type(decoded).__name__}"
        )
    return decoded


def _literal(value: str, limits: JsonLimits, refused: JsonRefused) -> Any:
    """The single-quoted form the internal draft shows, read as a Python literal; only when it
    is within the same depth limit (the literal parser recurses too)."""
    if jsonsafe.nesting_depth(value) <= limits.max_depth:
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            pass
    raise VidgoOutputError(f"vocal_removal is {refused}: {neutralise(repr(value), 120)}")


def _stem_url(stem: str, url: str) -> str:
    """A stem URL as given, stripped; refused when it is overlong or not plain text."""
    url = url.strip()
    if not is_plain(url, MAX_URL_CHARS):
        raise VidgoOutputError(
            f"the URL of stem {neutralise(stem, 40)!r} holds control characters or a lone "
            f"surrogate, or is over {MAX_URL_CHARS} characters: {neutralise(repr(url), 120)}"
        )
    return url


def extract_stem_urls(
    files: tuple[Any, ...] | list[Any],
    wanted: tuple[str, ...],
    limits: JsonLimits = DEFAULT_LIMITS,
) -> StemUrls:
    """Collect stem URLs from every element of ``files``.

    Keys are stripped and lower-cased, empty values mean "stem absent", unknown keys are kept in
    ``extra`` (neutralised, at most MAX_EXTRA_KEYS of them). Raises VidgoOutputError when
    ``vocal_removal`` is malformed or beyond ``limits``, when a wanted stem's URL is not plain
    text, or when any stem in ``wanted`` is missing (the message names them). An empty
    ``files`` gives an empty result.
    """
    found: dict[str, str] = {}
    for item in files:
        if not isinstance(item, Mapping):
            raise VidgoOutputError(f"files[] item should be an object, got {type(item).__name__}")
        for key, value in item.items():
            if str(key).strip() != "vocal_removal":
                log.info("ignoring unexpected files[] key %s", neutralise(repr(key), 80))
                continue
            for stem, url in _decode_stem_map(value, limits).items():
                name = str(stem).strip().lower()
                if isinstance(url, str) and url.strip() and name not in found:
                    found[name] = url
    if not found:
        return StemUrls(urls={})
    missing = [stem for stem in wanted if stem not in found]
    if missing:
        returned = ", ".join(neutralise(k, 40) for k in sorted(found)[:MAX_EXTRA_KEYS])
        raise VidgoOutputError(
            f"Vidgo finished without the stems {', '.join(missing)} (it returned "
            f"{neutralise(returned) or 'none'})",
            code="vidgo_missing_stems",
        )
    extra = sorted(k for k in found if k not in wanted)[:MAX_EXTRA_KEYS]
    return StemUrls(
        urls={stem: _stem_url(stem, found[stem]) for stem in wanted},
        extra={neutralise(k, 40): neutralise(found[k], 200) for k in extra},
    )


def error_message_of(body: Any) -> str | None:
    """The human message in any of Vidgo's error envelopes, if there is one, bounded and
    neutralised."""
    if not isinstance(body, Mapping):
        return None
    error = body.get("error")
    if isinstance(error, Mapping) and isinstance(error.get("message"), str):
        return neutralise(str(error["message"]))
    if isinstance(error, str):
        return neutralise(error)
    for key in ("detail", "msg", "message"):
        if isinstance(body.get(key), str):
            return neutralise(str(body[key]))
    return None


def body_code(body: Any) -> int | None:
    """The business ``code`` of a body, when it has an integer one."""
    if isinstance(body, Mapping):
        code = body.get("code")
        if isinstance(code, int) and not isinstance(code, bool):
            return code
    return None
