"""Stage 3: fetch every stem into local scratch, verified, store it; hand off to post-processing.

Stem URLs come from a remote party, so each is checked against the allowed origins before any
request; the download client carries no Vidgo credentials. The transfer itself (resume, length
and checksum checks, atomic rename) is :func:`vidgo_stems.files.fetch.fetch_to_file`; the verified
file then goes to the storage layer as Vidgo served it, under ``<job_id>/original/``, where
every worker host can reach it until post-processing has delivered the job's own files. A stem
already stored with the recorded checksum is not fetched again, so a retried or duplicated
download does no work twice. When Vidgo's storage says a URL has expired (403/404/410), the
task is queried again for fresh URLs, up to ``max_url_refreshes`` times per job, and the stage
is retried with them.

A stem's file name, and so the format every later step reads and tags it as, comes from its
bytes (:mod:`vidgo_stems.files.sniff`), not from its URL: a ``.wav`` URL serving MP3 is stored as
``.mp3``. Bytes of no audio format we know fail the job with ``stem_not_audio``.
"""

from __future__ import annotations

import logging
from pathlib import Path, PurePosixPath
from typing import NoReturn
from urllib.parse import urlsplit

from vidgo_stems.errors import StemUndecodable, StemUrlExpired, StemUrlsRefreshed
from vidgo_stems.files.fetch import fetch_to_file
from vidgo_stems.files.links import ORIGINALS, job_key
from vidgo_stems.files.scratch import AUDIO_SUFFIXES, safe_stem_name
from vidgo_stems.files.sniff import sniff_file
from vidgo_stems.files.stems import StoredStem, still_stored
from vidgo_stems.files.storage import content_type_for
from vidgo_stems.models import expected_stems
from vidgo_stems.observe import metrics
from vidgo_stems.pipeline.parts import Parts
from vidgo_stems.pipeline.record import JobRecord
from vidgo_stems.pipeline.stages.context import Outcome, StageContext, hand_off, load_current
from vidgo_stems.pipeline.states import JobState, TaskName, states_of
from vidgo_stems.urlsafety import check_stem_url
from vidgo_stems.vidgo.parse import extract_stem_urls

log = logging.getLogger(__name__)


def stem_filename(stem: str, url: str) -> str:
    """The name a stem is fetched under: its URL's suffix when that is an audio one."""
    suffix = PurePosixPath(urlsplit(url).path).suffix.lower()
    return safe_stem_name(stem) + (suffix if suffix in AUDIO_SUFFIXES else ".audio")


def named_by_bytes(stem: str, local: Path) -> Path:
    """The fetched file renamed to the suffix its bytes say (itself when its name agrees).

    Raises StemUndecodable (``stem_not_audio``) when the bytes are no audio format we know.
    """
    suffix = sniff_file(local)
    if suffix is None:
        local.unlink(missing_ok=True)  # a retry fetches it afresh
        raise StemUndecodable(
            f"stem {stem}: the file Vidgo served is not audio in any format we know (WAV, "
            "FLAC, MP3, Ogg, AIFF, AAC, MP4); it cannot be delivered",
            code="stem_not_audio",
        )
    if local.suffix == suffix:
        return local
    named = local.with_name(safe_stem_name(stem) + suffix)
    local.replace(named)
    return named


def run_download(ctx: StageContext, job_id: str, token: str) -> Outcome:
    """Download and store every stem of ``job_id``, then hand off to post-processing."""
    job = load_current(ctx, job_id, token, states_of(TaskName.DOWNLOAD), "download")
    if job is None:
        return Outcome.STALE
    scratch = ctx.scratch.job_dir(job_id)
    stems: dict[str, StoredStem] = {}
    for stem, url in sorted(job.stem_urls.items()):
        host = check_stem_url(url, ctx.settings.stem_origins)
        earlier = job.stems.get(stem)
        if earlier and still_stored(ctx.storage, earlier):
            stems[stem] = earlier  # stored by an earlier run of this step
            continue
        local = scratch / stem_filename(stem, url)
        try:
            fetched = fetch_to_file(ctx.http, url, local, max_bytes=ctx.settings.max_stem_bytes)
        except StemUrlExpired as exc:
            _refresh_urls(ctx, job, exc)
        local = named_by_bytes(stem, local)
        name = local.name
        metrics.DOWNLOAD_BYTES.inc(fetched.bytes - fetched.resumed_from)
        stored = ctx.storage.put_file(
            job_key(job_id, f"{ORIGINALS}/{name}"),
            local,
            sha256=fetched.sha256,
            content_type=content_type_for(name),
        )
        stems[stem] = StoredStem(
            key=stored.key,
            sha256=stored.sha256,
            bytes=stored.bytes,
            content_type=stored.content_type,
            file=name,
            source_host=host,
        )
        ctx.ledger.advance(
            job_id,
            expect=JobState.DOWNLOADING,
            token=token,
            fields={"stems": stems},
            event="stem_saved",
            detail={"stem": stem, "resumed_at": fetched.resumed_from},
        )
        log.info("job %s: stem %s stored as %s (%d bytes)", job_id, stem, stored.key, stored.bytes)
    Parts(ctx.ledger).reset(job_id)  # post-processing starts afresh on these stems
    return hand_off(
        ctx,
        job,
        to=JobState.POSTPROCESSING,
        next_task=TaskName.POSTPROCESS,
        event="downloaded",
        fields={"stems": stems, "downloaded_at": ctx.clock()},
        detail={"bytes": sum(s.bytes for s in stems.values()), "worker": ctx.worker_name},
    )


def _refresh_urls(ctx: StageContext, job: JobRecord, expired: StemUrlExpired) -> NoReturn:
    """Replace expired URLs with fresh ones from Vidgo and raise to retry; re-raise when spent."""
    refreshes = job.url_refreshes
    if refreshes >= ctx.settings.max_url_refreshes or not job.vidgo_task_id:
        raise StemUrlExpired(
            f"{expired.message}; fresh URLs were asked for {refreshes} time(s) "
            f"(VIDGO_STEMS_MAX_URL_REFRESHES={ctx.settings.max_url_refreshes})",
            job_id=job.job_id,
        )
    detail = ctx.vidgo.music_detail(job.vidgo_task_id)
    wanted = expected_stems(job.request.output_type)
    fresh = extract_stem_urls(detail.files, wanted, ctx.settings.json_limits).urls
    if not fresh:
        raise StemUrlExpired(
            f"{expired.message}; Vidgo no longer lists the stems", job_id=job.job_id
        )
    ctx.ledger.bump_counter("url_refreshes")
    ctx.ledger.advance(
        job.job_id,
        expect=JobState.DOWNLOADING,
        token=job.token,
        fields={"stem_urls": fresh},
        incr={"url_refreshes": 1},
        event="stem_urls_refreshed",
        detail={"reason": expired.message},
    )
    raise StemUrlsRefreshed(f"{expired.message}; fresh URLs fetched, downloading again")
