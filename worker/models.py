"""The job request, its enumerations and its fingerprint: what a caller asks us to separate.

A request is validated once, at enqueue, so that nothing malformed ever reaches Celery or Vidgo.
The job id is the fingerprint of the normalised request (audio URL, model name, output type):
the same track asked for twice is one job and one Vidgo submission.
"""

from __future__ import annotations

import hashlib
import json
import re
from enum import StrEnum
from typing import Any
from urllib.parse import urlunsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from vidgo_stems.errors import InvalidRequest, shown
from vidgo_stems.text import check_tree, problem_in
from vidgo_stems.urlsafety import BadUrl, parse_url

VIDGO_MODEL = "upload-and-separate-vocals"
JOB_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
MAX_TITLE_CHARS = 200


class ModelName(StrEnum):
    """Vidgo's ``input.model_name``."""

    BASE = "base"
    ENHANCED = "enhanced"
    INSTRUMENTAL = "instrumental"


class OutputType(StrEnum):
    """Vidgo's ``input.output_type``: every stem, or one named stem."""

    GENERAL = "general"
    BASS = "bass"
    DRUMS = "drums"
    OTHER = "other"
    PIANO = "piano"
    GUITAR = "guitar"
    VOCALS = "vocals"


ALL_STEMS: tuple[str, ...] = ("bass", "drums", "piano", "guitar", "vocals", "other")


class DeliveryFormat(StrEnum):
    """How stems are delivered: as Vidgo served them, or converted."""

    ORIGINAL = "original"
    WAV16 = "wav16"
    WAV24 = "wav24"
    FLAC = "flac"
    MP3 = "mp3"
    OPUS = "opus"


def expected_stems(output_type: OutputType) -> tuple[str, ...]:
    """The stem names a finished task must deliver for this output type."""
    return ALL_STEMS if output_type is OutputType.GENERAL else (output_type.value,)


