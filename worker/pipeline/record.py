"""What the ledger hands out: a job as it stands, a caller subscribed to it, and what an
enqueue found. Plain data; the ledger (:mod:`vidgo_stems.pipeline.ledger`) reads and writes them."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vidgo_stems.files.stems import DeliveredStem, StoredStem, stems_from_json
from vidgo_stems.keys import text
from vidgo_stems.models import ENDED_EVENTS, JobRequest
from vidgo_stems.pipeline.states import JobState, Step
from vidgo_stems.text import loads_stored


@dataclass(frozen=True)
class JobRecord:
    """A snapshot of one job as the ledger holds it."""

    job_id: str
    state: JobState
    token: str
    request: JobRequest
    created_at: float
    updated_at: float
    vidgo_task_id: str | None = None
    vidgo_task_ids: tuple[str, ...] = ()
    vidgo_status: str | None = None
    vidgo_progress: int | None = None
    submitted_at: float | None = None
    submit_attempts: int = 0
    #: Whether the submit of the current attempt may have been sent to Vidgo: False from the
    #: claim (QUEUED -> SUBMITTING) until the move just before the POST sets it; None (a record
    #: written before this field existed) counts as maybe sent.
    submit_sent: bool | None = None
    polls: int = 0
    live_task_ids: tuple[str, ...] = ()
    attempt_empty_polls: dict[str, int] = field(default_factory=dict)
    next_due_at: float | None = None
    stem_urls: dict[str, str] = field(default_factory=dict)
    #: The stems as Vidgo served them, verified and stored, by stem name.
    stems: dict[str, StoredStem] = field(default_factory=dict)
    manifest: dict[str, Any] | None = None
    manifest_key: str | None = None
    #: The delivered files of a DONE job, per stem: key, sha256, bytes, content type, peaks.
    outputs: dict[str, DeliveredStem] = field(default_factory=dict)
    error_code: str | None = None
    error_message: str | None = None
    callback_token: str | None = None
    webhook_url: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    webhook_status: str | None = None
    # Bookkeeping the stages read back: counts and timestamps (epoch seconds).
    first_submitted_at: float | None = None
    finished_at: float | None = None
    downloaded_at: float | None = None
    done_at: float | None = None
    resubmits: int = 0
    ambiguous_submits: int = 0
    url_refreshes: int = 0
    recoveries: int = 0
    #: Times a caller retried the job after it ended, and how many Vidgo tasks it had then
    #: (the resubmission bound counts from there).
    retry_count: int = 0
    tasks_at_retry: int = 0
    extra_stem_keys: list[str] = field(default_factory=list)
    #: The step token under which post-processing sent its parts (once per token).
    fanned_token: str | None = None
    #: Fields this version does not know (written by a newer one during a rolling deploy).
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_hash(cls, job_id: str, raw: Mapping[Any, Any]) -> JobRecord:
        values = {text(k): text(v) for k, v in raw.items()}
        decoded: dict[str, Any] = {}
        for key, value in values.items():
            if key in ("state", "token"):
                continue
            try:
                decoded[key] = loads_stored(value)
            except json.JSONDecodeError:
                decoded[key] = value
        known = {
            f for f in cls.__dataclass_fields__ if f not in ("job_id", "state", "token", "extra")
        }
        kwargs = {k: v for k, v in decoded.items() if k in known}
        kwargs["request"] = JobRequest.model_validate(kwargs["request"])
        kwargs["vidgo_task_ids"] = tuple(kwargs.get("vidgo_task_ids") or ())
        kwargs["live_task_ids"] = tuple(kwargs.get("live_task_ids") or ())
        kwargs["stems"] = stems_from_json(kwargs.get("stems"), StoredStem)
        kwargs["outputs"] = stems_from_json(kwargs.get("outputs"), DeliveredStem)
        return cls(
            job_id=job_id,
            state=JobState(values["state"]),
            token=values.get("token", ""),
            extra={k: v for k, v in decoded.items() if k not in known},
            **kwargs,
        )


@dataclass(frozen=True)
class Subscription:
    """One caller waiting for a job: where to tell it, what to tell it back, and which
    webhook events it asked for (the job's end, unless it asked for more or less)."""

    sub_id: str
    webhook_url: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    at: float = 0.0
    events: tuple[str, ...] = ENDED_EVENTS

    @classmethod
    def new(
        cls,
        *,
        sub_id: str | None = None,
        webhook_url: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        events: tuple[str, ...] = ENDED_EVENTS,
    ) -> Subscription:
        return cls(
            sub_id or "sub_" + secrets.token_urlsafe(12),
            webhook_url,
            dict(metadata or {}),
            time.time(),
            events,
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "webhook_url": self.webhook_url,
                "metadata": self.metadata,
                "at": self.at,
                "events": list(self.events),
            }
        )

    @classmethod
    def from_json(cls, sub_id: str, raw: Any) -> Subscription:
        data = loads_stored(raw)
        events = tuple(data.get("events") or ENDED_EVENTS)
        return cls(
            sub_id, data.get("webhook_url"), data.get("metadata") or {}, data.get("at", 0), events
        )


#: ``Enqueue.subscribed`` when the job id is taken by a job of another request.
OTHER_REQUEST = -2


@dataclass(frozen=True)
class Enqueue:
    """What enqueueing found: the job, whether it is new, and whether the caller's
    subscription was added (1), was there already or not taken (0), the job is full (-1), or
    the id names a job of another request (:data:`OTHER_REQUEST`: nothing was changed)."""

    job: JobRecord
    created: bool
    subscribed: int


@dataclass(frozen=True)
class NewJob:
    """One job to find or create: its id, request, first step token, the caller's
    subscription, and the first message to send when it is new."""

    job_id: str
    request: JobRequest
    token: str
    subscription: Subscription | None = None
    step: Step | None = None
