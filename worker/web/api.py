"""The face of vidgo-stems for web backends: enqueue a track, read a job, cancel it.

``enqueue`` validates the request, creates the job in the ledger (or finds the existing one:
the job id is the request's fingerprint) and sends ``vidgo.submit``. It needs only Redis, never
the Vidgo key, and returns at once. ``get_job`` reads the ledger into a :class:`JobView`;
``cancel`` ends a job on our side.

A backend that cannot import this package sends the same message by name, with Celery or any
client of its wire format: first create the job with ``enqueue`` from Python, or, from another
language, use the gateway's ``POST /v1/jobs`` (see the README): ``vidgo.submit`` only acts for
a job the ledger knows, under the token the ledger holds.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, NamedTuple

from pydantic import BaseModel

from worker.celery_app import Producer, producer
from worker.files.links import link, stem_links
from worker.models import JobRequest, parse_request, validate_job_id, validate_metadata
from worker.pipeline.ledger import ACTIVE_STATES, JobRecord, JobState, new_token
from worker.pipeline.outbox import announce, deliveries
from worker.pipeline.states import STATES, Step, TaskName
from worker.web.netsafe import check_webhook_url

log = logging.getLogger(__name__)

#: The process's default collaborators, for callers that pass none.
default_producer = producer


class Enqueued(NamedTuple):
    job_id: str
    created: bool
    state: JobState


class JobError(BaseModel):
    code: str
    message: str


class WebhookView(BaseModel):
    url: str
    status: str  # pending, retrying, delivered, failed
    attempts: list[dict[str, Any]]


class StemLink(BaseModel):
    """A stored file a caller can fetch: a fresh link (None when it cannot be made right now)
    and what it must hold."""

    url: str | None
    sha256: str | None
    bytes: int | None
    content_type: str | None


class JobView(BaseModel):
    """What a caller may know about a job. Contains no secrets; its links are minted on each
    read and live ``VIDGO_STEMS_URL_TTL_S`` seconds, so an old link is renewed by reading the
    job again."""

    job_id: str
    state: JobState
    stage: str
    request: dict[str, Any]
    vidgo_task_id: str | None
    vidgo_task_ids: list[str]
    vidgo_status: str | None
    vidgo_progress: int | None
    submit_attempts: int
    polls: int
    stems: dict[str, StemLink]
    manifest_url: str | None
    manifest: dict[str, Any] | None
    error: JobError | None
    metadata: dict[str, Any]
    webhook: WebhookView | None
    created_at: float
    updated_at: float
    history: list[dict[str, Any]]

    @classmethod
    def build(cls, producer: Producer, job: JobRecord) -> JobView:
        ledger = producer.ledger
        webhook = None
        if job.webhook_url:
            webhook = WebhookView(
                url=job.webhook_url,
                status=job.webhook_status or "pending",
                attempts=deliveries(ledger, job.job_id),
            )
        ttl_s = producer.settings.url_ttl_s
        stems = stem_links(producer.storage, job.stems, ttl_s) if job.stems else {}
        return cls(
            job_id=job.job_id,
            state=job.state,
            stage=STATES[job.state].stage,
            request=job.request.model_dump(mode="json"),
            vidgo_task_id=job.vidgo_task_id,
            vidgo_task_ids=list(job.vidgo_task_ids),
            vidgo_status=job.vidgo_status,
            vidgo_progress=job.vidgo_progress,
            submit_attempts=job.submit_attempts,
            polls=job.polls,
            stems={name: StemLink(**info) for name, info in stems.items()},
            manifest_url=link(producer.storage, job.manifest_key, ttl_s),
            manifest=job.manifest,
            error=JobError(code=job.error_code, message=job.error_message or "")
            if job.error_code
            else None,
            metadata=job.metadata,
            webhook=webhook,
            created_at=job.created_at,
            updated_at=job.updated_at,
            history=ledger.history(job.job_id),
        )


def enqueue(
    audio_url: str,
    *,
    title: str | None = None,
    model_name: str = "base",
    output_type: str = "general",
    job_id: str | None = None,
    webhook_url: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    producer: Producer | None = None,
) -> str:
    """Validate and enqueue one track; return its job id at once.

    The same request (audio URL, model name, output type) always gives the same job and at most
    one Vidgo submission. ``webhook_url`` (else ``VIDGO_STEMS_DEFAULT_WEBHOOK_URL``) receives a
    signed event when the job ends; ``metadata`` (a small JSON object) rides along in the job
    view, the webhook and the manifest. Raises InvalidRequest, naming the allowed values, for
    bad input.
    """
    request = parse_request(
        {
            "audio_url": audio_url,
            "title": title,
            "model_name": model_name,
            "output_type": output_type,
        }
    )
    return enqueue_request(
        request,
        job_id=job_id,
        webhook_url=webhook_url,
        metadata=metadata,
        producer=producer,
    ).job_id


def enqueue_request(
    request: JobRequest,
    *,
    job_id: str | None = None,
    webhook_url: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    producer: Producer | None = None,
) -> Enqueued:
    """Enqueue an already parsed request; also says whether the job is new or was there."""
    p = producer or default_producer()
    settings = p.settings
    job_id = validate_job_id(job_id) if job_id is not None else request.fingerprint()
    extra = validate_metadata(metadata) if metadata is not None else None
    hook = webhook_url or settings.default_webhook_url
    if hook is not None:
        hook = check_webhook_url(hook, allow_private=settings.allow_private_webhook_hosts)
        settings.require_webhook_secret()
    token = new_token()
    job, created = p.ledger.create(job_id, request, token=token, webhook_url=hook, metadata=extra)
    if created:
        p.dispatch(Step(TaskName.SUBMIT, job_id, token))
        log.info("job %s enqueued (%s, %s)", job_id, request.model_name, request.output_type)
    else:
        log.info("job %s already exists (%s); not enqueued again", job_id, job.state.value)
    return Enqueued(job_id, created, job.state)


def get_job(job_id: str, *, producer: Producer | None = None) -> JobView | None:
    """The current view of a job, or None when the ledger does not know it."""
    p = producer or default_producer()
    job = p.ledger.get(validate_job_id(job_id))
    return JobView.build(p, job) if job else None


def cancel(job_id: str, *, producer: Producer | None = None) -> JobView | None:
    """Stop working on a job: it ends CANCELLED and no step of ours runs for it again.

    Vidgo has no cancel: a task already submitted runs to its end at Vidgo and is billed. We
    stop polling it and download nothing more; stems already on disk stay where they are. A
    job that has already ended is left as it is. Returns the job's view (None when unknown);
    ``state`` says whether the cancel took.
    """
    p = producer or default_producer()
    ledger = p.ledger
    job = ledger.get(validate_job_id(job_id))
    if job is None:
        return None
    if not job.state.is_terminal:
        billed = ", ".join(job.vidgo_task_ids) or "none"
        cancelled = ledger.advance(
            job_id,
            expect=ACTIVE_STATES,
            token=None,
            to=JobState.CANCELLED,
            new_token=new_token(),  # every message in flight for the job is now stale
            fields={
                "error_code": "cancelled",
                "error_message": (
                    f"cancelled in {job.state.value}; Vidgo has no cancel, so tasks already "
                    f"submitted (billed: {billed}) finish there, but nothing more is polled "
                    "or downloaded"
                ),
            },
            event="cancelled",
            detail={"vidgo_task_ids": list(job.vidgo_task_ids)},
        )
        if cancelled:
            log.info("job %s cancelled in %s", job_id, job.state.value)
            announce(ledger, p.dispatch_webhook, job_id)
    return get_job(job_id, producer=p)
