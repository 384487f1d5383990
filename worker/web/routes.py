"""The jobs API of the gateway: enqueue, list, read, retry and cancel, behind bearer keys.

Bodies are parsed by the handlers themselves, after the key was checked and with a parser no
body can crash; every refusal is ``{"error": {"code", "message"}}``. Each enqueue answers with
the caller's own ``subscription_id``: reading the job with it shows that caller's metadata and
webhook, and cancelling with it removes only that caller.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from vidgo_stems import jsonsafe
from vidgo_stems import producer as api
from vidgo_stems.celery_app import Producer
from vidgo_stems.errors import InvalidRequest, shown
from vidgo_stems.jsonsafe import JsonRefused
from vidgo_stems.models import (
    ENDED_EVENTS,
    JOB_ID_PATTERN,
    MAX_METADATA_BYTES,
    TRACK_FIELDS,
    WEBHOOK_EVENTS,
    DeliveryFormat,
    ModelName,
    OutputType,
    parse_request,
)
from vidgo_stems.pipeline.states import JobState
from vidgo_stems.settings import Settings
from vidgo_stems.web.replies import ErrorResponse, describe_errors

ID_PATTERN = JOB_ID_PATTERN.pattern
JobId = Annotated[str, Path(pattern=ID_PATTERN, description="the job id")]
SubscriptionId = Annotated[
    str | None,
    Query(pattern=ID_PATTERN, description="your subscription id, from the enqueue answer"),
]


class JobCreate(BaseModel):
    """A track to separate. Only ``audio_url`` is required."""

    model_config = ConfigDict(extra="forbid")

    audio_url: str = Field(
        max_length=4096,
        description="http(s) URL of the audio file",
        json_schema_extra={"format": "uri", "examples": ["https://cdn.example.com/song.mp3"]},
    )
    title: str | None = Field(default=None, max_length=200)
    model_name: ModelName = ModelName("base")
    output_type: OutputType = OutputType("general")
    format: DeliveryFormat | None = Field(
        default=None, description="deliver the stems as this format (default: as configured)"
    )
    sample_rate: int | None = Field(default=None, ge=8000, le=192_000)
    normalize_lufs: float | None = Field(
        default=None, ge=-40, le=-5, description="normalise each stem to this loudness (LUFS)"
    )
    job_id: str | None = Field(
        default=None,
        pattern=ID_PATTERN,
        description="your own id for the job; default: a fingerprint of the request",
    )
    webhook_url: str | None = Field(
        default=None,
        max_length=2048,
        description="receives a signed event when the job ends",
        json_schema_extra={"format": "uri"},
    )
    webhook_events: list[str] | None = Field(
        default=None,
        max_length=len(WEBHOOK_EVENTS),
        description=(
            "the events your webhook receives, of: " + ", ".join(WEBHOOK_EVENTS) + "; default: "
            "the job's end (" + ", ".join(ENDED_EVENTS) + ")"
        ),
    )
    metadata: dict[str, Any] | None = Field(
        default=None,
        description=f"a JSON object of at most {MAX_METADATA_BYTES} bytes, sent back to you",
    )
    subscription_id: str | None = Field(
        default=None,
        pattern=ID_PATTERN,
        description="your own id for this subscription, so a repeated request is the same one",
    )
    retry_failed: bool = Field(
        default=False, description="retry the job if it ended FAILED or CANCELLED"
    )


class JobAccepted(BaseModel):
    job_id: str
    state: str
    created: bool = Field(description="false when the same request was enqueued before")
    retried: bool = Field(description="true when an ended job was started again")
    subscription_id: str = Field(description="yours: to read the job as you, or to leave it")
    status_url: str


def _inline_refs(schema: Any, defs: dict[str, Any]) -> Any:
    """The schema with its ``#/$defs/...`` references written out in place."""
    if isinstance(schema, dict):
        ref = schema.get("$ref", "")
        if ref.startswith("#/$defs/"):
            return _inline_refs(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inline_refs(v, defs) for k, v in schema.items() if k != "$defs"}
    if isinstance(schema, list):
        return [_inline_refs(item, defs) for item in schema]
    return schema


_JOB_SCHEMA = JobCreate.model_json_schema()
JOB_CREATE_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": _inline_refs(_JOB_SCHEMA, _JOB_SCHEMA.get("$defs", {}))}
    },
}
EXAMPLE_BODY = '{"audio_url": "https://cdn.example.com/song.mp3"}'
REFUSALS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse},
    404: {"model": ErrorResponse},
    409: {"model": ErrorResponse},
    422: {"model": ErrorResponse},
}


def parse_job_body(raw: bytes, settings: Settings) -> JobCreate:
    """The job a request body asks for; InvalidRequest saying what was wrong and what to send."""
    if not raw.strip():
        raise InvalidRequest(f"the body is empty: send a JSON object such as {EXAMPLE_BODY}")
    try:
        data = jsonsafe.loads(raw, settings.json_limits)
    except JsonRefused as exc:
        raise InvalidRequest(
            f"the body is {exc}: send a JSON object such as {EXAMPLE_BODY} "
            "with Content-Type: application/json"
        ) from None
    if not isinstance(data, dict):
        raise InvalidRequest(
            f"the body is a JSON {type(data).__name__}: send a JSON object such as {EXAMPLE_BODY}"
        )
    try:
        return JobCreate.model_validate(data)
    except ValidationError as exc:
        raise InvalidRequest(describe_errors(exc.errors(include_url=False))) from None


