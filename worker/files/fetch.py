"""A resumable, verifying download of one file: the part of stem downloading that knows HTTP.

The body streams into ``.<name>.part`` beside the destination while sha256 is computed in the same
pass. A transfer that breaks keeps its part file, and the next call resumes it with ``Range``
(``If-Range`` on the ETag, so a changed object restarts from zero). The result is checked against
the announced length and, when the server's ETag is a plain MD5 or SHA-256 hex digest, against that
checksum; a mismatch discards the part so the next try downloads afresh. Only a verified file is
renamed to its final name, so a file with its final name is always complete. A URL that cannot
name anything fetchable (a port out of range, no host) is refused before any request, with the
stable code ``url_invalid``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

import httpx

from vidgo_stems.errors import PermanentError, StemDownloadError, StemUrlExpired, StorageError
from vidgo_stems.files.scratch import storage_error

CHUNK_BYTES = 1 << 16
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_HEX_ETAG = re.compile(r'^"?([0-9a-fA-F]{32}|[0-9a-fA-F]{64})"?$')


@dataclass(frozen=True)
class Fetched:
    bytes: int
    sha256: str
    resumed_from: int


def part_path(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.part")


def url_port(url: str) -> int:
    """The port ``url`` names (its scheme's default when it names none).

    Raises PermanentError (``url_invalid``) for a port out of range or not a number, or no host.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise PermanentError(
            f"the URL cannot be fetched: {exc}; it needs a port from 1 to 65535",
            code="url_invalid",
        ) from None
    if not parts.hostname or port == 0:
        raise PermanentError(
            "the URL cannot be fetched: it names no host or port 0", code="url_invalid"
        )
    return port or (443 if parts.scheme == "https" else 80)


def fetch_to_file(http: httpx.Client, url: str, dest: Path, *, max_bytes: int) -> Fetched:
    """Download ``url`` into ``dest``, resuming a part file when there is one.

    Raises StemDownloadError (retryable: broken, short or corrupt transfer), StemUrlExpired
    (403/404/410), StorageError (disk full, no permission, over ``max_bytes``) or
    PermanentError (``url_invalid``: the URL names no host or a port out of range).
    """
    url_port(url)
    part = part_path(dest)
    offset = part.stat().st_size if part.exists() else 0
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    wanted: tuple[hashlib._Hash, ...] = (sha,)
    try:
        with http.stream("GET", url, headers=_resume_headers(part, offset)) as response:
            _refuse_bad_status(response, dest.name)
            offset, total = _plan(response, offset, dest.name)
            _remember_etag(part, response.headers.get("etag"))
            if _etag_is_md5(part):
                wanted = (sha, md5)  # MD5 is slow: computed only when it can be checked
            if total is not None and total > max_bytes:
                raise StorageError(f"{dest.name} is {total} bytes, over VIDGO_STEMS_MAX_STEM_BYTES")
            with open(part, "ab" if offset else "wb") as out:
                if offset:
                    _hash_existing(part, offset, *wanted)
                _copy(response, out, *wanted, start=offset, max_bytes=max_bytes, name=dest.name)
                out.flush()
                os.fsync(out.fileno())
    except httpx.InvalidURL as exc:
        raise PermanentError(
            f"{dest.name}: the URL cannot be fetched: {exc}", code="url_invalid"
        ) from None
    except httpx.HTTPError as exc:
        raise StemDownloadError(
            f"{dest.name}: transfer broke ({type(exc).__name__}); it resumes from the bytes kept"
        ) from None
    except StorageError:
        _discard(part)
        raise
    except OSError as exc:
        _discard(part)
        raise storage_error(exc, dest) from None
    size = part.stat().st_size
    _verify(part, dest.name, size=size, total=total, sha=sha, md5=md5)
    try:
        os.replace(part, dest)
    except OSError as exc:
        _discard(part)
        raise storage_error(exc, dest) from None
    _discard(_etag_path(part))
    return Fetched(bytes=size, sha256=sha.hexdigest(), resumed_from=offset)


def _resume_headers(part: Path, offset: int) -> dict[str, str]:
    if not offset:
        return {}
    headers = {"Range": f"bytes={offset}-"}
    etag_file = _etag_path(part)
    if etag_file.exists():
        headers["If-Range"] = etag_file.read_text()
    return headers


def _refuse_bad_status(response: httpx.Response, name: str) -> None:
    status = response.status_code
    if status in (403, 404, 410):
        raise StemUrlExpired(
            f"{name}: storage answered {status}; the stem URL has expired or was revoked "
            "(Vidgo keeps stems 24 h)"
        )
    if status not in (200, 206):
        raise StemDownloadError(
            f"{name}: storage answered {status}; will retry", status_code=status
        )


def _plan(response: httpx.Response, offset: int, name: str) -> tuple[int, int | None]:
    """(offset to write at, total length) for this response; 200 means start from zero."""
    if response.status_code == 200:
        length = response.headers.get("content-length")
        return 0, int(length) if length and length.isdigit() else None
    match = _CONTENT_RANGE.match(response.headers.get("content-range", ""))
    if not match or int(match.group(1)) != offset:
        raise StemDownloadError(f"{name}: storage answered a range we did not ask for; restarting")
    total = match.group(3)
    return offset, None if total == "*" else int(total)


def _hash_existing(part: Path, length: int, *hashes: hashlib._Hash) -> None:
    with open(part, "rb") as handle:
        remaining = length
        while remaining:
            chunk = handle.read(min(CHUNK_BYTES * 16, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            for digest in hashes:
                digest.update(chunk)


def _copy(
    response: httpx.Response,
    out: BinaryIO,
    *hashes: hashlib._Hash,
    start: int,
    max_bytes: int,
    name: str,
) -> None:
    size = start
    for chunk in response.iter_bytes():  # as the network delivers: re-chunking costs a copy
        size += len(chunk)
        if size > max_bytes:
            raise StorageError(f"{name} grew past VIDGO_STEMS_MAX_STEM_BYTES={max_bytes}")
        for digest in hashes:
            digest.update(chunk)
        out.write(chunk)


def _verify(
    part: Path, name: str, *, size: int, total: int | None, sha: hashlib._Hash, md5: hashlib._Hash
) -> None:
    if total is not None and size != total:
        if size > total:
            _discard(part)
        raise StemDownloadError(f"{name}: got {size} of {total} bytes; the transfer was cut")
    etag_file = _etag_path(part)
    expected = etag_file.read_text() if etag_file.exists() else ""
    match = _HEX_ETAG.match(expected)
    if match:
        digest = match.group(1).lower()
        actual = md5.hexdigest() if len(digest) == 32 else sha.hexdigest()
        if actual != digest:
            _discard(part)
            _discard(etag_file)
            raise StemDownloadError(f"{name}: checksum does not match the ETag; downloading again")


def _etag_is_md5(part: Path) -> bool:
    etag_file = _etag_path(part)
    match = _HEX_ETAG.match(etag_file.read_text()) if etag_file.exists() else None
    return bool(match and len(match.group(1)) == 32)


def _etag_path(part: Path) -> Path:
    return part.with_name(part.name + ".etag")


def _remember_etag(part: Path, etag: str | None) -> None:
    if etag and not etag.startswith("W/"):
        _etag_path(part).write_text(etag)
    else:
        _discard(_etag_path(part))


def _discard(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
