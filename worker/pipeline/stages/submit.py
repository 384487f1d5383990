"""Stage 1: submit the job to Vidgo once per attempt, persist the task id, hand off to polling.

QUEUED -> SUBMITTING (compare-and-set, counts the attempt) -> POST -> SUBMITTED with the task id.
A submit that surely never reached Vidgo goes back to QUEUED and is retried. A submit whose
answer was lost after it may have landed is *ambiguous*: Vidgo has no idempotency key, so
``ambiguous_submit_policy`` decides (``fail``: stop for review; ``retry``: submit again, at most
``ambiguous_submit_retries`` times). A delivery that finds the job still SUBMITTING under its own
token means a worker died mid-POST: that is ambiguous too. Every ambiguous submit is counted on
the job and in the global counters.

Before any POST the shared gate is read: during a rate-limit cool-down or a credits pause the
job stays QUEUED and the submit is re-queued for when the brake ends. A 402 sets that pause.
Then the job takes an in-flight slot (``max_in_flight`` across all workers); when none is free
it waits QUEUED the same way.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from vidgo_stems.errors import RetryableError, SubmitAmbiguous, VidgoCreditsError
from vidgo_stems.observe import metrics
from vidgo_stems.pipeline.record import JobRecord
from vidgo_stems.pipeline.stages.context import (
    Outcome,
    StageContext,
    hand_off,
    load_current,
    paced,
)
from vidgo_stems.pipeline.states import JobState, TaskName, states_of
from vidgo_stems.settings import Settings
from vidgo_stems.vidgo.gate import Hold

log = logging.getLogger(__name__)

STATES = states_of(TaskName.SUBMIT)


def run_submit(ctx: StageContext, job_id: str, token: str) -> Outcome:
    """Submit ``job_id`` to Vidgo. Raises RetryableError or PermanentError for the base task."""
    job = load_current(ctx, job_id, token, STATES, "submit")
    if job is None:
        return Outcome.STALE
    if job.state is JobState.SUBMITTING:
        _ambiguous(
            ctx,
            job,
            "a worker stopped while this job's submit was in flight; Vidgo may or may not have "
            "created a task",
            None,
        )
        job = replace(job, state=JobState.QUEUED)
    hold = ctx.gate.submit_pause() or ctx.gate.cooldown()
    if hold is not None:
        return _defer(ctx, job, hold)
    if ctx.limits is not None and not ctx.limits.take_slot(ctx.ledger.keys.job(job_id)):
        wait = ctx.settings.in_flight_wait_s
        return _defer(ctx, job, Hold(wait, f"{ctx.settings.max_in_flight} jobs in flight"))
    if not ctx.ledger.advance(
        job_id,
        expect=JobState.QUEUED,
        token=token,
        to=JobState.SUBMITTING,
        incr={"submit_attempts": 1},
        event="submitting",
        # Recorded on the replicas before Vidgo is paid: a failover can then only take the
        # job back to SUBMITTING under this token, where the SUBMITTED write finds it again.
        durable=True,
    ):
        return Outcome.STALE
    return _pay(ctx, replace(job, state=JobState.SUBMITTING))


def _pay(ctx: StageContext, job: JobRecord) -> Outcome:
    """Send the submit of a job now SUBMITTING, and record the task Vidgo made for it."""
    try:
        result = ctx.vidgo.submit(job.request, callback_url=callback_url_for(ctx.settings, job))
    except VidgoCreditsError as exc:
        return _pause_for_credits(ctx, job, exc)
    except RetryableError as exc:
        if exc.maybe_processed:
            _ambiguous(ctx, job, ambiguity(exc), exc)
        ctx.ledger.advance(
            job.job_id,
            expect=JobState.SUBMITTING,
            token=job.token,
            to=JobState.QUEUED,
            event="submit_retry",
            detail={"error": exc.code, "message": exc.message},
        )
        raise
    metrics.VIDGO_TASKS_PAID.inc()
    metrics.CREDITS_SPENT.inc(ctx.settings.credits_per_task)
    now = ctx.clock()
    return hand_off(
        ctx,
        job,
        to=JobState.SUBMITTED,
        next_task=TaskName.POLL,
        event="submitted",
        countdown_s=paced(ctx, job, ctx.settings.poll_schedule[0]),
        fields={
            "vidgo_task_id": result.task_id,
            "vidgo_task_ids": [*job.vidgo_task_ids, result.task_id],
            "live_task_ids": [*job.live_task_ids, result.task_id],
            "vidgo_status": result.status.value,
            "submitted_at": now,
            "first_submitted_at": job.first_submitted_at or now,
        },
        detail={"vidgo_task_id": result.task_id, "attempt": len(job.vidgo_task_ids) + 1},
        durable=True,  # a paid task: a failover must not lose it (we would pay again)
    )


def callback_url_for(settings: Settings, job: JobRecord) -> str | None:
    """The URL Vidgo should call back, with the job's unguessable token; None when unset."""
    if not settings.public_callback_base_url or not job.callback_token:
        return None
    return (
        f"{settings.public_callback_base_url}/v1/vidgo/callback/{job.job_id}"
        f"?token={job.callback_token}"
    )


