"""Stage 4: check, measure and deliver each stem, store the manifest, mark the job DONE.

Any host may run it: a stem is read from this host's scratch space when the download ran here
and the copy still has the recorded checksum, else fetched from the storage layer. A stem that
storage no longer holds (or holds changed) is not a reason to fail: the job goes back to
DOWNLOADING for those stems, which fetches them again from Vidgo while its URLs live.

Then the source track is fetched once (streamed, size-capped, to a public host only) and every
stem is checked against it (same track, same length, and for a full split the same sum),
measured (loudness, loudness range, true peak, silence, clipping, DC), converted and tagged as
the request asks, named by the naming template, and drawn as waveform peaks. What it finds is
reported per stem with stable codes; it fails the job only with
``VIDGO_STEMS_FAIL_ON_INVALID_STEMS``.

The manifest (``manifest.schema.json``) is the job's result: it lands in storage beside the
stems, in the ledger and (as this task's return value, under the job id) in the Celery result
store. The stems as Vidgo served them are removed once the job is DONE.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from worker import __version__
from worker.errors import (
    StemCorrupt,
    StemDownloadError,
    StemInvalid,
    StemMissing,
    StemUndecodable,
    StemUrlExpired,
    StorageError,
)
from worker.files.fetch import fetch_to_file
from worker.files.links import MANIFEST_NAME, ORIGINALS, PEAKS, job_key
from worker.files.stems import DeliveredStem, StoredStem
from worker.models import OutputType
from worker.pipeline.record import JobRecord
from worker.pipeline.stages.context import Outcome, StageContext, hand_off, load_current
from worker.pipeline.states import JobState, TaskName, states_of
from worker.settings import Settings
from worker.sound.deliver import Delivery
from worker.sound.process import Source, file_sha256, process_stem, read_source
from worker.sound.validate import remix_residual_db
from worker.urlsafety import BlockedAddress, resolve_public

log = logging.getLogger(__name__)
MANIFEST_VERSION = 2


def local_copy(ctx: StageContext, job_id: str, stem: StoredStem) -> Path | None:
    """A local file with the stem's recorded bytes: scratch if it is intact, else fetched from
    storage into scratch. None when storage has lost the stem or holds it changed."""
    path: Path = ctx.scratch.job_dir(job_id) / stem.file
    if path.is_file() and file_sha256(path) == stem.sha256:
        return path
    try:
        fetched = ctx.storage.download(stem.key or job_key(job_id, stem.file), path)
    except (StemMissing, StemCorrupt):
        return None
    if fetched.sha256 != stem.sha256 or file_sha256(path) != stem.sha256:
        path.unlink(missing_ok=True)
        return None
    return path


def delivery_for(job: JobRecord, settings: Settings) -> Delivery:
    request = job.request
    return Delivery(
        format=(request.format or settings.delivery_format).value,
        sample_rate=request.sample_rate or settings.delivery_sample_rate,
        mp3_bitrate_kbps=settings.mp3_bitrate_kbps,
        normalize_lufs=request.normalize_lufs
        if request.normalize_lufs is not None
        else settings.normalize_lufs,
        true_peak_ceiling_dbtp=settings.true_peak_ceiling_dbtp,
        name_template=settings.name_template,
    )


def fetch_source(ctx: StageContext, job: JobRecord) -> Source:
    """The source track, fetched once through the same guarded client as stems; unchecked
    (with the reason) when validation is off or the source cannot be had."""
    settings = ctx.settings
    if not settings.validate_source:
        return Source(False, "source validation is off (VIDGO_STEMS_VALIDATE_SOURCE=false)")
    url = job.request.audio_url
    parts = urlsplit(url)
    if not settings.allow_private_source_hosts:
        try:
            resolve_public(
                parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
            )
        except BlockedAddress as exc:
            return Source(
                False, f"the source's host {exc} (VIDGO_STEMS_ALLOW_PRIVATE_SOURCE_HOSTS)"
            )
    dest = ctx.scratch.job_dir(job.job_id) / ("source" + (Path(parts.path).suffix or ".audio"))
    try:
        fetched = fetch_to_file(ctx.http, url, dest, max_bytes=settings.max_source_bytes)
        return read_source(dest, fetched.bytes, fetched.sha256)
    except (StemDownloadError, StemUrlExpired, StorageError, StemUndecodable) as exc:
        return Source(False, f"the source could not be checked: {exc.message}")


def run_postprocess(ctx: StageContext, job_id: str, token: str) -> dict[str, Any] | None:
    """Check, measure, deliver, store the manifest and finish ``job_id``. Returns the manifest."""
    job = load_current(ctx, job_id, token, states_of(TaskName.POSTPROCESS), "postprocess")
    if job is None:
        done = ctx.ledger.get(job_id)
        return done.manifest if done is not None and done.state is JobState.DONE else None
    originals: dict[str, Path] = {}
    for name, info in sorted(job.stems.items()):
        path = local_copy(ctx, job_id, info)
        if path is not None:
            originals[name] = path
    lost = sorted(set(job.stems) - set(originals))
    if lost:
        _download_again(ctx, job, lost)
        return None
    source = fetch_source(ctx, job)
    stems, outputs, mixes = _deliver_all(ctx, job, originals, source)
    residual = None
    if job.request.output_type is OutputType.GENERAL and source.analysis is not None:
        residual = remix_residual_db(mixes, source.analysis)
    problems = {name: entry["problems"] for name, entry in stems.items() if entry["problems"]}
    if ctx.settings.fail_on_invalid_stems and problems:
        listed = "; ".join(f"{name}: {', '.join(codes)}" for name, codes in problems.items())
        raise StemInvalid(
            f"stems failed validation ({listed}); the manifest of an accepted job reports "
            "these instead (VIDGO_STEMS_FAIL_ON_INVALID_STEMS=false)",
            job_id=job_id,
        )
    done_at = ctx.clock()
    manifest = build_manifest(job, source, stems, residual, done_at)
    body = json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n"
    stored = ctx.storage.put_bytes(
        job_key(job_id, MANIFEST_NAME), body, content_type="application/json"
    )
    if not ctx.ledger.advance(
        job_id,
        expect=JobState.POSTPROCESSING,
        token=token,
        to=JobState.DONE,
        fields={
            "manifest": manifest,
            "manifest_key": stored.key,
            "done_at": done_at,
            "outputs": outputs,
        },
        event="done",
        detail={"manifest": stored.key, "worker": ctx.worker_name, "problems": problems},
    ):
        return None
    ctx.storage.delete_prefix(job_key(job_id, ORIGINALS))  # delivered now; retries need none
    ctx.scratch.remove_job(job_id)
    log.info("job %s DONE (vidgo task %s): %s", job_id, job.vidgo_task_id, stored.key)
    return manifest


def _deliver_all(
    ctx: StageContext, job: JobRecord, originals: dict[str, Path], source: Source
) -> tuple[dict[str, Any], dict[str, DeliveredStem], list[Any]]:
    """(manifest entries, stored outputs, remix inputs) of every stem, stored as it goes."""
    delivery = delivery_for(job, ctx.settings)
    stems: dict[str, Any] = {}
    outputs: dict[str, DeliveredStem] = {}
    mixes = []
    for name, path in originals.items():
        stems[name], outputs[name], analysis = deliver_stem(ctx, job, name, path, source, delivery)
        mixes.append(analysis)
    return stems, outputs, mixes


def deliver_stem(
    ctx: StageContext,
    job: JobRecord,
    name: str,
    path: Path,
    source: Source,
    delivery: Delivery,
) -> tuple[dict[str, Any], DeliveredStem, Any]:
    """Process one stem and store what comes out: (its manifest entry, its delivered file,
    its analysis signal for the remix check)."""
    title = job.request.title
    tags = {
        "title": f"{title} ({name})" if title else name,
        "stem": name,
        "source_title": title or "",
        "job_id": job.job_id,
    }
    done = process_stem(
        name,
        path,
        source=source,
        delivery=delivery,
        work=ctx.scratch.job_dir(job.job_id) / "delivered",
        tags=tags,
        job_id=job.job_id,
        title=title,
        pixels_per_second=ctx.settings.peaks_pixels_per_second,
    )
    stored = ctx.storage.put_file(
        job_key(job.job_id, done.delivered.name),
        done.delivered,
        sha256=file_sha256(done.delivered),
        content_type=done.content_type,
    )
    peaks = {
        ext: ctx.storage.put_bytes(
            job_key(job.job_id, f"{PEAKS}/{name}.{ext}"), body, content_type=content_type
        ).key
        for ext, body, content_type in (
            ("json", done.peaks_json, "application/json"),
            ("dat", done.peaks_dat, "application/octet-stream"),
        )
    }
    original = job.stems[name]
    output = DeliveredStem(
        key=stored.key,
        sha256=stored.sha256,
        bytes=stored.bytes,
        content_type=stored.content_type,
        peaks_json_key=peaks["json"],
        peaks_dat_key=peaks["dat"],
    )
    entry = {
        **done.entry,
        "key": stored.key,
        "sha256": stored.sha256,
        "bytes": stored.bytes,
        "content_type": stored.content_type,
        "peaks": {**done.entry["peaks"], "json_key": peaks["json"], "dat_key": peaks["dat"]},
        "original": {
            "file": original.file,
            "sha256": original.sha256,
            "bytes": original.bytes,
            "format": original.format,
            "source_host": original.source_host,
        },
    }
    return entry, output, done.analysis


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
