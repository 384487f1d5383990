"""The Celery tasks of the pipeline: thin wrappers around ``vidgo_stems.pipeline.stages``.

Names are a wire format and come from :class:`vidgo_stems.pipeline.states.TaskName`
(``vidgo.submit``, ``vidgo.poll``, ``vidgo.download``, ``vidgo.postprocess``, plus
``vidgo.webhook`` for completion webhooks); kwargs are ``job_id`` and ``token``, and unknown
kwargs are ignored so rolling deploys work. Retries follow the exception type, in
:class:`StageTask` alone.

``vidgo.enqueue`` is an enqueue by name, for backends that cannot import this package:
``send_task("vidgo.enqueue", kwargs={"audio_url": ..., "job_id": ...})`` creates the job in the
ledger exactly as :func:`vidgo_stems.producer.enqueue` does and returns its id. ``vidgo.submit``
sent
*without* a token does the same, so senders written before ``vidgo.enqueue`` keep working.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any

import redis.exceptions
from celery import Task
from celery.exceptions import Ignore, Retry, SoftTimeLimitExceeded
from celery.result import AsyncResult

from vidgo_stems.backoff import backoff_s
from vidgo_stems.celery_app import app, dispatch_webhook, producer, record_done, record_end
from vidgo_stems.errors import (
    InvalidTaskInput,
    PermanentError,
    RetryableError,
    VidgoRateLimited,
    VidgoStemsError,
)
from vidgo_stems.files.links import ORIGINALS
from vidgo_stems.models import TRACK_FIELDS, parse_request
from vidgo_stems.observe.logs import mask_tokens
from vidgo_stems.pipeline.outbox import announce, announce_stems_stored
from vidgo_stems.pipeline.retention import purge, remove_originals
from vidgo_stems.pipeline.schedule import Schedule
from vidgo_stems.pipeline.stages import (
    Outcome,
    StageContext,
    run_download,
    run_part,
    run_poll,
    run_postprocess,
    run_submit,
)
from vidgo_stems.pipeline.states import ACTIVE_STATES, JobState, Step, TaskName
from vidgo_stems.producer import enqueue_request
from vidgo_stems.redisconn import NoReplicasError
from vidgo_stems.runtime import runtime
from vidgo_stems.text import neutralise

log = logging.getLogger(__name__)

#: Infrastructure hiccups that are retried like a RetryableError. A stage stopped by its soft
#: time limit is one too: downloads resume from the bytes and stems already kept.
REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, NoReplicasError)
TRANSIENT = (*REDIS_DOWN, SoftTimeLimitExceeded)


def retry_countdown(retries: int, exc: BaseException, rng: random.Random) -> float:
    """Exponential backoff with jitter over the upper half, capped, and never below
    ``VIDGO_STEMS_POLL_MIN_INTERVAL_S`` (the floor of every wait); a Retry-After from Vidgo is
    a floor too."""
    settings = runtime().settings
    cap = max(settings.retry_backoff_max_s, settings.poll_min_interval_s)
    countdown = backoff_s(
        retries, base_s=settings.retry_backoff_base_s, max_s=cap, jitter=(0.5, 1.0), rng=rng
    )
    countdown = max(countdown, settings.poll_min_interval_s)
    retry_after = getattr(exc, "retry_after_s", None)
    if retry_after is not None:
        countdown = max(countdown, min(retry_after, cap))
    return round(countdown, 3)


def schedule_retry(
    task: str, job_id: str, token: str, retries: int, countdown: float, part: str | None = None
) -> bool:
    """Put the stage's next try into the schedule, guarded by the step token (False when the
    job moved on meanwhile: nothing to retry). A part of post-processing waits in an entry of
    its own, beside its siblings'."""
    step = Step(TaskName(task), job_id, token, countdown, retries=retries, part=part)
    if part is not None:
        return schedule_part_retry(step)
    return bool(
        runtime().ledger.advance(
            job_id,
            expect=ACTIVE_STATES,
            token=token,
            fields={"next_due_at": time.time() + countdown},
            event="retry",
            detail={"task": task, "retry": retries, "in_s": countdown},
            step=step,
        )
    )


def schedule_part_retry(step: Step) -> bool:
    """Schedule a part's next try while the job still holds its token (the part checks the
    token again when it runs)."""
    ledger = runtime().ledger
    job = ledger.get(step.job_id)
    if job is None or job.token != step.token:
        return False
    queue, message = ledger.encode(step)
    entry = f"{ledger.keys.job(step.job_id)}#part:{step.part}"
    Schedule(ledger.redis, ledger.keys.prefix).add(
        entry, time.time() + step.countdown_s, queue, message
    )
    return True


