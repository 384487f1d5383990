"""Stage 4: verify and measure each stem, write ``manifest.json``, mark the job DONE.

The manifest is the job's result: it lands beside the stems, in the ledger and (as this task's
return value, under the job id) in the Celery result store.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

from worker import __version__
from worker.errors import StemCorrupt
from worker.files.audio import analyse
from worker.pipeline.ledger import JobRecord, JobState
from worker.pipeline.stages.context import StageContext, load_current
from worker.pipeline.states import TaskName, states_of

log = logging.getLogger(__name__)
MANIFEST_NAME = "manifest.json"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def build_manifest(
    job: JobRecord, folder: Path, audio: dict[str, dict[str, Any]], done_at: float
) -> dict[str, Any]:
    """The manifest document of a finished job (pure)."""
    stems = {
        name: {**info, "path": str(folder / info["file"]), "audio": audio[name]}
        for name, info in sorted(job.stems.items())
    }
    return {
        "job_id": job.job_id,
        "request": job.request.model_dump(mode="json"),
        "vidgo_task_id": job.vidgo_task_id,
        "vidgo_task_ids": list(job.vidgo_task_ids),
        "stems": stems,
        "silent_stems": sorted(n for n, s in stems.items() if s["audio"]["silent"]),
        "attempts": {"submits": job.submit_attempts, "polls": job.polls},
        "timings": _timings(job, done_at),
        "producer": f"vidgo-stems {__version__}",
    }


def _timings(job: JobRecord, done_at: float) -> dict[str, Any]:
    marks = {
        "queued_at": job.created_at,
        "first_submitted_at": job.first_submitted_at or job.submitted_at,
        "submitted_at": job.submitted_at,
        "finished_at": job.finished_at,
        "downloaded_at": job.downloaded_at,
        "done_at": done_at,
    }
    submitted, finished = job.submitted_at, job.finished_at
    return {
        **marks,
        "total_s": round(done_at - job.created_at, 3),
        "vidgo_s": round(finished - submitted, 3) if submitted and finished else None,
    }


def run_postprocess(ctx: StageContext, job_id: str, token: str) -> dict[str, Any] | None:
    """Verify, measure, write the manifest and finish ``job_id``. Returns the manifest."""
    job = load_current(ctx, job_id, token, states_of(TaskName.POSTPROCESS), "postprocess")
    if job is None:
        done = ctx.ledger.get(job_id)
        return done.manifest if done is not None and done.state is JobState.DONE else None
    folder = ctx.store.job_dir(job_id)
    audio: dict[str, dict[str, Any]] = {}
    for name, info in job.stems.items():
        path = folder / info["file"]
        if not path.is_file() or file_sha256(path) != info["sha256"]:
            raise StemCorrupt(
                f"stem {name} at {path} is missing or changed since download; re-enqueue the job",
                job_id=job_id,
            )
        audio[name] = analyse(path).as_dict()
    done_at = ctx.clock()
    manifest = build_manifest(job, folder, audio, done_at)
    manifest_path = folder / MANIFEST_NAME
    ctx.store.write_json(manifest_path, manifest)
    if not ctx.ledger.advance(
        job_id,
        expect=JobState.POSTPROCESSING,
        token=token,
        to=JobState.DONE,
        fields={"manifest": manifest, "manifest_path": str(manifest_path), "done_at": done_at},
        event="done",
        detail={"manifest": str(manifest_path)},
    ):
        return None
    log.info("job %s DONE (vidgo task %s): %s", job_id, job.vidgo_task_id, manifest_path)
    return manifest
