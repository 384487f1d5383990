"""Stage 4: post-processing, fanned out per stem, and its join.

A job's ``vidgo.postprocess`` message fans out: one ``vidgo.postprocess_stem`` step per part
(each stem, and the source track: :mod:`vidgo_stems.pipeline.stages.stem`) that is not done yet,
all in one Lua step (:mod:`vidgo_stems.pipeline.parts`). The part that finishes the set sends the
same message again under a fresh token, and this time it joins: each stem is checked against
the source (same track, same length) from the small analysis prints the parts stored, a full
split's stems are summed and compared with the source (the remix check, over the first 30 s
the prints hold), the manifest
(``manifest.schema.json``) is stored beside the stems, in the ledger and (under the job id) in
the Celery result store, and the job is DONE. What validation finds is reported per stem with
stable codes; it fails the job only with ``VIDGO_STEMS_FAIL_ON_INVALID_STEMS``.

The stems as Vidgo served them stay linkable until every link handed out for them has
expired (``VIDGO_STEMS_URL_TTL_S`` after DONE; for the job's life with
``VIDGO_STEMS_KEEP_ORIGINALS``): the join schedules their removal, it does not remove them.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from vidgo_stems import __version__
from vidgo_stems.errors import StemInvalid
from vidgo_stems.files.links import MANIFEST_NAME, ORIGINALS, job_key
from vidgo_stems.files.stems import DeliveredStem
from vidgo_stems.models import OutputType
from vidgo_stems.pipeline.parts import SOURCE, Parts
from vidgo_stems.pipeline.record import JobRecord
from vidgo_stems.pipeline.schedule import Schedule
from vidgo_stems.pipeline.stages.context import StageContext, load_current
from vidgo_stems.pipeline.stages.stem import WORK, load_print, parts_of
from vidgo_stems.pipeline.states import JobState, Step, TaskName, states_of
from vidgo_stems.sound.process import Source
from vidgo_stems.sound.validate import compare_prints, remix_residual_db_of_prints

log = logging.getLogger(__name__)
MANIFEST_VERSION = 2


def run_postprocess(ctx: StageContext, job_id: str, token: str) -> dict[str, Any] | None:
    """Fan ``job_id``'s post-processing out, or join it when every part is done. Returns the
    manifest of a DONE job (None while parts are running, or when the message is stale)."""
    job = load_current(ctx, job_id, token, states_of(TaskName.POSTPROCESS), "postprocess")
    if job is None:
        done = ctx.ledger.get(job_id)
        return done.manifest if done is not None and done.state is JobState.DONE else None
    fanned = Parts(ctx.ledger).fan_out(job_id, token, parts_of(job))
    if fanned.sent:
        log.info("job %s: post-processing fanned out: %s", job_id, ", ".join(fanned.sent))
    if not fanned.join:
        return None
    return join(ctx, job)


def join(ctx: StageContext, job: JobRecord) -> dict[str, Any] | None:
    """Check every stem against the source, store the manifest, and finish the job."""
    results = Parts(ctx.ledger).results(job.job_id)
    source = _source_of(ctx, results[SOURCE])
    names = sorted(job.stems)
    stems = {name: _checked(ctx, results[name], source) for name in names}
    outputs = {name: DeliveredStem.from_json(results[name]["output"]) for name in names}
    residual = None
    if job.request.output_type is OutputType.GENERAL and source.fingerprint is not None:
        prints = [load_print(ctx, results[name]["print_key"]) for name in names]
        kept = [p for p in prints if p is not None]
        if len(kept) == len(prints):
            residual = remix_residual_db_of_prints(kept, source.fingerprint)
    problems = {name: entry["problems"] for name, entry in stems.items() if entry["problems"]}
    if ctx.settings.fail_on_invalid_stems and problems:
        listed = "; ".join(f"{name}: {', '.join(codes)}" for name, codes in problems.items())
        raise StemInvalid(
            f"stems failed validation ({listed}); the manifest of an accepted job reports "
            "these instead (VIDGO_STEMS_FAIL_ON_INVALID_STEMS=false)",
            job_id=job.job_id,
        )
    return _finish(ctx, job, build_manifest(job, source, stems, residual, ctx.clock()), outputs)


def _source_of(ctx: StageContext, result: dict[str, Any]) -> Source:
    """The source as its part left it, with its analysis print loaded."""
    given = result["source"]
    facts = {k: v for k, v in given.items() if k not in ("checked", "reason")}
    key = result.get("print_key")
    fingerprint = load_print(ctx, key) if key else None
    if given["checked"] and fingerprint is None:
        return Source(False, "the source's analysis is no longer stored", facts)
    checked, duration_s = bool(given["checked"]), result["duration_s"]
    return Source(checked, given["reason"], facts, None, duration_s, fingerprint)


def _checked(ctx: StageContext, result: dict[str, Any], source: Source) -> dict[str, Any]:
    """A stem's manifest entry, with what comparing it against the source found."""
    entry = dict(result["entry"])
    if not source.checked or source.fingerprint is None:
        return entry
    fingerprint = load_print(ctx, result["print_key"])
    if fingerprint is None:
        return entry
    check = compare_prints(fingerprint, source.fingerprint)
    entry["offset_vs_source_s"] = check.offset_vs_source_s
    entry["duration_delta_s"] = check.duration_delta_s
    entry["match_score"] = check.match_score
    entry["problems"] = [*check.problems, *entry["problems"]]
    return entry


