"""The face of vidgo-stems for web backends: enqueue a track, read, list, retry, cancel.

``enqueue`` validates the request, finds or creates the job in the ledger (the job id is the
request's fingerprint, so the same track asked for twice is one job and one Vidgo payment) and
subscribes the caller, in one atomic step: every caller of a shared job gets its own
subscription id, its own metadata back and its own signed webhook. It needs only Redis, never
the Vidgo key, and returns at once. ``get_job`` reads the ledger into a :class:`JobView`
(as one subscriber sees it, when asked with its subscription id); ``list_jobs`` pages through
jobs by state, batch and time; ``retry`` starts a FAILED or CANCELLED job again; ``cancel``
removes one caller, and ends the job on our side once no caller is left.

A backend that cannot import this package enqueues by task name (``vidgo.enqueue``) or over
the gateway's HTTP API (see the README).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from vidgo_stems.celery_app import Producer, producer
from vidgo_stems.errors import InvalidRequest, JobConflict, shown
from vidgo_stems.models import (
    ENDED_EVENTS,
    JobRequest,
    parse_request,
    validate_job_id,
    validate_metadata,
    validate_webhook_events,
)
from vidgo_stems.pipeline.listing import list_jobs as list_ledger_jobs
from vidgo_stems.pipeline.outbox import Outbox, announce, deliveries
from vidgo_stems.pipeline.record import OTHER_REQUEST, Subscription
from vidgo_stems.pipeline.retry import RETRYABLE, RetryPlan, plan_retry, retry_job
from vidgo_stems.pipeline.states import ACTIVE_STATES, JobState, Step, TaskName, new_token
from vidgo_stems.urlsafety import check_source_url, check_webhook_url, source_policy, webhook_policy
from vidgo_stems.views import JobError, JobPage, JobSummary, JobView, StemLink, WebhookView

__all__ = [
    "Enqueued",
    "JobError",
    "JobPage",
    "JobView",
    "StemLink",
    "WebhookView",
    "cancel",
    "deliveries",
    "enqueue",
    "enqueue_request",
    "get_job",
    "list_jobs",
    "retry",
]

log = logging.getLogger(__name__)

#: The process's default collaborators, for callers that pass none.
default_producer = producer


class Enqueued(NamedTuple):
    job_id: str
    created: bool
    state: JobState
    subscription_id: str | None = None
    retried: bool = False


def enqueue(
    audio_url: str,
    *,
    title: str | None = None,
    model_name: str = "base",
    output_type: str = "general",
    job_id: str | None = None,
    webhook_url: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    subscription_id: str | None = None,
    webhook_events: Sequence[str] | None = None,
    retry_failed: bool = False,
    format: str | None = None,
    sample_rate: int | None = None,
    normalize_lufs: float | None = None,
    producer: Producer | None = None,
) -> str:
    """Validate and enqueue one track; return its job id at once.

    The same request (audio URL, model name, output type) always gives the same job and at most
    one Vidgo submission; every caller is subscribed to it. ``webhook_url`` (else
    ``VIDGO_STEMS_DEFAULT_WEBHOOK_URL``) receives a signed event when the job ends, carrying this
    caller's ``metadata`` (a small JSON object). ``format``, ``sample_rate`` and
    ``normalize_lufs`` choose how the stems are delivered (unset: the settings).
    ``webhook_events`` chooses the events the webhook receives (default: the job's end,
    ``job.done``, ``job.failed`` or ``job.cancelled``; add ``job.stems_stored`` to hear as soon
    as the stems are stored and linkable, while post-processing goes on).
    ``subscription_id`` makes a repeated call (a network retry) the same subscription. A job
    that FAILED or was CANCELLED raises JobConflict naming how to retry it, unless
    ``retry_failed``, which retries it. Raises InvalidRequest, naming the allowed values, for
    bad input.
    """
    request = parse_request(
        {
            "audio_url": audio_url,
            "title": title,
            "model_name": model_name,
            "output_type": output_type,
            "format": format,
            "sample_rate": sample_rate,
            "normalize_lufs": normalize_lufs,
        }
    )
    return enqueue_request(
        request,
        job_id=job_id,
        webhook_url=webhook_url,
        metadata=metadata,
        subscription_id=subscription_id,
        webhook_events=webhook_events,
        retry_failed=retry_failed,
        producer=producer,
    ).job_id


def enqueue_request(
    request: JobRequest,
    *,
    job_id: str | None = None,
    webhook_url: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    subscription_id: str | None = None,
    webhook_events: Sequence[str] | None = None,
    retry_failed: bool = False,
    producer: Producer | None = None,
) -> Enqueued:
    """Enqueue an already parsed request; also says whether the job is new, the caller's
    subscription id, and whether an ended job was retried."""
    p = producer or default_producer()
    settings = p.settings
    job_id = validate_job_id(job_id) if job_id is not None else request.fingerprint()
    extra = validate_metadata(metadata) if metadata is not None else None
    check_source_url(request.audio_url, source_policy(settings))
    hook = webhook_url or settings.default_webhook_url
    if hook is not None:
        hook = check_webhook_url(hook, webhook_policy(settings))
        settings.require_webhook_secret()
    events = validate_webhook_events(list(webhook_events)) if webhook_events is not None else None
    sub = Subscription.new(
        sub_id=validate_job_id(subscription_id) if subscription_id else None,
        webhook_url=hook,
        metadata=extra,
        events=events or ENDED_EVENTS,
    )
    token = new_token()
    found = p.ledger.enqueue(
        job_id,
        request,
        token=token,
        subscription=sub,
        max_subscribers=settings.max_subscribers_per_job,
        take_subscribers_when_failed=retry_failed,
        step=Step(TaskName.SUBMIT, job_id, token),
    )
    job = found.job
    if found.subscribed == OTHER_REQUEST:
        raise JobConflict(
            f"job id {job_id} already names another request ({shown(job.request.audio_url, 80)}, "
            f"{job.request.model_name}, {job.request.output_type}): choose another job_id, or "
            "leave it out to use the request's own fingerprint"
        )
    if found.subscribed < 0:
        raise JobConflict(
            f"job {job_id} already has {settings.max_subscribers_per_job} subscribers "
            "(VIDGO_STEMS_MAX_SUBSCRIBERS_PER_JOB): read it with GET /v1/jobs/{id} instead"
        )
    if found.created:  # its submit message went with it
        log.info("job %s enqueued (%s, %s)", job_id, request.model_name, request.output_type)
        return Enqueued(job_id, True, job.state, sub.sub_id)
    if job.state in RETRYABLE:
        if not retry_failed:
            raise JobConflict(ended_message(job_id, job.state, job.error_code, job.error_message))
        plan = retry_job(
            p.ledger, p.storage, job_id, now=time.time(), forget_result=p.forget_result, found=job
        )
        return Enqueued(job_id, False, plan.to, sub.sub_id, retried=True)
    log.info("job %s already exists (%s); caller subscribed", job_id, job.state.value)
    if job.state.is_terminal:
        announce(p.ledger, p.dispatch_webhook, job_id)  # a new subscriber of a DONE job
    return Enqueued(job_id, False, job.state, sub.sub_id)


def ended_message(job_id: str, state: JobState, code: str | None, message: str | None) -> str:
    return (
        f"job {job_id} {state.value} [{code}]: {message or ''}; retry it with "
        f"POST /v1/jobs/{job_id}/retry, `vidgo-stems retry {job_id}`, or enqueue again with "
        "retry_failed=true"
    )


def get_job(
    job_id: str, *, subscription_id: str | None = None, producer: Producer | None = None
) -> JobView | None:
    """The current view of a job (as the given subscriber sees it), or None when unknown."""
    p = producer or default_producer()
    job = p.ledger.get(validate_job_id(job_id))
    return JobView.build(p, job, subscription_id) if job else None


def list_jobs(
    *,
    state: JobState | str | None = None,
    batch: str | None = None,
    since: float | str | None = None,
    cursor: str | None = None,
    limit: int = 100,
    producer: Producer | None = None,
) -> JobPage:
    """Jobs by state, batch and creation time, oldest first, a page at a time. ``since`` is
    Unix seconds or an ISO 8601 time; a page's ``next_cursor`` asks for the next one."""
    p = producer or default_producer()
    try:
        wanted = JobState(state.upper()) if isinstance(state, str) else state
    except ValueError:
        allowed = ", ".join(s.value for s in JobState)
        raise InvalidRequest(f"state must be one of {allowed}") from None
    page = list_ledger_jobs(
        p.ledger, state=wanted, batch=batch, since=since, cursor=cursor, limit=limit
    )
    return JobPage(jobs=[JobSummary.of(job) for job in page.jobs], next_cursor=page.next_cursor)


