"""What a stage works with, and the one hand-off rule every stage follows.

A stage receives a :class:`StageContext` (ledger, clients, storage and local scratch space)
plus the job id and step token from its message. It loads the job, returns quietly when the
token is stale, does its work, then hands off: one script that moves the job, installs a fresh
token and sends the next message carrying it (onto its queue when due now, into the schedule
when it waits). A duplicate can never act twice, and no crash can separate the move from its
message.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import httpx

from vidgo_stems.files.scratch import StemStore
from vidgo_stems.files.storage import Storage
from vidgo_stems.pipeline.durable import Need
from vidgo_stems.pipeline.ledger import Ledger
from vidgo_stems.pipeline.pacing import PollPacing
from vidgo_stems.pipeline.record import JobRecord
from vidgo_stems.pipeline.states import JobState, Step, TaskName, new_token
from vidgo_stems.settings import Settings
from vidgo_stems.vidgo import VidgoClient
from vidgo_stems.vidgo.gate import VidgoGate
from vidgo_stems.vidgo.limits import VidgoLimits

__all__ = [
    "Outcome",
    "StageContext",
    "Step",
    "TaskName",
    "hand_off",
    "load_current",
    "paced",
]

log = logging.getLogger(__name__)


class Outcome(StrEnum):
    HANDED_OFF = "handed_off"
    STALE = "stale"


@dataclass
class StageContext:
    """Collaborators of a stage. ``vidgo`` and ``http`` are built lazily by the caller."""

    settings: Settings
    ledger: Ledger
    gate: VidgoGate
    storage: Storage
    scratch: StemStore
    vidgo_factory: Callable[[], VidgoClient]
    http_factory: Callable[[], httpx.Client]
    clock: Callable[[], float] = time.time
    rng: random.Random = field(default_factory=random.Random)
    limits: VidgoLimits | None = None
    #: Spreads polls within the shared query budget (None: each job's own schedule only).
    pacing: PollPacing | None = None
    #: The Celery worker running the stage (recorded in the history: which host did what).
    worker_name: str = ""

    @property
    def vidgo(self) -> VidgoClient:
        return self.vidgo_factory()

    @property
    def http(self) -> httpx.Client:
        return self.http_factory()


def load_current(
    ctx: StageContext, job_id: str, token: str, states: Iterable[JobState], stage: str
) -> JobRecord | None:
    """The job when this message still holds its baton, else None (logged as a stale delivery)."""
    job = ctx.ledger.get(job_id)
    allowed = set(states)
    if job is None:
        log.warning("%s: job %s is not in the ledger; dropping the message", stage, job_id)
        return None
    if job.token != token or job.state not in allowed:
        log.info(
            "%s: job %s is %s with another step token; stale delivery dropped",
            stage,
            job_id,
            job.state.value,
        )
        return None
    return job


def hand_off(
    ctx: StageContext,
    job: JobRecord,
    *,
    to: JobState,
    next_task: TaskName,
    event: str,
    countdown_s: float = 0.0,
    fields: Mapping[str, Any] | None = None,
    incr: Mapping[str, int] | None = None,
    detail: Mapping[str, Any] | None = None,
    durable: Need | None = None,
) -> Outcome:
    """Move ``job`` to ``to`` under a fresh token and send ``next_task`` with that token, due in
    ``countdown_s`` seconds, in one step."""
    token = new_token()
    step = Step(next_task, job.job_id, token, countdown_s)
    moved = ctx.ledger.advance(
        job.job_id,
        expect=job.state,
        token=job.token,
        to=to,
        new_token=token,
        fields={**(fields or {}), "next_due_at": ctx.clock() + countdown_s},
        incr=incr,
        event=event,
        detail=detail,
        durable=durable,
        step=step,
    )
    if not moved:
        log.info("job %s moved on while %s ran; not handing off", job.job_id, event)
        return Outcome.STALE
    # The move itself was logged by the ledger, naming the Vidgo task the job has after it.
    log.debug("job %s: %s due in %.1fs", job.job_id, next_task.value, countdown_s)
    return Outcome.HANDED_OFF


def paced(ctx: StageContext, job: JobRecord, own_s: float, *, live_tasks: int = 1) -> float:
    """``own_s``, or later when the shared query budget cannot poll every job that often
    (see :mod:`vidgo_stems.pipeline.pacing`)."""
    if ctx.pacing is None:
        return own_s
    elapsed = ctx.clock() - (job.submitted_at or job.created_at)
    return ctx.pacing.next_poll_s(
        own_s, model=job.request.model_name.value, elapsed_s=elapsed, live_tasks=live_tasks
    )