def _finish(
    ctx: StageContext,
    job: JobRecord,
    manifest: dict[str, Any],
    outputs: dict[str, DeliveredStem],
) -> dict[str, Any] | None:
    """Store the manifest and move the job to DONE; then clear its working state and schedule
    the removal of Vidgo's files once no link to them can be valid."""
    job_id = job.job_id
    body = json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n"
    stored = ctx.storage.put_bytes(
        job_key(job_id, MANIFEST_NAME), body, content_type="application/json"
    )
    problems = {n: s["problems"] for n, s in manifest["stems"].items() if s["problems"]}
    if not ctx.ledger.advance(
        job_id,
        expect=JobState.POSTPROCESSING,
        token=job.token,
        to=JobState.DONE,
        fields={
            "manifest": manifest,
            "manifest_key": stored.key,
            "done_at": ctx.clock(),
            "outputs": outputs,
        },
        event="done",
        detail={"manifest": stored.key, "worker": ctx.worker_name, "problems": problems},
    ):
        return None
    Parts(ctx.ledger).reset(job_id)
    ctx.storage.delete_prefix(job_key(job_id, WORK))
    if not ctx.settings.keep_originals:
        schedule_originals_removal(ctx, job_id)
    ctx.scratch.remove_job(job_id)
    log.info("job %s DONE (vidgo task %s): %s", job_id, job.vidgo_task_id, stored.key)
    return manifest


def schedule_originals_removal(ctx: StageContext, job_id: str) -> None:
    """Remove the stems as Vidgo served them once every link to them has expired: links to
    them are minted only until the job is DONE, and live ``url_ttl_s`` seconds."""
    ttl_s = ctx.settings.url_ttl_s
    queue, message = ctx.ledger.encode(Step(TaskName.PURGE, job_id, "", part=ORIGINALS))
    schedule = Schedule(ctx.ledger.redis, ctx.ledger.keys.prefix)
    schedule.add(f"{ctx.ledger.keys.job(job_id)}#{ORIGINALS}", ctx.clock() + ttl_s, queue, message)


def iso(at: float | None) -> str | None:
    """A Unix time as ISO 8601 UTC (``2026-11-25T10:00:00.123Z``)."""
    if at is None:
        return None
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def build_manifest(
    job: JobRecord,
    source: Source,
    stems: dict[str, Any],
    residual_db: float | None,
    done_at: float,
) -> dict[str, Any]:
    """The manifest document of a finished job (pure). Files are named by storage key; links
    to them are added when a caller reads the job, never stored."""
    submitted, finished = job.submitted_at, job.finished_at
    return {
        "manifest_version": MANIFEST_VERSION,
        "job_id": job.job_id,
        "state": JobState.DONE.value,
        "request": job.request.model_dump(mode="json"),
        "metadata": job.metadata,
        "vidgo_task_id": job.vidgo_task_id,
        "vidgo_task_ids": list(job.vidgo_task_ids),
        "source": source.as_dict(),
        "remix_residual_db": residual_db,
        "stems": stems,
        "silent_stems": sorted(n for n, s in stems.items() if s["silent"]),
        "problems": {n: s["problems"] for n, s in stems.items() if s["problems"]},
        "attempts": {
            "submits": job.submit_attempts,
            "polls": job.polls,
            "retries": job.retry_count,
        },
        "timings": {
            "queued_at": iso(job.created_at),
            "first_submitted_at": iso(job.first_submitted_at or submitted),
            "submitted_at": iso(submitted),
            "finished_at": iso(finished),
            "downloaded_at": iso(job.downloaded_at),
            "done_at": iso(done_at),
            "total_s": round(done_at - job.created_at, 3),
            "vidgo_s": round(finished - submitted, 3) if submitted and finished else None,
        },
        "producer": f"vidgo-stems {__version__}",
    }