def fail_job(job_id: str, token: str | None, code: str, message: str) -> bool:
    """Mark the job FAILED (guarded by the step token) with a stable code and a human message."""
    failed: bool = runtime().ledger.advance(
        job_id,
        expect=ACTIVE_STATES,
        token=token,
        to=JobState.FAILED,
        fields={"error_code": code, "error_message": message},
        event="failed",
        detail={"error": code},
    )
    if failed:
        record_end(job_id, code, message)
        announce(runtime().ledger, dispatch_webhook, job_id)
    return failed


def _cool_down_everyone(exc: VidgoRateLimited) -> None:
    """A 429 seen here holds off every worker, not only this one."""
    rt = runtime()
    seconds = exc.retry_after_s or rt.settings.rate_limit_cooldown_s
    if rt.gate.cool_down(seconds, exc.message):
        rt.ledger.bump_counter("rate_limit_cooldowns")


class StageTask(Task):  # type: ignore[misc]
    """Base of the pipeline tasks: retries retryable errors, fails the job on anything else."""

    abstract = True
    acks_late = True
    throws = (PermanentError,)
    _rng = random.Random()

    def context(self) -> StageContext:
        """The stage collaborators, naming this worker in the history."""
        return runtime().stage_context(self.request.hostname or "")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the stage; a retryable error becomes a retry, in named steps.

        1. A 429 cools every worker down at once (:func:`_cool_down_everyone`).
        2. An enqueue by name (no job, no token) is retried by Celery itself.
        3. Past ``VIDGO_STEMS_TASK_MAX_RETRIES`` the error stands, and :meth:`on_failure`
           fails the job.
        4. Otherwise the next try is written into the ledger's schedule, guarded by the step
           token (:meth:`_schedule_retry`): a job that moved on meanwhile needs none, and with
           Redis down the job is left to the recovery sweep rather than failed.
        """
        try:
            return super().__call__(*args, **kwargs)
        except (RetryableError, *TRANSIENT) as exc:
            if isinstance(exc, VidgoRateLimited):
                _cool_down_everyone(exc)
            retries, limit = self.request.retries, runtime().settings.task_max_retries
            job_id, token = kwargs.get("job_id"), kwargs.get("token")
            countdown = retry_countdown(retries, exc, self._rng)
            if not job_id or not token:
                raise self.retry(exc=exc, countdown=countdown, max_retries=limit) from None
            if retries >= limit:
                raise
            return self._schedule_retry(exc, job_id, token, countdown, kwargs.get("part"))

    def _schedule_retry(
        self, exc: Exception, job_id: str, token: str, countdown: float, part: str | None
    ) -> str:
        """Put the next try of this step into the schedule and record the retry with Celery
        (raises Retry); Outcome.STALE when the job moved on; Ignore when Redis is down."""
        retries = self.request.retries
        log.warning(
            "%s job %s: %s; retry %d in %.1fs", self.name, job_id, exc, retries + 1, countdown
        )
        try:
            runtime().ledger.bump_counter("retries")
            scheduled = schedule_retry(self.name, job_id, token, retries + 1, countdown, part)
        except REDIS_DOWN as down:
            # The job keeps its state and token; with no message and no schedule entry, the
            # recovery sweep sends it again once Redis answers. Failing it would lose work that
            # is not lost.
            log.warning(
                "%s job %s: cannot schedule its retry (%s); the recovery sweep will",
                self.name,
                job_id,
                down,
            )
            raise Ignore() from None
        if not scheduled:
            log.info("%s job %s moved on meanwhile; no retry needed", self.name, job_id)
            return Outcome.STALE.value
        # The next try waits in the schedule; this records the retry with Celery.
        raise Retry(exc=exc, when=countdown) from None

    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        job_id, token = kwargs.get("job_id"), kwargs.get("token")
        if not job_id or not token:  # no token: an enqueue by name, which made no job
            return
        if isinstance(exc, (RetryableError, *TRANSIENT)):
            code = getattr(exc, "code", "transient_error")
            message = f"{exc} (gave up after {self.request.retries} retries)"
        elif isinstance(exc, VidgoStemsError):
            code, message = exc.code, exc.message
        else:  # a bug's text may carry anything: a request body, a callback token, escapes
            code = "internal_error"
            message = neutralise(mask_tokens(f"{type(exc).__name__}: {exc}"))
        if fail_job(job_id, token, code, message):
            log.error("%s job %s FAILED [%s]: %s", self.name, job_id, code, message)


@app.task(base=StageTask, name=TaskName.SUBMIT.value, bind=True, ignore_result=True)
def submit(
    self: StageTask, job_id: str | None = None, token: str | None = None, **kwargs: Any
) -> str:
    """Submit the job's track to Vidgo once and start polling (or, with no token, enqueue).

    Only post-processing stores a result (the manifest, under the job id); the ledger is where
    every other step's outcome lives, so the others skip the result store.
    """
    if token is None:
        return enqueue_by_name(job_id, kwargs)
    return run_submit(self.context(), job_id or "", token).value


def enqueue_by_name(job_id: str | None, kwargs: dict[str, Any]) -> str:
    """The body of a ``vidgo.enqueue`` sent by name: validate, create the job, return its id."""

    given = {k: v for k, v in kwargs.items() if v is not None}
    try:
        request = parse_request({k: given[k] for k in TRACK_FIELDS if k in given})
        enqueued = enqueue_request(
            request,
            job_id=job_id,
            webhook_url=given.get("webhook_url"),
            metadata=given.get("metadata"),
            subscription_id=given.get("subscription_id"),
            retry_failed=bool(given.get("retry_failed", False)),
            producer=producer(),
        )
    except VidgoStemsError as exc:
        log.error("enqueue by name refused for job %s: %s", job_id or "-", exc.message)
        raise InvalidTaskInput(exc.message) from None
    return enqueued.job_id


@app.task(base=StageTask, name=TaskName.ENQUEUE.value, bind=True)
def enqueue(self: StageTask, job_id: str | None = None, **kwargs: Any) -> str:
    """Create a job from a request sent by name and return its id (stored as the result)."""
    return enqueue_by_name(job_id, kwargs)


@app.task(base=StageTask, name=TaskName.POLL.value, bind=True, ignore_result=True)
def poll(self: StageTask, job_id: str, token: str, **_unknown: Any) -> str:
    """Ask Vidgo about the job's task; re-queue with a countdown until it is finished."""
    return run_poll(self.context(), job_id, token).value


