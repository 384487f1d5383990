"""Stage 2: ask Vidgo how the job's tasks are doing; re-queue with a countdown until one finishes.

A job may have several live Vidgo tasks (attempts): a failed or stalled attempt is resubmitted,
and the earlier ones keep being polled, so whichever finishes first wins and the rest are
ignored. Nothing sleeps in a worker slot: an unfinished poll hands the baton to a new poll due
after :func:`poll_countdown` seconds. A finished task's stem URLs go to the ledger and the job
moves to DOWNLOADING exactly once, however many polls ran.

Per attempt: ``finished`` with URLs wins; ``finished`` without URLs is re-polled a few times,
then the attempt is dead; ``failed`` with a reason about the input fails the job, any other
``failed`` kills the attempt; anything else is pending. With no attempt left pending, or the
newest one stalled past ``stall_timeout_s``, the job is resubmitted while it has fewer than
``max_vidgo_tasks`` Vidgo tasks, and fails otherwise.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from vidgo_stems.backoff import backoff_s
from vidgo_stems.errors import PermanentError, TaskStalled, VidgoOutputError, VidgoTaskFailed
from vidgo_stems.models import expected_stems
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
from vidgo_stems.vidgo import StemUrls, VidgoStatus
from vidgo_stems.vidgo.failures import is_permanent_failure
from vidgo_stems.vidgo.parse import extract_stem_urls

STATES = states_of(TaskName.POLL)


def poll_countdown(
    polls_so_far: int, settings: Settings, rng: random.Random, *, fast: bool = False
) -> float:
    """Seconds to the next poll: grows geometrically to a cap, jittered, never below the floor.
    ``fast`` uses the polling schedule even when callbacks make polls a slow safety net (for a
    ``finished`` answer that has no files yet: no callback will come for it)."""
    initial, longest = (
        (settings.poll_initial_s, settings.poll_max_s) if fast else settings.poll_schedule
    )
    base = min(initial * settings.poll_backoff_factor ** min(polls_so_far, 64), longest)
    jitter = base * settings.poll_jitter_ratio
    countdown = base + rng.uniform(-jitter, jitter)
    return round(max(settings.poll_min_interval_s, countdown), 3)


def resubmit_countdown(resubmits_so_far: int, settings: Settings, rng: random.Random) -> float:
    """Backoff before a resubmission: exponential from the base, capped, with full jitter."""
    return backoff_s(
        resubmits_so_far,
        base_s=settings.resubmit_backoff_base_s,
        max_s=settings.resubmit_backoff_max_s,
        jitter=(0.5, 1.0),
        rng=rng,
    )


@dataclass
class Round:
    """What one poll learnt about every live attempt."""

    winner: tuple[str, StemUrls] | None = None
    pending: list[str] = field(default_factory=list)
    dead_reason: tuple[str, str] | None = None  # (code, message) of the last dead attempt
    empty_polls: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, str] = field(default_factory=dict)
    progress: int | None = None
    late_s: float | None = None  # how long after its due time this poll started
    finished_empty: bool = False  # an attempt said finished, with no files yet


def run_poll(ctx: StageContext, job_id: str, token: str) -> Outcome:
    """Poll ``job_id``'s live Vidgo tasks once. Raises for the base task to retry or fail."""
    job = load_current(ctx, job_id, token, STATES, "poll")
    if job is None:
        return Outcome.STALE
    late_s = round(max(0.0, ctx.clock() - job.next_due_at), 3) if job.next_due_at else None
    if late_s is not None:
        metrics.POLL_LATENESS.observe(late_s)
    hold = ctx.gate.cooldown()
    if hold is not None:
        return _again(
            ctx, job, Round(pending=_live(job)), event="cooldown", wait_s=hold.remaining_s
        )
    result = _poll_round(ctx, job)
    result.late_s = late_s
    if result.winner is not None:
        return _finished(ctx, job, *result.winner)
    if not result.pending:
        code, message = result.dead_reason or ("vidgo_task_failed", "no live Vidgo task")
        return _resubmit_or_fail(ctx, job, result, code=code, reason=message)
    waited = ctx.clock() - (job.submitted_at or job.created_at)
    if waited > ctx.settings.stall_timeout_s:
        ctx.ledger.bump_counter("stalls")
        newest = job.vidgo_task_ids[-1] if job.vidgo_task_ids else "?"
        return _resubmit_or_fail(
            ctx,
            job,
            result,
            code=TaskStalled.code,
            reason=f"Vidgo task {newest} is still {result.statuses.get(newest, 'unfinished')} "
            f"after {waited:.0f}s (VIDGO_STEMS_STALL_TIMEOUT_S={ctx.settings.stall_timeout_s:g})",
        )
    return _again(ctx, job, result, event="polled")


def _live(job: JobRecord) -> list[str]:
    if job.live_task_ids:
        return list(job.live_task_ids)
    return [job.vidgo_task_id] if job.vidgo_task_id else []


