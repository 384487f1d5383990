"""Stage 4a: one part of a job's post-processing, on any host, in parallel with the others.

A stem part reads its stored stem (this host's scratch copy when it is intact, else storage),
measures, converts, tags and draws it, stores the delivered file and its waveform peaks, and
keeps what the join needs to check it against the source: its analysis print, small and
stored. The source part fetches the source track once per job (streamed, size-capped, from a
public host only), measures it, and stores its print. Each records its result in the ledger
(:mod:`vidgo_stems.pipeline.parts`); the last one sends the join.

A stem that storage no longer holds (or holds changed) is not a reason to fail: the job goes
back to DOWNLOADING for it, which fetches it again from Vidgo while its URLs live.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from vidgo_stems.errors import (
    PermanentError,
    StemCorrupt,
    StemDownloadError,
    StemMissing,
)
from vidgo_stems.files.fetch import fetch_to_file
from vidgo_stems.files.links import PEAKS, job_key
from vidgo_stems.files.stems import DeliveredStem, StoredStem
from vidgo_stems.pipeline.parts import SOURCE, PartOutcome, Parts
from vidgo_stems.pipeline.record import JobRecord
from vidgo_stems.pipeline.stages.context import Outcome, StageContext, hand_off, load_current
from vidgo_stems.pipeline.states import JobState, TaskName
from vidgo_stems.settings import Settings
from vidgo_stems.sound.deliver import Delivery
from vidgo_stems.sound.process import Source, file_sha256, process_stem, read_source
from vidgo_stems.sound.validate import AnalysisPrint
from vidgo_stems.urlsafety import BlockedAddress, connectable, source_policy

log = logging.getLogger(__name__)

#: Where a job's working files between its steps live in storage (removed when it is DONE).
WORK = "work"


def parts_of(job: JobRecord) -> list[str]:
    """The parts of a job's post-processing: the source (sent first: it fetches a whole track
    before its own work), and each stem the job has."""
    return [SOURCE, *sorted(job.stems)]


def run_part(ctx: StageContext, job_id: str, token: str, part: str) -> PartOutcome | Outcome:
    """Do one part of ``job_id``'s post-processing and record it (once)."""
    job = load_current(ctx, job_id, token, (JobState.POSTPROCESSING,), f"postprocess {part}")
    parts = Parts(ctx.ledger)
    if job is None or part not in parts_of(job):
        return Outcome.STALE
    if parts.is_done(job_id, part):
        return PartOutcome.DUPLICATE
    started_at = ctx.clock()
    if part == SOURCE:
        result = _source_part(ctx, job)
    else:
        path = local_copy(ctx, job_id, job.stems[part])
        if path is None:
            return _download_again(ctx, job, [part])
        result = _stem_part(ctx, job, part, path)
    outcome = parts.record(
        job_id,
        token,
        part,
        result,
        count=len(parts_of(job)),
        worker=ctx.worker_name,
        started_at=started_at,
    )
    log.info("job %s: post-processing part %s %s", job_id, part, outcome.value)
    return outcome


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
        tag_originals=settings.tag_originals,
    )


def _stem_part(ctx: StageContext, job: JobRecord, name: str, path: Path) -> dict[str, Any]:
    """Process one stem and store what comes out; its result for the join."""
    title = job.request.title
    tags = {
        "title": f"{title} ({name})" if title else name,
        "stem": name,
        "source_title": title or "",
        "job_id": job.job_id,
    }
    unchecked = Source(False, "checked against the source when every part is done")
    done = process_stem(
        name,
        path,
        source=unchecked,
        delivery=delivery_for(job, ctx.settings),
        work=ctx.scratch.job_dir(job.job_id) / "delivered" / name,
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
    output = DeliveredStem(
        key=stored.key,
        sha256=stored.sha256,
        bytes=stored.bytes,
        content_type=stored.content_type,
        peaks_json_key=peaks["json"],
        peaks_dat_key=peaks["dat"],
    )
    entry = manifest_entry(done.entry, output, job.stems[name])
    return {
        "entry": entry,
        "output": output.to_json(),
        "print_key": store_print(ctx, job.job_id, name, done.fingerprint),
    }


def manifest_entry(
    measured: dict[str, Any], output: DeliveredStem, original: StoredStem
) -> dict[str, Any]:
    """A stem's manifest entry: what measuring it found, where its delivered file and peaks
    are stored, and the stem as Vidgo served it."""
    return {
        **measured,
        "key": output.key,
        "sha256": output.sha256,
        "bytes": output.bytes,
        "content_type": output.content_type,
        "peaks": {
            **measured["peaks"],
            "json_key": output.peaks_json_key,
            "dat_key": output.peaks_dat_key,
        },
        "original": {
            "file": original.file,
            "sha256": original.sha256,
            "bytes": original.bytes,
            "format": original.format,
            "source_host": original.source_host,
        },
    }


def _source_part(ctx: StageContext, job: JobRecord) -> dict[str, Any]:
    """Fetch, measure and analyse the source once; its result for the join."""
    source = fetch_source(ctx, job)
    key = None
    if source.fingerprint is not None:
        key = store_print(ctx, job.job_id, SOURCE, source.fingerprint)
    return {"source": source.as_dict(), "duration_s": source.duration_s, "print_key": key}


def fetch_source(ctx: StageContext, job: JobRecord) -> Source:
    """The source track, fetched once through the same guarded client as stems; unchecked
    (with the reason) when validation is off or the source cannot be had."""
    settings = ctx.settings
    if not settings.validate_source:
        return Source(False, "source validation is off (VIDGO_STEMS_VALIDATE_SOURCE=false)")
    url = job.request.audio_url
    try:
        parts, _ = connectable(url, source_policy(settings))
    except BlockedAddress as exc:
        return Source(False, f"the source's URL {exc}")
    dest = ctx.scratch.job_dir(job.job_id) / ("source" + (Path(parts.path).suffix or ".audio"))
    try:
        fetched = fetch_to_file(ctx.http, url, dest, max_bytes=settings.max_source_bytes)
        return read_source(dest, fetched.bytes, fetched.sha256)
    except (StemDownloadError, PermanentError) as exc:  # unreachable, refused, not audio
        return Source(False, f"the source could not be checked [{exc.code}]: {exc.message}")


def store_print(ctx: StageContext, job_id: str, name: str, fingerprint: AnalysisPrint) -> str:
    """Store a part's print for the join (about 1 MB whatever the track's length)."""
    key = job_key(job_id, f"{WORK}/{name}.print.npz")
    body = fingerprint.to_bytes()
    return ctx.storage.put_bytes(key, body, content_type="application/octet-stream").key


def load_print(ctx: StageContext, key: str) -> AnalysisPrint | None:
    """A stored print; None when storage no longer has it (or holds something else)."""
    body = ctx.storage.read_bytes(key)
    if body is None:
        return None
    try:
        return AnalysisPrint.from_bytes(body)
    except (ValueError, KeyError, OSError):
        return None


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
