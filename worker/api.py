"""The face of vidgo-stems for web backends: enqueue a track, read a job.

``enqueue`` validates the request, creates the job in the ledger (or finds the existing one:
the job id is the request's fingerprint) and sends ``vidgo.submit``. It needs only Redis, never
the Vidgo key, and returns at once. ``get_job`` reads the ledger into a :class:`JobView`.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel

from worker.app import dispatch, runtime
from worker.ledger import JobRecord, JobState, Ledger, new_token
from worker.models import parse_request, validate_job_id
from worker.stages.context import Step, TaskName

log = logging.getLogger(__name__)

STAGE_OF_STATE = {
    JobState.QUEUED: "submit",
    JobState.SUBMITTING: "submit",
    JobState.SUBMITTED: "poll",
    JobState.RUNNING: "poll",
    JobState.DOWNLOADING: "download",
    JobState.POSTPROCESSING: "postprocess",
    JobState.DONE: "done",
    JobState.FAILED: "failed",
}


class JobError(BaseModel):
    code: str
    message: str


class JobView(BaseModel):
    """What a caller may know about a job. Contains no secrets and no stem URLs."""

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
    stems: dict[str, Any]
    manifest_path: str | None
    manifest: dict[str, Any] | None
    error: JobError | None
    created_at: float
    updated_at: float
    history: list[dict[str, Any]]

    @classmethod
    def from_record(cls, job: JobRecord, history: list[dict[str, Any]]) -> JobView:
        return cls(
            job_id=job.job_id,
            state=job.state,
            stage=STAGE_OF_STATE[job.state],
            request=job.request.model_dump(mode="json"),
            vidgo_task_id=job.vidgo_task_id,
            vidgo_task_ids=list(job.vidgo_task_ids),
            vidgo_status=job.vidgo_status,
            vidgo_progress=job.vidgo_progress,
            submit_attempts=job.submit_attempts,
            polls=job.polls,
            stems=job.stems,
            manifest_path=job.manifest_path,
            manifest=job.manifest,
            error=JobError(code=job.error_code, message=job.error_message or "")
            if job.error_code
            else None,
            created_at=job.created_at,
            updated_at=job.updated_at,
            history=history,
        )


def enqueue(
    audio_url: str,
    *,
    title: str | None = None,
    model_name: str = "base",
    output_type: str = "general",
    job_id: str | None = None,
    ledger: Ledger | None = None,
) -> str:
    """Validate and enqueue one track; return its job id at once.

    The same request (audio URL, model name, output type) always gives the same job and at most
    one Vidgo submission. Raises InvalidRequest, naming the allowed values, for bad input.
    """
    request = parse_request(
        {
            "audio_url": audio_url,
            "title": title,
            "model_name": model_name,
            "output_type": output_type,
        }
    )
    job_id = validate_job_id(job_id) if job_id is not None else request.fingerprint()
    ledger = ledger or runtime().ledger
    token = new_token()
    job, created = ledger.create(job_id, request, token=token)
    if created:
        dispatch(Step(TaskName.SUBMIT, job_id, token))
        log.info("job %s enqueued (%s, %s)", job_id, request.model_name, request.output_type)
    else:
        log.info("job %s already exists (%s); not enqueued again", job_id, job.state.value)
    return job_id


def get_job(job_id: str, *, ledger: Ledger | None = None) -> JobView | None:
    """The current view of a job, or None when the ledger does not know it."""
    ledger = ledger or runtime().ledger
    job = ledger.get(validate_job_id(job_id))
    return JobView.from_record(job, ledger.history(job_id)) if job else None
