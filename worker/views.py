"""What callers see of a job: the full view, a list entry, a page of them, and the typed parts
(stem links, the manifest, a subscription, an error). Built from the ledger on every read, so
links are fresh and nothing here is stored."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from vidgo_stems.celery_app import Producer
from vidgo_stems.files.links import link, stem_links
from vidgo_stems.files.storage import Storage
from vidgo_stems.pipeline.outbox import Outbox
from vidgo_stems.pipeline.record import JobRecord
from vidgo_stems.pipeline.states import STATES, JobState


class JobError(BaseModel):
    code: str = Field(description="stable: safe to branch on")
    message: str = Field(description="for people: what happened and what to do")


class StemLink(BaseModel):
    """A stored file a caller can fetch: a fresh link (None when it cannot be made right now)
    and what it must hold."""

    url: str | None
    sha256: str | None
    bytes: int | None
    content_type: str | None


class ManifestStem(BaseModel):
    """One stem in the manifest: as delivered (with a fresh ``url``), measured and checked."""

    model_config = ConfigDict(extra="allow")

    url: str | None = None
    key: str
    sha256: str
    bytes: int
    format: str
    content_type: str
    sample_rate: int
    channels: int
    duration_s: float
    offset_vs_source_s: float | None
    loudness_lufs: float | None
    loudness_range_lu: float | None
    true_peak_dbtp: float | None
    silent: bool
    clipping: bool
    problems: list[str]
    peaks: dict[str, Any]


class Manifest(BaseModel):
    """The result of a job that ended DONE (stored beside the stems as manifest.json, and
    described by ``manifest.schema.json``); served with fresh links."""

    model_config = ConfigDict(extra="allow")

    manifest_version: int
    job_id: str
    state: str
    request: dict[str, Any]
    vidgo_task_id: str | None
    vidgo_task_ids: list[str]
    source: dict[str, Any]
    remix_residual_db: float | None = None
    stems: dict[str, ManifestStem]
    silent_stems: list[str]
    problems: dict[str, list[str]]
    attempts: dict[str, int]
    timings: dict[str, str | float | None]
    producer: str


def hydrate(manifest: dict[str, Any], storage: Storage, ttl_s: int) -> dict[str, Any]:
    """The manifest with fresh links to every stem and waveform (stored manifests hold keys)."""
    stems = {}
    for name, stem in manifest.get("stems", {}).items():
        peaks = dict(stem.get("peaks") or {})
        if peaks:
            peaks["json_url"] = link(storage, peaks.get("json_key"), ttl_s)
            peaks["dat_url"] = link(storage, peaks.get("dat_key"), ttl_s)
        stems[name] = {**stem, "url": link(storage, stem.get("key"), ttl_s), "peaks": peaks}
    return {**manifest, "stems": stems}


class WebhookView(BaseModel):
    url: str
    status: str = Field(description="the end's: pending, retrying, delivered or failed")
    attempts: list[dict[str, Any]]
    events: list[str] = Field(default_factory=list, description="the events it receives")


class SubscriptionView(BaseModel):
    """One caller of the job: its id (to cancel or read as that caller), metadata, webhook."""

    subscription_id: str
    metadata: dict[str, Any]
    webhook: WebhookView | None


class JobView(BaseModel):
    """What a caller may know about a job. Contains no secrets; its links are minted on each
    read and live ``VIDGO_STEMS_URL_TTL_S`` seconds, so an old link is renewed by reading the
    job again. ``subscription`` is the asking caller's own, when it says who it is."""

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
    retries: int = Field(description="times a caller retried the job after it ended")
    stems: dict[str, StemLink]
    manifest_url: str | None
    manifest: Manifest | None
    error: JobError | None
    metadata: dict[str, Any]
    webhook: WebhookView | None
    subscribers: int
    subscription: SubscriptionView | None = None
    created_at: float
    updated_at: float
    history: list[dict[str, Any]]

    @classmethod
    def build(cls, producer: Producer, job: JobRecord, sub_id: str | None = None) -> JobView:
        outbox = Outbox(producer.ledger)
        subs = outbox.subscriptions(job.job_id)
        asked = subscription_view(outbox, job.job_id, subs[sub_id]) if sub_id in subs else None
        first_hook = next((s for s in subs.values() if s.webhook_url), None)
        own = asked or (subscription_view(outbox, job.job_id, first_hook) if first_hook else None)
        ttl_s = producer.settings.url_ttl_s
        files = job.outputs or job.stems
        stems = stem_links(producer.storage, files, ttl_s) if files else {}
        manifest = hydrate(job.manifest, producer.storage, ttl_s) if job.manifest else None
        return cls(
            **summary_fields(job),
            vidgo_task_id=job.vidgo_task_id,
            vidgo_task_ids=list(job.vidgo_task_ids),
            vidgo_status=job.vidgo_status,
            vidgo_progress=job.vidgo_progress,
            submit_attempts=job.submit_attempts,
            polls=job.polls,
            retries=job.retry_count,
            stems={name: StemLink(**info) for name, info in stems.items()},
            manifest_url=link(producer.storage, job.manifest_key, ttl_s),
            manifest=Manifest.model_validate(manifest) if manifest else None,
            metadata=asked.metadata if asked else job.metadata,
            webhook=own.webhook if own else None,
            subscribers=len(subs),
            subscription=asked,
            history=producer.ledger.history(job.job_id),
        )


class JobSummary(BaseModel):
    """A job in a list: enough to choose which to read in full."""

    job_id: str
    state: JobState
    stage: str
    request: dict[str, Any]
    error: JobError | None
    created_at: float
    updated_at: float

    @classmethod
    def of(cls, job: JobRecord) -> JobSummary:
        return cls(**summary_fields(job))


class JobPage(BaseModel):
    jobs: list[JobSummary]
    next_cursor: str | None = Field(description="pass it back for the next page; null: no more")


def summary_fields(job: JobRecord) -> dict[str, Any]:
    error = (
        JobError(code=job.error_code, message=job.error_message or "") if job.error_code else None
    )
    return {
        "job_id": job.job_id,
        "state": job.state,
        "stage": STATES[job.state].stage,
        "request": job.request.model_dump(mode="json"),
        "error": error,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
    }


def subscription_view(outbox: Outbox, job_id: str, sub: Any) -> SubscriptionView:
    webhook = None
    if sub.webhook_url:
        attempts = outbox.deliveries(job_id, sub.sub_id)
        status = outbox.status(job_id, sub.sub_id) or ("retrying" if attempts else "pending")
        webhook = WebhookView(
            url=sub.webhook_url, status=status, attempts=attempts, events=list(sub.events)
        )
    return SubscriptionView(subscription_id=sub.sub_id, metadata=sub.metadata, webhook=webhook)
