"""What every storage backend shares: the object record, the Storage protocol, key rules,
content types, and the verified streaming write that both backends' downloads use."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import mimetypes
import os
import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Protocol

from vidgo_stems.errors import (
    StemCorrupt,
    StorageError,
    StorageUnavailable,
)

MiB = 1024 * 1024
#: Multipart part size and parts in flight for S3 uploads: an upload holds about their product
#: (32 MiB) in memory whatever the file size. S3's smallest part is 5 MiB (obstore's default).
PUT_CHUNK_BYTES = 8 * MiB
PUT_MAX_CONCURRENCY = 4
#: Block size for streaming copies and downloads.
COPY_CHUNK_BYTES = 1 * MiB
#: ``read_bytes`` is for manifests and markers; anything larger is streamed with ``download``.
MAX_SMALL_OBJECT_BYTES = 16 * MiB
#: The S3 user metadata field (``x-amz-meta-sha256``) that carries our hex sha256.
SHA256_ATTRIBUTE = "sha256"
#: S3 refuses SigV4 pre-signed URLs that live longer than 7 days.
MAX_SIGN_EXPIRES_S = 7 * 24 * 3600

_URL_EXAMPLE = "e.g. VIDGO_STEMS_STORAGE_URL=file:///srv/stems or s3://my-bucket/stems"
_HEX_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\\]")
_MAX_KEY_BYTES = 1024
_STATUS = re.compile(r"status code: (\d{3})")
# obstore's debug text names the kind of transport failure (object_store's HttpErrorKind).
_HTTP_KIND = re.compile(r"HttpError \{\s*kind: (\w+)")
_HTTP_KIND_REASONS = {
    "Connect": "could not connect",
    "Timeout": "timed out",
    "Interrupted": "the connection broke",
    "Request": "the request could not be sent",
    "Decode": "the response body broke off",
}

_CONTENT_TYPES = {
    ".mp3": "audio/mpeg",
    ".wav": "audio/wav",
    ".flac": "audio/flac",
    ".json": "application/json",
}
# The built-in table only: the host's /etc/mime.types must not change what we record.
_MIME = mimetypes.MimeTypes()


def content_type_for(name: str) -> str:
    """The Content-Type to store an object named ``name`` with."""
    suffix = PurePosixPath(name).suffix.lower()
    if suffix in _CONTENT_TYPES:
        return _CONTENT_TYPES[suffix]
    guessed, encoding = _MIME.guess_type(PurePosixPath(name).name, strict=True)
    # "x.tar.gz" guesses application/x-tar plus gzip encoding: the stored bytes are not a tar.
    return guessed if guessed and encoding is None else "application/octet-stream"


@dataclass(frozen=True)
class StoredObject:
    key: str
    bytes: int
    #: Hex sha256; empty only for an object that was not written by this module.
    sha256: str
    content_type: str


class Storage(Protocol):
    """Where stems and manifests are kept; ``open_storage`` gives one for a URL."""

    #: Display form of where things go (never with credentials).
    url: str

    def put_file(self, key: str, path: Path, *, sha256: str, content_type: str) -> StoredObject:
        """Store the file at ``path`` under ``key``; skipped when the same bytes are there."""
        ...

    def put_bytes(self, key: str, data: bytes, *, content_type: str) -> StoredObject:
        """Store a small object (a manifest, a marker) under ``key``."""
        ...

    def stat(self, key: str) -> StoredObject | None:
        """Describe the object under ``key``; None when there is none."""
        ...

    def download(self, key: str, dest: Path) -> StoredObject:
        """Stream ``key`` into ``dest`` atomically, verified; StemMissing when absent."""
        ...

    def read_bytes(self, key: str) -> bytes | None:
        """The bytes of a small object, verified; None when absent."""
        ...

    def sign_url(self, key: str, *, expires_s: int) -> str:
        """A URL that a caller without credentials can GET for ``expires_s`` seconds."""
        ...

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix`` (e.g. ``"job123/"``); returns how many."""
        ...