@app.task(base=StageTask, name=TaskName.DOWNLOAD.value, bind=True, ignore_result=True)
def download(self: StageTask, job_id: str, token: str, **_unknown: Any) -> str:
    """Download, verify and store the job's stems; then tell the subscribers that asked for
    ``job.stems_stored`` (the stems are linkable while post-processing goes on)."""
    outcome = run_download(self.context(), job_id, token)
    if outcome is Outcome.HANDED_OFF:
        announce_stems_stored(runtime().ledger, dispatch_webhook, job_id)
    return outcome.value


@app.task(base=StageTask, name=TaskName.POSTPROCESS.value, bind=True, ignore_result=True)
def postprocess(self: StageTask, job_id: str, token: str, **_unknown: Any) -> str:
    """Fan the job's post-processing out per stem, or join it when every stem is done: write
    manifest.json, finish the job and store the manifest as the result under the job id."""
    manifest = run_postprocess(self.context(), job_id, token)
    if manifest is None:
        return "fanned_out"
    record_done(job_id, manifest)
    announce(runtime().ledger, dispatch_webhook, job_id)
    return "done"


@app.task(base=StageTask, name=TaskName.POSTPROCESS_STEM.value, bind=True, ignore_result=True)
def postprocess_stem(self: StageTask, job_id: str, token: str, part: str, **_unknown: Any) -> str:
    """Post-process one stem of the job (or analyse its source), on any worker; the last part
    done sends the join."""
    return run_part(self.context(), job_id, token, part).value


@app.task(name=TaskName.WEBHOOK.value, acks_late=True, ignore_result=True)
def webhook(job_id: str, **_unknown: Any) -> str:
    """Deliver the job's completion webhook if due; failed attempts are re-scheduled inside."""
    return str(runtime().webhooks.deliver(job_id))


@app.task(name=TaskName.PURGE.value, acks_late=True, ignore_result=True)
def purge_expired(job_id: str | None = None, part: str | None = None, **_unknown: Any) -> int:
    """Remove jobs ended more than ``VIDGO_STEMS_PURGE_AFTER_S`` ago, files and entries; or,
    for one job (``part="original"``), the stems as Vidgo served them once the job is DONE
    and no link to them can be valid any more."""
    rt = runtime()
    if job_id is not None:
        return remove_originals(rt.ledger, rt.storage, job_id) if part == ORIGINALS else 0
    if not rt.settings.purge_after_s:
        return 0
    purged = purge(
        rt.ledger,
        rt.storage,
        older_than_s=rt.settings.purge_after_s,
        now=time.time(),
        limit=1000,
        forget_result=lambda job_id: AsyncResult(job_id, app=app).forget(),
    )
    return len(purged)
