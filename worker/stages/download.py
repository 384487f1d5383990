"""Stage 3: stream every stem to disk, verify it, rename it into place, hand off to post-processing.

Stem URLs come from a remote party, so each one is checked against the allowed hosts before any
request. A stem is streamed into a hidden temp file while its sha256 is computed, its length is
checked against Content-Length and ``max_stem_bytes``, and only then renamed to its final name.
The download client carries no Vidgo credentials.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import httpx

from worker.errors import (
    StemDownloadError,
    StemHostNotAllowed,
    StemUrlExpired,
    StorageError,
)
from worker.ledger import JobState
from worker.stages.context import Outcome, StageContext, TaskName, hand_off, load_current
from worker.storage import AUDIO_SUFFIXES, StemStore, safe_stem_name

log = logging.getLogger(__name__)
CHUNK_BYTES = 1 << 16


@dataclass(frozen=True)
class StemFile:
    file: str
    bytes: int
    sha256: str
    source_host: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "source_host": self.source_host,
        }


def check_stem_url(url: str, allowed_hosts: frozenset[str]) -> str:
    """The URL's host when it is an http(s) URL on an allowed host; else StemHostNotAllowed."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or host not in allowed_hosts:
        raise StemHostNotAllowed(
            f"refusing to download a stem from {parts.scheme}://{host or '?'}: the host is not in "
            "VIDGO_STEMS_ALLOWED_STEM_HOSTS"
        )
    return host


def stem_filename(stem: str, url: str) -> str:
    suffix = PurePosixPath(urlsplit(url).path).suffix.lower()
    return safe_stem_name(stem) + (suffix if suffix in AUDIO_SUFFIXES else ".audio")


def download_stem(
    http: httpx.Client,
    store: StemStore,
    url: str,
    dest: Path,
    *,
    allowed_hosts: frozenset[str],
    max_bytes: int,
) -> StemFile:
    """Stream ``url`` into ``dest`` atomically; raises StemDownloadError or a permanent error."""
    host = check_stem_url(url, allowed_hosts)
    digest = hashlib.sha256()
    size = 0
    try:
        with http.stream("GET", url) as response:
            _check_response(response, dest.name)
            announced = _content_length(response)
            if announced is not None and announced > max_bytes:
                raise StorageError(
                    f"{dest.name} is {announced} bytes, over VIDGO_STEMS_MAX_STEM_BYTES={max_bytes}"
                )
            with store.atomic_writer(dest) as out:
                for chunk in response.iter_bytes(CHUNK_BYTES):
                    size += len(chunk)
                    if size > max_bytes:
                        raise StorageError(
                            f"{dest.name} grew past VIDGO_STEMS_MAX_STEM_BYTES={max_bytes}"
                        )
                    digest.update(chunk)
                    out.write(chunk)
                if announced is not None and size != announced:
                    raise StemDownloadError(
                        f"{dest.name}: got {size} of {announced} bytes; the transfer was cut"
                    )
    except httpx.HTTPError as exc:
        raise StemDownloadError(
            f"{dest.name}: transfer from {host} failed ({type(exc).__name__}); will retry"
        ) from None
    return StemFile(file=dest.name, bytes=size, sha256=digest.hexdigest(), source_host=host)


def _check_response(response: httpx.Response, name: str) -> None:
    status = response.status_code
    if status in (403, 404, 410):
        raise StemUrlExpired(
            f"{name}: storage answered {status}; the stem URL has expired or was revoked "
            "(Vidgo keeps stems 24 h)"
        )
    if status != 200:
        raise StemDownloadError(
            f"{name}: storage answered {status}; will retry", status_code=status
        )


def _content_length(response: httpx.Response) -> int | None:
    value = response.headers.get("content-length")
    return int(value) if value and value.isdigit() else None


def run_download(ctx: StageContext, job_id: str, token: str) -> Outcome:
    """Download every stem of ``job_id`` and hand off to post-processing."""
    job = load_current(ctx, job_id, token, (JobState.DOWNLOADING,), "download")
    if job is None:
        return Outcome.STALE
    folder = ctx.store.job_dir(job_id)
    stems: dict[str, Any] = {}
    for stem, url in sorted(job.stem_urls.items()):
        dest = folder / stem_filename(stem, url)
        result = download_stem(
            ctx.http,
            ctx.store,
            url,
            dest,
            allowed_hosts=ctx.settings.stem_hosts,
            max_bytes=ctx.settings.max_stem_bytes,
        )
        stems[stem] = result.as_dict()
        log.info("job %s: stem %s saved (%d bytes)", job_id, stem, result.bytes)
    return hand_off(
        ctx,
        job,
        to=JobState.POSTPROCESSING,
        next_task=TaskName.POSTPROCESS,
        event="downloaded",
        fields={"stems": stems, "downloaded_at": ctx.clock()},
        detail={"bytes": sum(s["bytes"] for s in stems.values())},
    )