def validate_key(key: str) -> str:
    """Return ``key`` if it is a clean relative object key, else raise StorageError.

    Segments may not be empty, ``.``, ``..`` or hidden (leading ``.``: those names are kept for
    temp and sidecar files); no leading ``/``, backslash, NUL or other control character.
    """
    if not key:
        raise StorageError("storage key is empty: name the object, e.g. 'job123/vocals.mp3'")
    if len(key.encode("utf-8", "surrogatepass")) > _MAX_KEY_BYTES:
        raise StorageError(f"storage key is over {_MAX_KEY_BYTES} bytes: use a shorter name")
    if key.startswith("/"):
        raise StorageError(f"storage key {key!r} starts with '/': keys are relative")
    if _CONTROL.search(key):
        raise StorageError(f"storage key {key!r} has a backslash or control character")
    for segment in key.split("/"):
        if not segment:
            raise StorageError(f"storage key {key!r} has an empty segment")
        if segment in (".", ".."):
            raise StorageError(f"storage key {key!r} has a '{segment}' segment")
        if segment.startswith("."):
            raise StorageError(f"storage key {key!r} has a hidden segment {segment!r}")
    return key


def _validate_prefix(prefix: str) -> str:
    # "job123/" and "job123" mean the same folder; both backends match whole segments only,
    # so "job1" never reaches "job10/...".
    trimmed = prefix[:-1] if prefix.endswith("/") else prefix
    if not trimmed:
        raise StorageError("refusing to delete everything: give a prefix such as 'job123/'")
    return validate_key(trimmed)


def _check_sha256(sha256: str) -> str:
    if not _HEX_SHA256.match(sha256):
        raise StorageError("sha256 must be 64 lowercase hex digits")
    return sha256


_OS_ADVICE = {
    errno.ENOSPC: "the disk is full: free space there",
    errno.EDQUOT: "the disk quota is exhausted: free space there",
    errno.EACCES: "permission denied: let the worker's user read and write there",
    errno.EPERM: "permission denied: let the worker's user read and write there",
    errno.EROFS: "read-only filesystem: point VIDGO_STEMS_STORAGE_URL somewhere writable",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "the path is a folder, not a file",
}


def _os_error(exc: OSError, what: str, path: Path) -> StorageError:
    advice = _OS_ADVICE.get(exc.errno or 0, "check the path and VIDGO_STEMS_STORAGE_URL")
    return StorageError(f"cannot {what} {path}: {exc.strerror or type(exc).__name__} ({advice})")


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; some network filesystems refuse fsync on a folder.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _temp_beside(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")


def _receive(
    dest: Path, chunks: Iterable[bytes], *, key: str, where: str, sha256: str, size: int | None
) -> StoredObject:
    """Write ``chunks`` to a temp file beside ``dest``, hashing; rename only when verified.

    ``sha256`` (empty: not recorded) and ``size`` (None: unknown) are what the source promised.
    """
    tmp = _temp_beside(dest)
    digest = hashlib.sha256()
    count = 0
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "xb") as out:
            for chunk in chunks:
                digest.update(chunk)
                out.write(chunk)
                count += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        got = digest.hexdigest()
        if size is not None and count != size:
            raise StorageUnavailable(
                f"{key} from {where} came back with {count} of {size} bytes; it is fetched again"
            )
        if sha256 and got != sha256:
            raise StemCorrupt(
                f"{key} at {where} does not match its recorded sha256: the stored object is "
                "corrupt; upload it again"
            )
        os.replace(tmp, dest)
        _fsync_dir(dest.parent)
    except OSError as exc:
        raise _os_error(exc, "copy into", dest) from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return StoredObject(key, count, got, content_type_for(key))


def _read_chunks(handle: BinaryIO) -> Iterator[bytes]:
    while chunk := handle.read(COPY_CHUNK_BYTES):
        yield chunk


def already_stored(
    storage: Storage, key: str, path: Path, sha256: str
) -> tuple[int, StoredObject | None]:
    """The size of ``path``, and what ``storage`` holds under ``key`` when it is already these
    bytes (same size and sha256): a duplicate delivery then writes nothing."""
    _check_sha256(sha256)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise _os_error(exc, "read", path) from None
    existing = storage.stat(key)
    if existing is not None and (existing.bytes, existing.sha256) == (size, sha256):
        return size, existing
    return size, None