class JobRequest(BaseModel):
    """One track to separate. Immutable; build it with :func:`parse_request`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    audio_url: str
    title: str | None = None
    model_name: ModelName = ModelName.BASE
    output_type: OutputType = OutputType.GENERAL
    # Delivery: how the stems are handed back (None: the configured default). Another
    # delivery is another job (another fingerprint), since its stored files differ.
    format: DeliveryFormat | None = None
    sample_rate: int | None = Field(default=None, ge=8000, le=192_000)
    normalize_lufs: float | None = Field(default=None, ge=-40, le=-5)

    @field_validator("audio_url")
    @classmethod
    def _normalise_url(cls, value: str) -> str:
        try:
            parts = parse_url(value, "")
        except BadUrl as exc:
            raise ValueError(str(exc)) from None
        # Lower-case scheme and host so that trivially different spellings fingerprint the same.
        netloc = parts.netloc.lower()
        return urlunsplit((parts.scheme.lower(), netloc, parts.path or "/", parts.query, ""))

    @field_validator("title")
    @classmethod
    def _clean_title(cls, value: str | None) -> str | None:
        if value is None:
            return None
        problem = problem_in(value, multiline=True)
        if problem:
            raise ValueError(problem)
        value = " ".join(value.split())
        if len(value) > MAX_TITLE_CHARS:
            raise ValueError(f"is longer than {MAX_TITLE_CHARS} characters")
        return value or None

    def fingerprint(self) -> str:
        """A stable job id for this request; the title is a label and does not count, and
        delivery options count only when given (so requests without them keep their ids)."""
        delivery = {
            k: v
            for k, v in (
                ("format", self.format.value if self.format else None),
                ("sample_rate", self.sample_rate),
                ("normalize_lufs", self.normalize_lufs),
            )
            if v is not None
        }
        canonical = json.dumps(
            {
                "audio_url": self.audio_url,
                "model_name": self.model_name.value,
                "output_type": self.output_type.value,
                **delivery,
            },
            sort_keys=True,
            separators=(",", ":"),
        )
        return "j" + hashlib.sha256(canonical.encode()).hexdigest()[:31]


#: The fields of a request that describe the track and its delivery (not the caller).
TRACK_FIELDS = (
    "audio_url",
    "title",
    "model_name",
    "output_type",
    "format",
    "sample_rate",
    "normalize_lufs",
)

_ALLOWED = {
    "model_name": ", ".join(m.value for m in ModelName),
    "output_type": ", ".join(o.value for o in OutputType),
    "format": ", ".join(f.value for f in DeliveryFormat),
}


def parse_request(data: dict[str, Any]) -> JobRequest:
    """Validate a request dict, raising InvalidRequest with every problem and the allowed values."""
    try:
        return JobRequest.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            field = ".".join(str(part) for part in err["loc"]) or "request"
            if field in _ALLOWED:
                got = err.get("input")
                problems.append(f"{field} {shown(got)} is not one of: {_ALLOWED[field]}")
            else:
                problems.append(f"{field} {err['msg'].removeprefix('Value error, ')}")
        raise InvalidRequest("invalid job request: " + "; ".join(problems)) from None


#: Caller metadata rides along on the job, in the webhook and in the manifest; keep it small.
#: Webhook events: the stems stored (linkable while post-processing goes on), and the ends.
STEMS_STORED = "job.stems_stored"
ENDED_EVENTS = ("job.done", "job.failed", "job.cancelled")
WEBHOOK_EVENTS = (STEMS_STORED, *ENDED_EVENTS)


def validate_webhook_events(events: object) -> tuple[str, ...]:
    """The webhook events a caller asks for (a list of WEBHOOK_EVENTS names, at least one);
    InvalidRequest naming the known ones otherwise."""
    known = ", ".join(WEBHOOK_EVENTS)
    if isinstance(events, str) or not isinstance(events, list | tuple) or not events:
        raise InvalidRequest(f"webhook_events must be a non-empty list of: {known}")
    unknown = [e for e in events if e not in WEBHOOK_EVENTS]
    if unknown:
        raise InvalidRequest(f"unknown webhook event {shown(unknown[0])}: use {known}")
    return tuple(e for e in WEBHOOK_EVENTS if e in events)


MAX_METADATA_BYTES = 4096
MAX_METADATA_KEY_LENGTH = 64


def validate_metadata(metadata: object) -> dict[str, Any]:
    """Check caller metadata: a JSON object of at most 4 KiB with short string keys.

    Metadata is data, never a name: it reaches no file path, header or log line. Its strings
    are Unicode text: no lone surrogates anywhere, no control characters in keys, none but
    tab, CR and LF in values.
    """
    if not isinstance(metadata, dict):
        raise InvalidRequest(f"metadata must be a JSON object, got {type(metadata).__name__}")
    for key in metadata:
        if not isinstance(key, str) or not 0 < len(key) <= MAX_METADATA_KEY_LENGTH:
            raise InvalidRequest(
                f"metadata keys must be strings of 1-{MAX_METADATA_KEY_LENGTH} characters, "
                f"got {str(key)[:80]!r}"
            )
    problem = check_tree(metadata, "metadata")
    if problem:
        raise InvalidRequest(problem)
    try:
        size = len(json.dumps(metadata, allow_nan=False).encode())
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(
            f"metadata must be plain JSON (objects, lists, strings, numbers, booleans, null): {exc}"
        ) from None
    if size > MAX_METADATA_BYTES:
        raise InvalidRequest(
            f"metadata is {size} bytes as JSON; the limit is {MAX_METADATA_BYTES}: keep ids "
            "and labels here and the rest in your own database"
        )
    return metadata


def validate_job_id(job_id: str) -> str:
    """Check a caller-chosen job id; it names a folder, so only a safe alphabet is allowed."""
    if not isinstance(job_id, str) or not JOB_ID_PATTERN.fullmatch(job_id):
        raise InvalidRequest(
            f"invalid job id {shown(job_id)}: use 1-64 characters from A-Z a-z 0-9 _ -, "
            "starting with a letter or digit"
        )
    return job_id
