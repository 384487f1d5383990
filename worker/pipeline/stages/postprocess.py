"""Stage 4: verify and measure each stem, store ``manifest.json``, mark the job DONE.

Any host may run it: a stem is read from this host's scratch space when the download ran here
and the copy still has the recorded checksum, else fetched from the storage layer. A stem that
storage no longer holds (or holds changed) is not a reason to fail: the job goes back to
DOWNLOADING for those stems, which fetches them again from Vidgo while its URLs live.

The manifest is the job's result: it lands in storage beside the stems, in the ledger and (as
this task's return value, under the job id) in the Celery result store.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from worker import __version__
from worker.errors import StemCorrupt, StemMissing
from worker.files.audio import analyse
from worker.files.links import MANIFEST_NAME, job_key
from worker.pipeline.ledger import JobRecord, JobState
from worker.pipeline.stages.context import Outcome, StageContext, hand_off, load_current
from worker.pipeline.states import TaskName, states_of

log = logging.getLogger(__name__)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def build_manifest(
    job: JobRecord, audio: dict[str, dict[str, Any]], done_at: float
) -> dict[str, Any]:
    """The manifest document of a finished job (pure). Files are named by storage key; links
    to them are minted when a caller reads the job, never stored."""
    stems = {name: {**info, "audio": audio[name]} for name, info in sorted(job.stems.items())}
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


def local_copy(ctx: StageContext, job_id: str, info: dict[str, Any]) -> Path | None:
    """A local file with the stem's recorded bytes: scratch if it is intact, else fetched from
    storage into scratch. None when storage has lost the stem or holds it changed."""
    path: Path = ctx.scratch.job_dir(job_id) / str(info["file"])
    if path.is_file() and file_sha256(path) == info["sha256"]:
        return path
    try:
        fetched = ctx.storage.download(info.get("key") or job_key(job_id, info["file"]), path)
    except (StemMissing, StemCorrupt):
        return None
    if fetched.sha256 != info["sha256"] or file_sha256(path) != info["sha256"]:
        path.unlink(missing_ok=True)
        return None
    return path


def run_postprocess(ctx: StageContext, job_id: str, token: str) -> dict[str, Any] | None:
    """Verify, measure, store the manifest and finish ``job_id``. Returns the manifest."""
    job = load_current(ctx, job_id, token, states_of(TaskName.POSTPROCESS), "postprocess")
    if job is None:
        done = ctx.ledger.get(job_id)
        return done.manifest if done is not None and done.state is JobState.DONE else None
    audio: dict[str, dict[str, Any]] = {}
    lost: list[str] = []
    for name, info in sorted(job.stems.items()):
        path = local_copy(ctx, job_id, info)
        if path is None:
            lost.append(name)
            continue
        audio[name] = analyse(path).as_dict()
    if lost:
        _download_again(ctx, job, lost)
        return None
    done_at = ctx.clock()
    manifest = build_manifest(job, audio, done_at)
    body = json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n"
    stored = ctx.storage.put_bytes(
        job_key(job_id, MANIFEST_NAME), body, content_type="application/json"
    )
    if not ctx.ledger.advance(
        job_id,
        expect=JobState.POSTPROCESSING,
        token=token,
        to=JobState.DONE,
        fields={"manifest": manifest, "manifest_key": stored.key, "done_at": done_at},
        event="done",
        detail={"manifest": stored.key, "worker": ctx.worker_name},
    ):
        return None
    ctx.scratch.remove_job(job_id)
    log.info("job %s DONE (vidgo task %s): %s", job_id, job.vidgo_task_id, stored.key)
    return manifest


def _download_again(ctx: StageContext, job: JobRecord, lost: list[str]) -> Outcome:
    """Send the job back to DOWNLOADING for the stems storage no longer holds intact."""
    ctx.ledger.bump_counter("stems_lost")
    log.warning("job %s: stored stem(s) %s missing or changed; downloading again", job.job_id, lost)
    kept = {name: info for name, info in job.stems.items() if name not in lost}
    return hand_off(
        ctx,
        job,
        to=JobState.DOWNLOADING,
        next_task=TaskName.DOWNLOAD,
        event="stems_lost",
        fields={"stems": kept},
        detail={"stems": lost, "worker": ctx.worker_name},
    )
