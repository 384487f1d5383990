"""Stage 2: ask Vidgo how the task is doing; re-queue with a countdown until it is finished.

Nothing sleeps in a worker slot: a poll that finds the task unfinished hands the baton to a new
poll message due after :func:`poll_countdown` seconds. A finished task's stem URLs are parsed and
stored in the ledger, then the job moves to DOWNLOADING, exactly once, whatever the number of polls.
"""

from __future__ import annotations

import random

from worker.errors import TaskStalled, VidgoOutputError, VidgoTaskFailed
from worker.ledger import JobRecord, JobState
from worker.models import expected_stems
from worker.settings import Settings
from worker.stages.context import Outcome, StageContext, TaskName, hand_off, load_current
from worker.vidgo import TaskDetail, VidgoStatus
from worker.vidgo.parse import extract_stem_urls

STATES = (JobState.SUBMITTED, JobState.RUNNING)


def poll_countdown(polls_so_far: int, settings: Settings, rng: random.Random) -> float:
    """Seconds to the next poll: grows geometrically to a cap, jittered, never below the floor."""
    base = settings.poll_initial_s * settings.poll_backoff_factor ** min(polls_so_far, 64)
    base = min(base, settings.poll_max_s)
    jitter = base * settings.poll_jitter_ratio
    countdown = base + rng.uniform(-jitter, jitter)
    return round(max(settings.poll_min_interval_s, countdown), 3)


def run_poll(ctx: StageContext, job_id: str, token: str) -> Outcome:
    """Poll ``job_id``'s Vidgo task once. Raises for the base task to retry or fail the job."""
    job = load_current(ctx, job_id, token, STATES, "poll")
    if job is None or job.vidgo_task_id is None:
        return Outcome.STALE
    detail = ctx.vidgo.music_detail(job.vidgo_task_id)
    if detail.status is VidgoStatus.FINISHED:
        return _finished(ctx, job, detail)
    if detail.status is VidgoStatus.FAILED:
        raise VidgoTaskFailed(
            f"Vidgo task {job.vidgo_task_id} failed: {detail.error_message or 'no reason given'}",
            job_id=job_id,
        )
    waited = ctx.clock() - (job.submitted_at or job.created_at)
    if waited > ctx.settings.poll_timeout_s:
        raise TaskStalled(
            f"Vidgo task {job.vidgo_task_id} is still {detail.raw_status} after {waited:.0f}s "
            f"(VIDGO_STEMS_POLL_TIMEOUT_S={ctx.settings.poll_timeout_s:.0f})",
            job_id=job_id,
        )
    return _again(ctx, job, detail, event="polled")


def _again(ctx: StageContext, job: JobRecord, detail: TaskDetail, *, event: str) -> Outcome:
    running = detail.status is VidgoStatus.RUNNING or job.state is JobState.RUNNING
    return hand_off(
        ctx,
        job,
        to=JobState.RUNNING if running else JobState.SUBMITTED,
        next_task=TaskName.POLL,
        event=event,
        countdown_s=poll_countdown(job.polls, ctx.settings, ctx.rng),
        fields={"vidgo_status": detail.raw_status, "vidgo_progress": detail.progress},
        incr={"polls": 1, **({"empty_finished_polls": 1} if event == "finished_empty" else {})},
        detail={"vidgo_status": detail.raw_status},
    )


def _finished(ctx: StageContext, job: JobRecord, detail: TaskDetail) -> Outcome:
    stems = extract_stem_urls(detail.files, expected_stems(job.request.output_type))
    if not stems.urls:
        if job.empty_finished_polls < ctx.settings.empty_finished_repolls:
            return _again(ctx, job, detail, event="finished_empty")
        raise VidgoOutputError(
            f"Vidgo task {job.vidgo_task_id} finished without any stem URL after "
            f"{job.empty_finished_polls + 1} polls; not resubmitting (it would be charged again)",
            code="vidgo_finished_without_output",
            job_id=job.job_id,
        )
    return hand_off(
        ctx,
        job,
        to=JobState.DOWNLOADING,
        next_task=TaskName.DOWNLOAD,
        event="finished",
        fields={
            "stem_urls": stems.urls,
            "vidgo_status": detail.raw_status,
            "vidgo_progress": 100,
            "finished_at": ctx.clock(),
            **({"extra_stem_keys": sorted(stems.extra)} if stems.extra else {}),
        },
        incr={"polls": 1},
        detail={"stems": sorted(stems.urls)},
    )