def _defer(ctx: StageContext, job: JobRecord, hold: Hold) -> Outcome:
    """Keep the job QUEUED and come back when the cool-down or pause ends."""
    return hand_off(
        ctx,
        job,
        to=JobState.QUEUED,
        next_task=TaskName.SUBMIT,
        event="submit_deferred",
        countdown_s=hold.remaining_s + ctx.rng.uniform(0, 1),
        detail={"reason": hold.reason},
    )


def _pause_for_credits(ctx: StageContext, job: JobRecord, exc: VidgoCreditsError) -> Outcome:
    """402: pause every submit, keep this job QUEUED, and try again when the pause ends."""
    pause_s = ctx.settings.credits_pause_s
    ctx.gate.pause_submits(pause_s, exc.message)
    ctx.ledger.bump_counter("credit_pauses")
    log.error(
        "Vidgo has no credits left: every submit is paused for %.0fs (%s); top up, then run "
        "`vidgo-stems resume-submits` to go on at once",
        pause_s,
        exc.message,
    )
    return hand_off(
        ctx,
        job,
        to=JobState.QUEUED,
        next_task=TaskName.SUBMIT,
        event="submit_paused",
        countdown_s=pause_s,
        detail={"reason": exc.message},
    )


def _ambiguous(ctx: StageContext, job: JobRecord, reason: str, exc: RetryableError | None) -> None:
    """Apply the ambiguous-submit policy: raise to retry, or raise SubmitAmbiguous."""
    ctx.ledger.bump_counter("ambiguous_submits")
    metrics.AMBIGUOUS_SUBMITS.inc()
    earlier = job.ambiguous_submits
    settings = ctx.settings
    retry = (
        settings.ambiguous_submit_policy == "retry" and earlier < settings.ambiguous_submit_retries
    )
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
        return
    raise SubmitAmbiguous(
        f"{reason}; check the Vidgo dashboard for a task for this audio, then retry the job "
        f"(`vidgo-stems retry {job.job_id}`, or all of them with `vidgo-stems retry --code "
        "submit_ambiguous`) or set VIDGO_STEMS_AMBIGUOUS_SUBMIT_POLICY=retry to submit again "
        "by itself",
        job_id=job.job_id,
    )


def ambiguity(exc: RetryableError) -> str:
    """What exactly happened to a submit that may have reached Vidgo, in one clause."""
    status = exc.status_code
    if status in (500, 502):
        where = "a proxy or Vidgo itself" if status == 502 else "Vidgo"
        return (
            f"Vidgo's submit answered {status} (from {where}); it may or may not have "
            "created a task"
        )
    return (
        f"the connection broke after the submit was sent ({exc.message}); Vidgo may or may "
        "not have created a task"
    )
