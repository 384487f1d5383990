"""Retry: a FAILED or CANCELLED job starts again from the first step that still needs doing.

What was done and paid for is kept: stems already stored with their checksum are
post-processed again, not downloaded; stems Vidgo still serves are downloaded, not paid for
again; Vidgo tasks paid within the last day are polled again before anything is submitted.
Only a job with nothing left to reuse is submitted again. The move is one compare-and-set
under a fresh step token (messages still in flight for the old attempt become stale), the
history is kept, and the retry is recorded in it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vidgo_stems.errors import InvalidRequest, JobConflict
from vidgo_stems.files.stems import still_stored
from vidgo_stems.files.storage import Storage
from vidgo_stems.models import expected_stems, validate_job_id
from vidgo_stems.pipeline.ledger import Ledger
from vidgo_stems.pipeline.outbox import Outbox
from vidgo_stems.pipeline.parts import Parts
from vidgo_stems.pipeline.record import JobRecord
from vidgo_stems.pipeline.states import STATES, JobState, Step, TaskName, new_token

log = logging.getLogger(__name__)

#: Vidgo keeps a task's results (and its stem URLs) for 24 hours; leave a margin.
RESULTS_LIVE_S = 23 * 3600
RETRYABLE = (JobState.FAILED, JobState.CANCELLED)
#: Failures that say the paid tasks themselves are dead: polling them again cannot help, so the
#: retry submits again (and pays).
TASKS_DEAD = frozenset(
    {
        "vidgo_task_failed",
        "vidgo_task_rejected",
        "vidgo_task_stalled",
        "vidgo_finished_without_output",
        "vidgo_malformed_stems",
    }
)


@dataclass(frozen=True)
class RetryPlan:
    """Where a retried job starts again, why, and whether it may pay for a new Vidgo task."""

    job_id: str
    error_code: str | None
    to: JobState
    reason: str
    may_pay: bool
    fields: dict[str, Any]

    @property
    def task(self) -> TaskName:
        task = STATES[self.to].task
        assert task is not None, "a retry always moves to an active state"
        return task


def plan_retry(job: JobRecord, storage: Storage, *, now: float) -> RetryPlan:
    """The first step of ``job`` that still needs doing (pure apart from storage reads)."""
    wanted = expected_stems(job.request.output_type)
    stored = {name: info for name, info in job.stems.items() if still_stored(storage, info)}
    base: dict[str, Any] = {
        "tasks_at_retry": len(job.vidgo_task_ids),
        "stems": stored,
        "url_refreshes": 0,
    }
    code = job.error_code
    if stored and set(wanted) <= set(stored):
        return RetryPlan(job.job_id, code, JobState.POSTPROCESSING, "stems stored", False, base)
    if job.stem_urls and job.finished_at and now - job.finished_at < RESULTS_LIVE_S:
        reason = "Vidgo still serves the stems"
        return RetryPlan(job.job_id, code, JobState.DOWNLOADING, reason, False, base)
    recent = bool(job.submitted_at and now - job.submitted_at < RESULTS_LIVE_S)
    if job.vidgo_task_ids and recent and code not in TASKS_DEAD:
        fields = {
            **base,
            "live_task_ids": list(job.vidgo_task_ids),
            "attempt_empty_polls": {},
            "submitted_at": now,
        }
        reason = f"polling the paid Vidgo task(s) {', '.join(job.vidgo_task_ids)} again first"
        return RetryPlan(job.job_id, code, JobState.SUBMITTED, reason, False, fields)
    # The old tasks are dead or past their results: only the new submission is polled.
    fields = {**base, "live_task_ids": [], "attempt_empty_polls": {}}
    return RetryPlan(job.job_id, code, JobState.QUEUED, "submitting again", True, fields)


def retry_job(
    ledger: Ledger,
    storage: Storage,
    job_id: str,
    *,
    now: float,
    forget_result: Callable[[str], None] = lambda _: None,
    by: str = "caller",
    found: JobRecord | None = None,
) -> RetryPlan:
    """Start a FAILED or CANCELLED job again; InvalidRequest when it is unknown or not ended
    that way (the message says what state it is in). ``found`` is the job as the caller just
    read it (enqueue's create step returns it), which saves reading it again; the move is
    still guarded by that state."""
    job = found or ledger.get(validate_job_id(job_id))
    if job is None:
        raise InvalidRequest(f"no job {job_id} in the ledger: enqueue the track instead")
    if job.state not in RETRYABLE:
        raise JobConflict(
            f"job {job_id} is {job.state.value}: only FAILED or CANCELLED jobs are retried"
        )
    plan = plan_retry(job, storage, now=now)
    token = new_token()
    fields = {**plan.fields, "error_code": None, "error_message": None, "next_due_at": now}
    Parts(ledger).reset(job_id)  # an ended job runs no part: post-processing starts afresh
    moved = ledger.advance(
        job_id,
        expect=job.state,
        token=None,
        to=plan.to,
        new_token=token,
        fields={**fields, "webhook_status": None},
        incr={"retry_count": 1},
        event="retried",
        detail={"error": job.error_code, "reason": plan.reason, "by": by},
        step=Step(plan.task, job_id, token),
    )
    if not moved:
        raise JobConflict(f"job {job_id} changed while it was being retried: try again")
    Outbox(ledger).clear_job(job_id)
    forget_result(job_id)
    ledger.bump_counter("job_retries")
    log.info("job %s retried from %s: %s", job_id, plan.to.value, plan.reason)
    return plan