def add_job_routes(app: FastAPI, producer: Producer, secured: list[Any]) -> None:
    """The jobs API under ``/v1/jobs``; ``secured`` checks the bearer key first."""
    _add_create(app, producer, secured)
    _add_reads(app, producer, secured)
    _add_changes(app, producer, secured)


def _add_create(app: FastAPI, producer: Producer, secured: list[Any]) -> None:
    @app.post(
        "/v1/jobs",
        status_code=202,
        response_model=JobAccepted,
        dependencies=secured,
        operation_id="createJob",
        tags=["jobs"],
        summary="Enqueue a track (or subscribe to the same track's job); answers at once",
        openapi_extra={"requestBody": JOB_CREATE_BODY},
        responses={
            200: {
                "model": JobAccepted,
                "description": "the same request was enqueued before: you are subscribed to it",
            },
            **REFUSALS,
        },
    )
    async def create_job(request: Request) -> JSONResponse:
        # The body is parsed here, after the key was checked (a dependency), and by a parser no
        # body can crash: unauthenticated callers learn nothing from a malformed body.
        body = parse_job_body(await request.body(), producer.settings)
        track = set(TRACK_FIELDS)
        enqueued = await run_in_threadpool(
            api.enqueue_request,
            parse_request(body.model_dump(mode="json", include=track)),
            job_id=body.job_id,
            webhook_url=body.webhook_url,
            metadata=body.metadata,
            subscription_id=body.subscription_id,
            webhook_events=body.webhook_events,
            retry_failed=body.retry_failed,
            producer=producer,
        )
        status_url = str(request.url_for("read_job", job_id=enqueued.job_id))
        accepted = JobAccepted(
            job_id=enqueued.job_id,
            state=enqueued.state.value,
            created=enqueued.created,
            retried=enqueued.retried,
            subscription_id=enqueued.subscription_id or "",
            status_url=status_url,
        )
        return JSONResponse(
            accepted.model_dump(),
            status_code=202 if enqueued.created or enqueued.retried else 200,
            headers={"Location": status_url},
        )


def _add_reads(app: FastAPI, producer: Producer, secured: list[Any]) -> None:
    @app.get(
        "/v1/jobs",
        response_model=api.JobPage,
        dependencies=secured,
        operation_id="listJobs",
        tags=["jobs"],
        summary="Jobs by state, batch and creation time, oldest first, a page at a time",
        responses=REFUSALS,
    )
    def list_jobs(
        state: Annotated[JobState | None, Query()] = None,
        batch: Annotated[str | None, Query(max_length=64)] = None,
        since: Annotated[
            str | None,
            Query(
                max_length=64,
                description="created from then: Unix seconds, or an ISO 8601 time (UTC unless "
                "it names its offset)",
            ),
        ] = None,
        cursor: Annotated[str | None, Query(max_length=512)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> api.JobPage:
        return api.list_jobs(
            state=state, batch=batch, since=since, cursor=cursor, limit=limit, producer=producer
        )

    @app.get(
        "/v1/jobs/{job_id}",
        response_model=api.JobView,
        dependencies=secured,
        operation_id="getJob",
        tags=["jobs"],
        responses=REFUSALS,
        summary="A job's state, stage, Vidgo progress, stem links, manifest, error and history",
    )
    def read_job(job_id: JobId, subscription_id: SubscriptionId = None) -> api.JobView:
        view = api.get_job(job_id, subscription_id=subscription_id, producer=producer)
        if view is None:
            raise HTTPException(404, f"no job {shown(job_id)}")
        return view


def _add_changes(app: FastAPI, producer: Producer, secured: list[Any]) -> None:
    @app.post(
        "/v1/jobs/{job_id}/retry",
        response_model=api.JobView,
        dependencies=secured,
        operation_id="retryJob",
        tags=["jobs"],
        responses=REFUSALS,
        summary="Start a FAILED or CANCELLED job again from the first step that needs doing",
    )
    def retry_job(job_id: JobId) -> api.JobView:
        if api.get_job(job_id, producer=producer) is None:
            raise HTTPException(404, f"no job {shown(job_id)}")
        return api.retry(job_id, producer=producer)

    @app.delete(
        "/v1/jobs/{job_id}",
        response_model=api.JobView,
        dependencies=secured,
        operation_id="cancelJob",
        tags=["jobs"],
        responses=REFUSALS,
        summary="Leave a job (with your subscription_id), or cancel it on our side",
    )
    def cancel_job(
        job_id: JobId,
        subscription_id: SubscriptionId = None,
        force: Annotated[bool, Query(description="cancel it for every caller")] = False,
    ) -> api.JobView:
        before = api.get_job(job_id, producer=producer)
        if before is None:
            raise HTTPException(404, f"no job {shown(job_id)}")
        if before.state.is_terminal and subscription_id is None:
            raise HTTPException(409, f"job {job_id} already ended {before.state.value}")
        view = api.cancel(job_id, subscription_id=subscription_id, force=force, producer=producer)
        assert view is not None, "a job seen a moment ago has an expiry of days"
        return view