def _poll_round(ctx: StageContext, job: JobRecord) -> Round:
    result = Round(empty_polls=dict(job.attempt_empty_polls))
    wanted = expected_stems(job.request.output_type)
    for task_id in _live(job):
        detail = ctx.vidgo.music_detail(task_id)
        result.statuses[task_id] = detail.raw_status
        if detail.progress is not None:
            result.progress = detail.progress
        if detail.status is VidgoStatus.FINISHED:
            stems = extract_stem_urls(detail.files, wanted, ctx.settings.json_limits)
            if stems.urls:
                result.winner = (task_id, stems)
                return result
            result.empty_polls[task_id] = result.empty_polls.get(task_id, 0) + 1
            result.finished_empty = True
            if result.empty_polls[task_id] > ctx.settings.empty_finished_repolls:
                result.dead_reason = (
                    "vidgo_finished_without_output",
                    f"Vidgo task {task_id} finished without any stem URL "
                    f"after {result.empty_polls[task_id]} polls",
                )
                continue
        elif detail.status is VidgoStatus.FAILED:
            reason = detail.error_message or "no reason given"
            if is_permanent_failure(reason):
                raise VidgoTaskFailed(
                    f"Vidgo rejected the input (task {task_id}): {reason}",
                    code="vidgo_task_rejected",
                    job_id=job.job_id,
                )
            result.dead_reason = ("vidgo_task_failed", f"Vidgo task {task_id} failed: {reason}")
            continue
        result.pending.append(task_id)
    return result


def _again(
    ctx: StageContext, job: JobRecord, result: Round, *, event: str, wait_s: float | None = None
) -> Outcome:
    statuses = set(result.statuses.values())
    running = "running" in statuses or job.state is JobState.RUNNING
    fields: dict[str, Any] = {
        "live_task_ids": result.pending,
        "attempt_empty_polls": result.empty_polls,
    }
    if result.statuses:
        fields["vidgo_status"] = result.statuses.get(result.pending[-1], job.vidgo_status)
    if result.progress is not None:
        fields["vidgo_progress"] = result.progress
    return hand_off(
        ctx,
        job,
        to=JobState.RUNNING if running else JobState.SUBMITTED,
        next_task=TaskName.POLL,
        event=event,
        countdown_s=wait_s if wait_s is not None else _next_poll_s(ctx, job, result),
        fields=fields,
        incr={"polls": 1} if event == "polled" else None,
        detail={"vidgo_status": result.statuses, "late_s": result.late_s}
        if result.statuses
        else None,
    )


def _next_poll_s(ctx: StageContext, job: JobRecord, result: Round) -> float:
    if result.finished_empty:  # files are usually there a moment later: re-poll soon
        empties = max(result.empty_polls.values())
        return poll_countdown(empties - 1, ctx.settings, ctx.rng, fast=True)
    own = poll_countdown(job.polls, ctx.settings, ctx.rng)
    return paced(ctx, job, own, live_tasks=len(result.pending))


def _finished(ctx: StageContext, job: JobRecord, task_id: str, stems: StemUrls) -> Outcome:
    if ctx.pacing is not None and job.submitted_at:
        ctx.pacing.record_duration(job.request.model_name.value, ctx.clock() - job.submitted_at)
    return hand_off(
        ctx,
        job,
        to=JobState.DOWNLOADING,
        next_task=TaskName.DOWNLOAD,
        event="finished",
        fields={
            "vidgo_task_id": task_id,
            "live_task_ids": [],
            "stem_urls": stems.urls,
            "vidgo_status": "finished",
            "vidgo_progress": 100,
            "finished_at": ctx.clock(),
            **({"extra_stem_keys": sorted(stems.extra)} if stems.extra else {}),
        },
        incr={"polls": 1},
        detail={"vidgo_task_id": task_id, "stems": sorted(stems.urls)},
    )


def _resubmit_or_fail(
    ctx: StageContext, job: JobRecord, result: Round, *, code: str, reason: str
) -> Outcome:
    """Resubmit with backoff while the job has Vidgo tasks to spare; else fail with ``code``."""
    paid = len(job.vidgo_task_ids) - job.tasks_at_retry  # a retry starts a fresh budget
    if paid >= ctx.settings.max_vidgo_tasks:
        error = PermanentError(
            f"{reason}; gave up after {paid} Vidgo task(s) "
            f"(VIDGO_STEMS_MAX_VIDGO_TASKS={ctx.settings.max_vidgo_tasks})",
            code=code,
            job_id=job.job_id,
        )
        if code == "vidgo_finished_without_output":
            raise VidgoOutputError(error.message, code=code, job_id=job.job_id)
        raise error
    ctx.ledger.bump_counter("resubmissions")
    metrics.VIDGO_RESUBMITS.inc()
    resubmits = job.resubmits
    return hand_off(
        ctx,
        job,
        to=JobState.QUEUED,
        next_task=TaskName.SUBMIT,
        event="resubmit",
        countdown_s=resubmit_countdown(resubmits, ctx.settings, ctx.rng),
        fields={"live_task_ids": result.pending, "attempt_empty_polls": result.empty_polls},
        incr={"resubmits": 1, "polls": 1},
        detail={"reason": reason, "error": code, "still_polled": result.pending},
    )
