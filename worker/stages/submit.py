"""Stage 1: submit the job to Vidgo once, persist the task id, hand off to polling.

QUEUED -> SUBMITTING (compare-and-set, counts the attempt) -> POST -> SUBMITTED with the task id.
A submit that surely never reached Vidgo goes back to QUEUED and is retried. A submit whose
answer was lost after it may have landed is *ambiguous*: Vidgo has no idempotency key, so the
``ambiguous_submit_policy`` decides (``fail``: stop for review; ``retry_once``: one more POST).
A delivery that finds the job still SUBMITTING under its own token means a worker died mid-POST:
that is ambiguous too.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from worker.errors import RetryableError, SubmitAmbiguous
from worker.ledger import JobRecord, JobState
from worker.settings import Settings
from worker.stages.context import Outcome, StageContext, TaskName, hand_off, load_current

log = logging.getLogger(__name__)

STATES = (JobState.QUEUED, JobState.SUBMITTING)


def run_submit(ctx: StageContext, job_id: str, token: str) -> Outcome:
    """Submit ``job_id`` to Vidgo. Raises RetryableError or PermanentError for the base task."""
    job = load_current(ctx, job_id, token, STATES, "submit")
    if job is None:
        return Outcome.STALE
    if job.state is JobState.SUBMITTING:
        _ambiguous(ctx, job, "a worker stopped while this job's submit was in flight", None)
    elif not ctx.ledger.advance(
        job_id,
        expect=JobState.QUEUED,
        token=token,
        to=JobState.SUBMITTING,
        incr={"submit_attempts": 1},
        event="submitting",
    ):
        return Outcome.STALE
    try:
        result = ctx.vidgo.submit(job.request, callback_url=callback_url_for(ctx.settings, job))
    except RetryableError as exc:
        if exc.maybe_processed:
            _ambiguous(ctx, job, str(exc), exc)
        ctx.ledger.advance(
            job_id,
            expect=JobState.SUBMITTING,
            token=token,
            to=JobState.QUEUED,
            event="submit_retry",
            detail={"error": exc.code, "message": exc.message},
        )
        raise
    now = ctx.clock()
    return hand_off(
        ctx,
        _with_state(job, JobState.SUBMITTING),
        to=JobState.SUBMITTED,
        next_task=TaskName.POLL,
        event="submitted",
        countdown_s=ctx.settings.poll_initial_s,
        fields={
            "vidgo_task_id": result.task_id,
            "vidgo_task_ids": [*job.vidgo_task_ids, result.task_id],
            "vidgo_status": result.status.value,
            "submitted_at": now,
        },
        detail={"vidgo_task_id": result.task_id},
    )


def callback_url_for(settings: Settings, job: JobRecord) -> str | None:
    """The URL Vidgo should call back, with the job's unguessable token; None when unset."""
    if not settings.public_callback_base_url or not job.callback_token:
        return None
    return (
        f"{settings.public_callback_base_url}/v1/vidgo/callback/{job.job_id}"
        f"?token={job.callback_token}"
    )


def _ambiguous(ctx: StageContext, job: JobRecord, reason: str, exc: RetryableError | None) -> None:
    """Apply the ambiguous-submit policy: raise to retry (once) or raise SubmitAmbiguous."""
    ctx.ledger.bump_counter("ambiguous_submits")
    earlier = int(job.extra.get("ambiguous_submits", 0))
    retry = ctx.settings.ambiguous_submit_policy == "retry_once" and earlier < 1
    ctx.ledger.advance(
        job.job_id,
        expect=JobState.SUBMITTING,
        token=job.token,
        to=JobState.QUEUED if retry else None,
        incr={"ambiguous_submits": 1},
        event="submit_ambiguous",
        detail={"reason": reason, "retrying": retry},
    )
    log.warning("job %s: ambiguous submit (%s); retrying=%s", job.job_id, reason, retry)
    if retry and exc is not None:
        raise exc
    if retry:
        raise _RetryAfterAmbiguous(reason)
    raise SubmitAmbiguous(
        f"the submit may have created a Vidgo task but its answer was lost ({reason}); "
        "check the Vidgo dashboard before re-enqueueing, or set "
        "VIDGO_STEMS_AMBIGUOUS_SUBMIT_POLICY=retry_once to allow one more submit",
        job_id=job.job_id,
    )


class _RetryAfterAmbiguous(RetryableError):
    code = "submit_ambiguous_retry"


def _with_state(job: JobRecord, state: JobState) -> JobRecord:
    return replace(job, state=state)
