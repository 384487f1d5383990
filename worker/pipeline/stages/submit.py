"""Stage 1: submit the job to Vidgo once per attempt, persist the task id, hand off to polling.

QUEUED -> SUBMITTING (the claim: a fresh token, counts the attempt, ``submit_sent`` false) ->
SUBMITTING again under another fresh token with ``submit_sent`` true, just before the POST (the
send) -> POST -> SUBMITTED with the task id. The send is the last write before Vidgo is paid:
with durable writes on (``VIDGO_STEMS_REDIS_DURABLE_REPLICAS``) it must be confirmed by that
many replicas, or nothing is sent and the job waits QUEUED for another try (a warning and
``vidgo_stems_submits_held_unreplicated_total``). A primary cut off from its replicas (a
partition; a frozen VM that wakes up) can therefore never start a paid submit, and a failover
can at worst take a job back to SUBMITTING with ``submit_sent`` true, where the SUBMITTED write
(confirmed the same way, and written again on the new primary when lost) finds it.

A job found SUBMITTING with ``submit_sent`` false was never sent (its claim's reply was lost, or
the worker stopped before the send): it is simply claimed again. A submit that surely never
reached Vidgo goes back to QUEUED and is retried. A submit that may have landed is *ambiguous*:
its answer was lost, or the job is found SUBMITTING with ``submit_sent`` true (a worker died
mid-POST). Vidgo has no idempotency key, so ``ambiguous_submit_policy`` decides (``fail``: stop
for review; ``retry``: submit again, at most ``ambiguous_submit_retries`` times). Every
ambiguous submit is counted on the job and in the global counters.

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
from vidgo_stems.pipeline.durable import Need, NotReplicated
from vidgo_stems.pipeline.record import JobRecord
from vidgo_stems.pipeline.stages.context import (
    Outcome,
    StageContext,
    hand_off,
    load_current,
    paced,
)
from vidgo_stems.pipeline.states import JobState, TaskName, new_token, states_of
from vidgo_stems.settings import Settings
from vidgo_stems.vidgo.gate import Hold

log = logging.getLogger(__name__)

STATES = states_of(TaskName.SUBMIT)


def run_submit(ctx: StageContext, job_id: str, token: str) -> Outcome:
    """Submit ``job_id`` to Vidgo. Raises RetryableError or PermanentError for the base task."""
    job = load_current(ctx, job_id, token, STATES, "submit")
    if job is None:
        return Outcome.STALE
    if job.state is JobState.SUBMITTING and job.submit_sent is not False:
        _ambiguous(
            ctx,
            job,
            "a worker stopped while this job's submit was in flight; Vidgo may or may not have "
            "created a task",
            None,
        )
        job = replace(job, state=JobState.QUEUED)
    # (SUBMITTING with submit_sent false: claimed, never sent; it is claimed again below.)
    hold = ctx.gate.submit_pause() or ctx.gate.cooldown()
    if hold is not None:
        return _defer(ctx, job, hold)
    if ctx.limits is not None and not ctx.limits.take_slot(ctx.ledger.keys.job(job_id)):
        wait = ctx.settings.in_flight_wait_s
        return _defer(ctx, job, Hold(wait, f"{ctx.settings.max_in_flight} jobs in flight"))
    claim = new_token()
    if not ctx.ledger.advance(
        job_id,
        expect=job.state,
        token=token,
        to=JobState.SUBMITTING,
        new_token=claim,  # only this call knows it: a lost reply is recognised as ours
        fields={"submit_sent": False},
        incr={"submit_attempts": 1},
        event="submitting",
    ):
        return Outcome.STALE
    claimed = replace(job, state=JobState.SUBMITTING, token=claim, submit_sent=False)
    return _pay(ctx, claimed, token)


def _pay(ctx: StageContext, job: JobRecord, message_token: str) -> Outcome:
    """Send the submit of a job now SUBMITTING, and record the task Vidgo made for it. A
    submit to try again goes back to QUEUED under ``message_token``, the token its retry
    carries."""
    sent = new_token()
    try:
        if not ctx.ledger.advance(
            job.job_id,
            expect=JobState.SUBMITTING,
            token=job.token,
            to=JobState.SUBMITTING,
            new_token=sent,
            fields={"submit_sent": True},
            event="submit_sent",
            # On the replicas before Vidgo is paid, or not paid: a failover can then only take
            # the job back to SUBMITTING with submit_sent, where the SUBMITTED write finds it.
            durable=Need.CONFIRM,
        ):
            return Outcome.STALE
    except NotReplicated as exc:
        return _hold_unreplicated(ctx, job, sent, str(exc))
    job = replace(job, token=sent, submit_sent=True)
    try:
        result = ctx.vidgo.submit(job.request, callback_url=callback_url_for(ctx.settings, job))
    except VidgoCreditsError as exc:
        return _pause_for_credits(ctx, job, exc)
    except RetryableError as exc:
        if exc.maybe_processed:
            _ambiguous(ctx, job, ambiguity(exc), exc, retry_token=message_token)
        ctx.ledger.advance(
            job.job_id,
            expect=JobState.SUBMITTING,
            token=job.token,
            to=JobState.QUEUED,
            new_token=message_token,
            fields={"submit_sent": False},
            event="submit_retry",
            detail={"error": exc.code, "message": exc.message},
        )
        raise
    except Exception:
        # Refused for good (a 4xx) or a fault of ours: the task fails the job under the
        # message's token, which the job must hold again for that.
        _give_back(ctx, job, message_token)
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
        # A paid task: a failover must not lose it (we would pay again). Written again on the
        # new primary when a cut-off primary took it.
        durable=Need.KEEP,
    )


def _give_back(ctx: StageContext, job: JobRecord, message_token: str) -> None:
    """Hand the job (still SUBMITTING) back to the token of the message being run."""
    ctx.ledger.advance(
        job.job_id,
        expect=JobState.SUBMITTING,
        token=job.token,
        new_token=message_token,
        event="",
    )


def _hold_unreplicated(ctx: StageContext, job: JobRecord, sent: str, reason: str) -> Outcome:
    """No replica confirmed the send: pay nothing, put the job back to QUEUED, try later.

    The send may stand on the primary without the replicas (token ``sent``) or not at all
    (the claim's token); the job goes back from whichever it holds. When neither move applies
    (the primary is gone too), the job stays SUBMITTING with ``submit_sent`` at most on a
    primary that is about to lose it, and the recovery sweep claims it again later.
    """
    metrics.SUBMITS_HELD_UNREPLICATED.inc()
    wait = ctx.settings.redis_durable_timeout_s + ctx.rng.uniform(0, 1)
    log.warning(
        "job %s: not submitted, nothing paid: %s; the submit is tried again in %.0fs (check "
        "the Redis replicas and their link to the primary)",
        job.job_id,
        reason,
        wait,
    )
    for token in (sent, job.token):
        moved = hand_off(
            ctx,
            replace(job, token=token),
            to=JobState.QUEUED,
            next_task=TaskName.SUBMIT,
            event="submit_held",
            countdown_s=wait,
            fields={"submit_sent": False},
            detail={"reason": reason},
        )
        if moved is Outcome.HANDED_OFF:
            return moved
    return Outcome.STALE


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


def _ambiguous(
    ctx: StageContext,
    job: JobRecord,
    reason: str,
    exc: RetryableError | None,
    *,
    retry_token: str | None = None,
) -> None:
    """Apply the ambiguous-submit policy: raise to retry, or raise SubmitAmbiguous. The job
    stays SUBMITTING for review or goes back to QUEUED to submit again, under ``retry_token``
    when given (the token of the message whose retry or failure follows)."""
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
        new_token=retry_token,
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
