"""Pure parsers for Vidgo's answers, written to the robust reading of the contract.

Every function takes decoded JSON and returns a typed record or raises VidgoProtocolError /
VidgoOutputError. Nothing here does I/O. The quirks handled (vidgo-api.md §5): a missing
``status`` on submit, naive timestamps, unknown statuses, ``vocal_removal`` as a JSON string or an
object, single-quoted JSON, keys with stray spaces, empty values, every element of ``files[]``,
and wrapped or flat callback bodies.
"""

from __future__ import annotations

import ast
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from worker.errors import VidgoOutputError, VidgoProtocolError

log = logging.getLogger(__name__)


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
        log.warning("unparseable Vidgo timestamp %r", value)
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_status(value: Any) -> VidgoStatus:
    """Map a status string to VidgoStatus; undocumented values are UNKNOWN, never terminal."""
    if isinstance(value, str):
        try:
            return VidgoStatus(value.strip().lower())
        except ValueError:
            pass
    log.warning("undocumented Vidgo status %r treated as not finished", value)
    return VidgoStatus.UNKNOWN


def _task_id(data: Mapping[str, Any]) -> str:
    task_id = data.get("task_id")
    if isinstance(task_id, int | float) and not isinstance(task_id, bool):
        task_id = str(task_id)
    if not isinstance(task_id, str) or not task_id.strip():
        raise VidgoProtocolError("Vidgo answered without a task_id; the answer cannot be used")
    return task_id.strip()


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
    progress = data.get("progress")
    error_message = data.get("error_message")
    return TaskDetail(
        task_id=_task_id(data),
        status=parse_status(raw_status),
        raw_status=str(raw_status),
        files=tuple(files),
        created_time=parse_time(data.get("created_time")),
        error_message=str(error_message) if error_message not in (None, "") else None,
        progress=progress if isinstance(progress, int) and not isinstance(progress, bool) else None,
    )


def _decode_stem_map(value: Any) -> Mapping[str, Any]:
    """Decode one ``vocal_removal`` value: a JSON string, a Python-literal string, or an object."""
    if isinstance(value, Mapping):
        return value
    if not isinstance(value, str):
        raise VidgoOutputError(
            f"vocal_removal should be a JSON string or object, got {type(value).__name__}"
        )
    try:
        decoded = json.loads(value)
    except json.JSONDecodeError:
        try:  # the internal draft shows single-quoted JSON
            decoded = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            raise VidgoOutputError(f"vocal_removal is not valid JSON: {value[:120]!r}") from None
    if not isinstance(decoded, Mapping):
        raise VidgoOutputError(f"vocal_removal should decode to an object, got {decoded!r:.120}")
    return decoded


def extract_stem_urls(files: tuple[Any, ...] | list[Any], wanted: tuple[str, ...]) -> StemUrls:
    """Collect stem URLs from every element of ``files``.

    Keys are stripped and lower-cased, empty values mean "stem absent", unknown keys are kept in
    ``extra``. Raises VidgoOutputError when ``vocal_removal`` is malformed or when any stem in
    ``wanted`` is missing (the message names them). An empty ``files`` gives an empty result.
    """
    found: dict[str, str] = {}
    for item in files:
        if not isinstance(item, Mapping):
            raise VidgoOutputError(f"files[] item should be an object, got {type(item).__name__}")
        for key, value in item.items():
            if str(key).strip() != "vocal_removal":
                log.info("ignoring unexpected files[] key %r", key)
                continue
            for stem, url in _decode_stem_map(value).items():
                name = str(stem).strip().lower()
                if isinstance(url, str) and url.strip() and name not in found:
                    found[name] = url.strip()
    if not found:
        return StemUrls(urls={})
    missing = [stem for stem in wanted if stem not in found]
    if missing:
        raise VidgoOutputError(
            f"Vidgo finished without the stems {', '.join(missing)} "
            f"(it returned {', '.join(sorted(found)) or 'none'})",
            code="vidgo_missing_stems",
        )
    return StemUrls(
        urls={stem: found[stem] for stem in wanted},
        extra={k: v for k, v in found.items() if k not in wanted},
    )


def error_message_of(body: Any) -> str | None:
    """The human message in any of Vidgo's error envelopes, if there is one."""
    if not isinstance(body, Mapping):
        return None
    error = body.get("error")
    if isinstance(error, Mapping) and isinstance(error.get("message"), str):
        return str(error["message"])
    if isinstance(error, str):
        return error
    for key in ("detail", "msg", "message"):
        if isinstance(body.get(key), str):
            return str(body[key])
    return None


def body_code(body: Any) -> int | None:
    """The business ``code`` of a body, when it has an integer one."""
    if isinstance(body, Mapping):
        code = body.get("code")
        if isinstance(code, int) and not isinstance(code, bool):
            return code
    return None