def retry(job_id: str, *, producer: Producer | None = None) -> JobView:
    """Start a FAILED or CANCELLED job again from the first step that still needs doing."""
    p = producer or default_producer()
    retry_job(p.ledger, p.storage, job_id, now=time.time(), forget_result=p.forget_result)
    view = get_job(job_id, producer=p)
    assert view is not None, "a job just retried is in the ledger"
    return view


def retry_candidates(
    *,
    codes: set[str] | None = None,
    batch: str | None = None,
    producer: Producer | None = None,
) -> list[RetryPlan]:
    """The FAILED and CANCELLED jobs (of a batch, with one of ``codes``) and how each would
    start again: what a bulk retry would do and what it may cost, without doing it."""
    p = producer or default_producer()
    plans = []
    now = time.time()
    for state in RETRYABLE:
        cursor = None
        while True:
            page = list_ledger_jobs(p.ledger, state=state, batch=batch, cursor=cursor, limit=500)
            for job in page.jobs:
                if codes is None or job.error_code in codes:
                    plans.append(plan_retry(job, p.storage, now=now))
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    return plans


def cancel(
    job_id: str,
    *,
    subscription_id: str | None = None,
    force: bool = False,
    producer: Producer | None = None,
) -> JobView | None:
    """Stop waiting for a job. With ``subscription_id``, that caller leaves; the job itself is
    cancelled once no caller is left, or at once with ``force``. Without one, the job is
    cancelled when it has at most one caller (else JobConflict says who else waits).

    Vidgo has no cancel: a task already submitted runs to its end at Vidgo and is billed. We
    stop polling it and download nothing more; stems already stored stay. A job that has
    already ended is left as it is. Returns the job's view (None when unknown).
    """
    p = producer or default_producer()
    job = p.ledger.get(validate_job_id(job_id))
    if job is None:
        return None
    outbox = Outbox(p.ledger)
    if subscription_id is not None:
        if outbox.unsubscribe(job_id, subscription_id) is None:
            raise InvalidRequest(f"job {job_id} has no subscription {subscription_id}")
    elif not force and len(outbox.subscriptions(job_id)) > 1:
        raise JobConflict(
            f"job {job_id} has {len(outbox.subscriptions(job_id))} callers waiting: pass your "
            "subscription_id to leave it, or force to cancel it for everyone"
        )
    if not job.state.is_terminal:
        # A caller that left cancels the job only if nobody else waits for it (checked in the
        # same step as the move, so a caller subscribing meanwhile keeps the job alive).
        only_if_alone = subscription_id is not None and not force
        _cancel_job(p, job_id, job.state, job.vidgo_task_ids, only_if_alone=only_if_alone)
    return get_job(job_id, producer=p)


def _cancel_job(
    p: Producer,
    job_id: str,
    state: JobState,
    task_ids: tuple[str, ...],
    *,
    only_if_alone: bool,
) -> None:
    billed = ", ".join(task_ids) or "none"
    message = (
        f"cancelled in {state.value}; Vidgo has no cancel, so tasks already submitted "
        f"(billed: {billed}) finish there, but nothing more is polled or downloaded"
    )
    cancelled = p.ledger.advance(
        job_id,
        expect=ACTIVE_STATES,
        token=None,
        to=JobState.CANCELLED,
        new_token=new_token(),  # every message in flight for the job is now stale
        fields={"error_code": "cancelled", "error_message": message},
        event="cancelled",
        detail={"vidgo_task_ids": list(task_ids)},
        unless_subscribed=only_if_alone,
    )
    if cancelled:
        log.info("job %s cancelled in %s", job_id, state.value)
        p.record_end(job_id, "cancelled", message, cancelled=True)
        announce(p.ledger, p.dispatch_webhook, job_id)
