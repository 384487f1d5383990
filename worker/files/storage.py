"""Where finished stems and manifests live so that every worker host and caller can reach them:
one ``VIDGO_STEMS_STORAGE_URL`` picks a folder (``file:///abs/path``: one host or a shared mount,
written through a hidden temp file, fsync and rename, with the sha256 kept in a sidecar) or
S3-compatible object storage (``s3://bucket/optional/prefix``, configured by the usual ``AWS_*``
variables and driven through obstore: streaming multipart uploads that S3 checksums part by part,
our own sha256 as object metadata, pre-signed GET URLs). Either way an object is visible under its
final key only when complete, a duplicate upload of the same bytes is skipped, downloads stream
into a temp file beside the destination and are verified against the recorded sha256, absent
objects raise StemMissing, transient S3 trouble raises StorageUnavailable (retried with backoff),
bytes that no longer match their sha256 raise StemCorrupt, and every other failure is a
StorageError whose message names the fix and never a secret.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import mimetypes
import os
import re
import shutil
import stat as stat_mode
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, BinaryIO, Protocol
from urllib.parse import unquote, urlsplit

import obstore
from obstore.exceptions import (
    BaseError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
)
from obstore.store import S3Store

from worker.errors import (
    ConfigError,
    StemCorrupt,
    StemMissing,
    StorageError,
    StorageUnavailable,
    VidgoStemsError,
)

if TYPE_CHECKING:
    from obstore import Attributes, GetResult
    from obstore.store import ClientConfig, RetryConfig


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


def open_storage(url: str, *, url_signer: Callable[[str, int], str] | None = None) -> Storage:
    """The Storage for ``VIDGO_STEMS_STORAGE_URL``; raises a one-line ConfigError when malformed.

    ``url_signer(key, expires_s)`` signs URLs for file:// storage (S3 signs its own).
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme == "file":
        return FileStorage(_file_root(parts.netloc, parts.path, parts.query), url_signer)
    if scheme == "s3":
        bucket, prefix = _s3_location(parts.netloc, parts.path, parts.query, parts.fragment)
        return S3Storage(bucket, prefix)
    shown = f"scheme {scheme!r}" if scheme else "no scheme"
    raise ConfigError(
        f"VIDGO_STEMS_STORAGE_URL has {shown}: use file:///abs/path or s3://bucket/prefix, "
        f"{_URL_EXAMPLE}"
    )


def _file_root(netloc: str, path: str, query: str) -> Path:
    if netloc not in ("", "localhost") or query:
        raise ConfigError(
            "VIDGO_STEMS_STORAGE_URL must be file:///abs/path (three slashes, no host, no query), "
            f"{_URL_EXAMPLE}"
        )
    root = unquote(path)
    if not root.startswith("/") or "\x00" in root:
        raise ConfigError(f"VIDGO_STEMS_STORAGE_URL needs an absolute folder, {_URL_EXAMPLE}")
    return Path(os.path.normpath(root))


def _s3_location(netloc: str, path: str, query: str, fragment: str) -> tuple[str, str]:
    if "@" in netloc:
        # Never echo the URL here: what is before the "@" may be a secret.
        raise ConfigError(
            "VIDGO_STEMS_STORAGE_URL must not carry credentials: set AWS_ACCESS_KEY_ID and "
            f"AWS_SECRET_ACCESS_KEY instead, {_URL_EXAMPLE}"
        )
    if not netloc:
        raise ConfigError(f"VIDGO_STEMS_STORAGE_URL names no bucket, {_URL_EXAMPLE}")
    if query or fragment:
        raise ConfigError(
            "VIDGO_STEMS_STORAGE_URL takes no query or fragment: configure S3 with the AWS_* "
            f"variables, {_URL_EXAMPLE}"
        )
    return netloc, unquote(path)


def _check_s3_location(bucket: str, prefix: str) -> str:
    """The prefix without outer slashes, once bucket and prefix are known to be clean."""
    if not _BUCKET.match(bucket):
        raise ConfigError(
            f"VIDGO_STEMS_STORAGE_URL bucket {bucket!r} is not a valid S3 bucket name "
            f"(3-63 lowercase letters, digits, dots, hyphens), {_URL_EXAMPLE}"
        )
    prefix = prefix.strip("/")
    if prefix:
        try:
            validate_key(prefix)
        except StorageError:
            raise ConfigError(
                f"VIDGO_STEMS_STORAGE_URL prefix {prefix!r} is not a clean path "
                f"(no empty, '.', '..' or hidden segments), {_URL_EXAMPLE}"
            ) from None
    return prefix


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


@dataclass(frozen=True)
class _Sidecar:
    """What FileStorage records beside a file: its hash and which file version it describes."""

    sha256: str
    bytes: int
    content_type: str
    inode: int
    mtime_ns: int

    def describes(self, st: os.stat_result) -> bool:
        return (self.bytes, self.inode, self.mtime_ns) == (st.st_size, st.st_ino, st.st_mtime_ns)


class FileStorage:
    """Objects as files under ``root``: ``root/<key>``, each complete under its final name.

    Every write goes to a hidden temp file in the same folder, is flushed, fsynced and renamed
    into place. The sha256 sits in a sidecar ``.<name>.sha256`` that also records the file's
    inode, mtime and size: a stat stays one small read however large the file, and a sidecar
    that describes another version of the file (a crash between the two renames, a file copied
    in by hand) is noticed and the hash recomputed once.
    """

    def __init__(self, root: Path, url_signer: Callable[[str, int], str] | None = None) -> None:
        if not Path(root).is_absolute():
            raise ConfigError(f"file storage needs an absolute folder, {_URL_EXAMPLE}")
        self.root = Path(os.path.normpath(root))
        self.url = self.root.as_uri()
        self._url_signer = url_signer

    def _path(self, key: str) -> Path:
        path = self.root.joinpath(*validate_key(key).split("/"))
        # The key checks already forbid every escape; this guards the join itself.
        if os.path.commonpath([self.root, os.path.normpath(path)]) != str(self.root):
            raise StorageError(f"storage key {key!r} escapes {self.url}")
        return path

    @staticmethod
    def _sidecar_path(path: Path) -> Path:
        return path.with_name(f".{path.name}.sha256")

    def _read_sidecar(self, path: Path) -> _Sidecar | None:
        try:
            data = json.loads(self._sidecar_path(path).read_bytes())
            return _Sidecar(
                sha256=str(data["sha256"]),
                bytes=int(data["bytes"]),
                content_type=str(data["content_type"]),
                inode=int(data["inode"]),
                mtime_ns=int(data["mtime_ns"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _write_sidecar(self, path: Path, sidecar: _Sidecar) -> None:
        target = self._sidecar_path(path)
        tmp = _temp_beside(target)
        payload = json.dumps(sidecar.__dict__, sort_keys=True).encode()
        try:
            with open(tmp, "xb") as out:
                out.write(payload)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()

    def _write(
        self, key: str, fill: Callable[[BinaryIO], None], *, sha256: str, content_type: str
    ) -> StoredObject:
        dest = self._path(key)
        tmp = _temp_beside(dest)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "xb") as out:
                fill(out)
                out.flush()
                os.fsync(out.fileno())
                st = os.fstat(out.fileno())
            # The sidecar goes first and names the new file's inode: a crash between the two
            # renames leaves a sidecar that describes no file, never a wrong hash.
            self._write_sidecar(
                dest, _Sidecar(sha256, st.st_size, content_type, st.st_ino, st.st_mtime_ns)
            )
            os.replace(tmp, dest)
            _fsync_dir(dest.parent)
        except OSError as exc:
            raise _os_error(exc, "write", dest) from None
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
        return StoredObject(key, st.st_size, sha256, content_type)

    def put_file(self, key: str, path: Path, *, sha256: str, content_type: str) -> StoredObject:
        """Copy ``path`` to ``root/<key>``; skipped when the same size and sha256 are there."""
        _check_sha256(sha256)
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise _os_error(exc, "read", path) from None
        existing = self.stat(key)
        if existing is not None and (existing.bytes, existing.sha256) == (size, sha256):
            return existing

        def fill(out: BinaryIO) -> None:
            with path.open("rb") as source:
                shutil.copyfileobj(source, out, COPY_CHUNK_BYTES)

        stored = self._write(key, fill, sha256=sha256, content_type=content_type)
        if stored.bytes != size:
            raise StorageError(f"{path} changed while it was stored: store it again")
        return stored

    def put_bytes(self, key: str, data: bytes, *, content_type: str) -> StoredObject:
        """Write ``data`` to ``root/<key>``; skipped when the same bytes are there."""
        sha256 = hashlib.sha256(data).hexdigest()
        existing = self.stat(key)
        if existing is not None and (existing.bytes, existing.sha256) == (len(data), sha256):
            return existing

        def fill(out: BinaryIO) -> None:
            out.write(data)

        return self._write(key, fill, sha256=sha256, content_type=content_type)

    def stat(self, key: str) -> StoredObject | None:
        """Size, sha256 and type of ``root/<key>``; None when there is no such file."""
        path = self._path(key)
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise _os_error(exc, "read", path) from None
        if not stat_mode.S_ISREG(st.st_mode):
            return None
        sidecar = self._read_sidecar(path)
        if sidecar is not None and sidecar.describes(st):
            return StoredObject(key, st.st_size, sidecar.sha256, sidecar.content_type)
        return self._rehash(key, path)

    def _rehash(self, key: str, path: Path) -> StoredObject | None:
        digest = hashlib.sha256()
        try:
            with path.open("rb") as handle:
                before = os.fstat(handle.fileno())
                for chunk in _read_chunks(handle):
                    digest.update(chunk)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _os_error(exc, "read", path) from None
        found = StoredObject(key, before.st_size, digest.hexdigest(), content_type_for(key))
        # Best effort: a read-only mount still answers, it just hashes again next time.
        with contextlib.suppress(OSError):
            if os.stat(path).st_mtime_ns == before.st_mtime_ns:
                self._write_sidecar(
                    path,
                    _Sidecar(
                        found.sha256,
                        found.bytes,
                        found.content_type,
                        before.st_ino,
                        before.st_mtime_ns,
                    ),
                )
        return found

    def download(self, key: str, dest: Path) -> StoredObject:
        """Copy ``root/<key>`` into ``dest`` atomically, verified against its recorded sha256."""
        source = self._path(key)
        try:
            handle = source.open("rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise StemMissing(f"{key} is not in {self.url}") from None
        except OSError as exc:
            raise _os_error(exc, "read", source) from None
        with handle:
            st = os.fstat(handle.fileno())
            sidecar = self._read_sidecar(source)
            recorded = sidecar if sidecar is not None and sidecar.describes(st) else None
            got = _receive(
                dest,
                _read_chunks(handle),
                key=key,
                where=self.url,
                sha256=recorded.sha256 if recorded else "",
                size=st.st_size,
            )
        content_type = recorded.content_type if recorded else got.content_type
        return StoredObject(key, got.bytes, got.sha256, content_type)

    def read_bytes(self, key: str) -> bytes | None:
        """The content of the small file ``root/<key>``, verified; None when absent."""
        path = self._path(key)
        try:
            with path.open("rb") as handle:
                st = os.fstat(handle.fileno())
                if st.st_size > MAX_SMALL_OBJECT_BYTES:
                    raise StorageError(
                        f"{key} is {st.st_size} bytes, too large to read whole: download it"
                    )
                data = handle.read()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        except OSError as exc:
            raise _os_error(exc, "read", path) from None
        sidecar = self._read_sidecar(path)
        if (
            sidecar is not None
            and sidecar.describes(st)
            and hashlib.sha256(data).hexdigest() != sidecar.sha256
        ):
            raise StemCorrupt(f"{key} in {self.url} does not match its recorded sha256")
        return data

    def sign_url(self, key: str, *, expires_s: int) -> str:
        """A URL for ``key`` from the gateway's signer; ConfigError when none is configured."""
        validate_key(key)
        if self._url_signer is None:
            raise ConfigError(
                "file:// storage needs the gateway to serve signed URLs: set "
                "VIDGO_STEMS_PUBLIC_BASE_URL and VIDGO_STEMS_FILE_URL_SECRET"
            )
        return self._url_signer(key, expires_s)

    def delete_prefix(self, prefix: str) -> int:
        """Delete the folder ``root/<prefix>`` and everything in it; returns how many objects."""
        folder = self.root.joinpath(*_validate_prefix(prefix).split("/"))
        if not folder.is_dir() or folder.is_symlink():
            return 0
        deleted = 0
        try:
            for dirpath, dirnames, filenames in os.walk(folder, topdown=False):
                here = Path(dirpath)
                for name in filenames:
                    with contextlib.suppress(FileNotFoundError):
                        (here / name).unlink()
                        # Hidden files are our sidecars and temp files, not objects.
                        if not name.startswith("."):
                            deleted += 1
                for name in dirnames:
                    sub = here / name
                    if sub.is_symlink():
                        sub.unlink()
                    else:
                        # A writer may be filling it right now: leave what is not empty.
                        with contextlib.suppress(FileNotFoundError, OSError):
                            sub.rmdir()
            with contextlib.suppress(OSError):
                folder.rmdir()
        except OSError as exc:
            raise _os_error(exc, "delete under", folder) from None
        return deleted


def _env_endpoint() -> str:
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"):
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return ""


def _display_endpoint(endpoint: str) -> str:
    if not endpoint:
        return "the AWS regional endpoint"
    parts = urlsplit(endpoint)
    # Only scheme, host and port: userinfo or a query in an endpoint may hold a secret.
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


class S3Storage:
    """Objects in an S3-compatible bucket under ``prefix``, through obstore.

    Credentials, region and endpoint come from the standard ``AWS_*`` variables (including
    ``AWS_ENDPOINT_URL`` for MinIO, R2 and test servers; plain http is allowed only when that
    endpoint says http). Uploads stream in ``chunk_size`` parts with ``max_concurrency`` in flight,
    so memory is flat in the file size; with ``checksum_algorithm=SHA256`` S3 verifies every part
    against a checksum the client computed from the bytes it sent.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        chunk_size: int = PUT_CHUNK_BYTES,
        max_concurrency: int = PUT_MAX_CONCURRENCY,
        max_retries: int = 3,
        retry_timeout_s: float = 60.0,
        connect_timeout_s: float = 5.0,
        request_timeout_s: float = 3600.0,
    ) -> None:
        self.prefix = _check_s3_location(bucket, prefix)
        self.bucket = bucket
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.chunk_size = chunk_size
        self.max_concurrency = max_concurrency
        endpoint = _env_endpoint()
        self.endpoint = _display_endpoint(endpoint)
        client: ClientConfig = {
            "connect_timeout": timedelta(seconds=connect_timeout_s),
            # The overall limit covers a whole streamed GET body, so it is generous; a stalled
            # transfer is caught sooner by the read timeout.
            "timeout": timedelta(seconds=request_timeout_s),
            "read_timeout": timedelta(seconds=60),
        }
        if endpoint.lower().startswith("http://"):
            client["allow_http"] = True
        # Few, short retries in the client: the pipeline retries StorageUnavailable with backoff.
        retry: RetryConfig = {
            "max_retries": max_retries,
            "retry_timeout": timedelta(seconds=retry_timeout_s),
            "backoff": {
                "init_backoff": timedelta(milliseconds=100),
                "max_backoff": timedelta(seconds=5),
            },
        }
        try:
            #: The obstore store behind this storage (same settings), for tools and benchmarks.
            self.store = S3Store(
                bucket,
                prefix=self.prefix or None,
                client_options=client,
                retry_config=retry,
                checksum_algorithm="SHA256",
            )
        except (BaseError, ValueError, TypeError) as exc:
            # obstore's text may quote an AWS_* value; only the error's kind is shown.
            raise ConfigError(
                f"cannot configure S3 storage for {self.url} ({type(exc).__name__}): check the "
                f"AWS_* variables and VIDGO_STEMS_STORAGE_URL, {_URL_EXAMPLE}"
            ) from None

    def _error(self, exc: Exception, action: str, key: str) -> VidgoStemsError:
        """Our error for an obstore failure; the message holds no obstore text, hence no URL
        query, header or credential."""
        where = f"{action} of {key} at {self.url} (endpoint {self.endpoint})"
        if isinstance(exc, FileNotFoundError | NotFoundError):
            return StemMissing(f"{key} is not in {self.url}")
        if isinstance(exc, PermissionError | PermissionDeniedError | UnauthenticatedError):
            return StorageError(
                f"S3 refused the {where}: check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and "
                "the bucket policy"
            )
        text = str(exc)
        found = _STATUS.search(text)
        status = int(found.group(1)) if found else None
        # 3xx here is S3 pointing at another region; 408 and 429 ask us to come back later.
        if status is not None and status < 500 and status not in (408, 429):
            return StorageError(
                f"S3 answered HTTP {status} to the {where}: check the bucket, AWS_REGION and "
                "the credentials"
            )
        kind = _HTTP_KIND.search(text)
        if status is not None:
            reason = f"HTTP {status}"
        elif kind is not None:
            reason = _HTTP_KIND_REASONS.get(kind.group(1), f"transport error ({kind.group(1)})")
        else:
            reason = f"request failed ({type(exc).__name__})"
        return StorageUnavailable(
            f"S3 {where} failed: {reason}; it is retried (check AWS_ENDPOINT_URL if it persists)"
        )

    def _head(self, key: str) -> tuple[int, Attributes] | None:
        try:
            result = obstore.get(self.store, validate_key(key), options={"head": True})
        except (BaseError, OSError) as exc:
            error = self._error(exc, "stat", key)
            if isinstance(error, StemMissing):
                return None
            raise error from None
        return result.meta["size"], result.attributes

    def _stored(self, key: str, size: int, attributes: Attributes) -> StoredObject:
        return StoredObject(
            key,
            size,
            attributes.get(SHA256_ATTRIBUTE, ""),
            attributes.get("Content-Type", "application/octet-stream"),
        )

    def stat(self, key: str) -> StoredObject | None:
        """Size, sha256 (from metadata) and type of ``key``: one HEAD; None when absent."""
        found = self._head(key)
        return None if found is None else self._stored(key, *found)

    def put_file(self, key: str, path: Path, *, sha256: str, content_type: str) -> StoredObject:
        """Upload ``path`` under ``key`` in streamed parts, then check what S3 holds.

        Skipped when an object with the same size and sha256 metadata is there already (a
        duplicate delivery of the same task).
        """
        _check_sha256(sha256)
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise _os_error(exc, "read", path) from None
        existing = self.stat(key)
        if existing is not None and (existing.bytes, existing.sha256) == (size, sha256):
            return existing
        attributes: Attributes = {"Content-Type": content_type, SHA256_ATTRIBUTE: sha256}
        try:
            # A single PUT and a CompleteMultipartUpload are both atomic in S3: the key shows
            # the old object or the whole new one, never parts. A failed multipart upload is
            # aborted by obstore; a killed process leaves unlisted parts that a bucket lifecycle
            # rule (AbortIncompleteMultipartUpload) removes.
            obstore.put(
                self.store,
                key,
                path,
                attributes=attributes,
                chunk_size=self.chunk_size,
                max_concurrency=self.max_concurrency,
            )
        except (BaseError, OSError) as exc:
            error = self._error(exc, "upload", key)
            if isinstance(error, StemMissing):
                error = StorageError(
                    f"bucket {self.bucket} does not exist: create it or fix VIDGO_STEMS_STORAGE_URL"
                )
            raise error from None
        stored = self.stat(key)
        if stored is None or (stored.bytes, stored.sha256) != (size, sha256):
            raise StorageUnavailable(
                f"after the upload of {key}, {self.url} does not hold {size} bytes with "
                "sha256 metadata as sent (another writer?); it is uploaded again"
            )
        return stored

    def put_bytes(self, key: str, data: bytes, *, content_type: str) -> StoredObject:
        """Store a small object with one PUT (atomic; S3 checks its SHA256 checksum)."""
        sha256 = hashlib.sha256(data).hexdigest()
        try:
            obstore.put(
                self.store,
                validate_key(key),
                data,
                attributes={"Content-Type": content_type, SHA256_ATTRIBUTE: sha256},
                use_multipart=False,
            )
        except (BaseError, OSError) as exc:
            error = self._error(exc, "upload", key)
            if isinstance(error, StemMissing):
                error = StorageError(
                    f"bucket {self.bucket} does not exist: create it or fix VIDGO_STEMS_STORAGE_URL"
                )
            raise error from None
        return StoredObject(key, len(data), sha256, content_type)

    def _get(self, key: str) -> GetResult:
        try:
            return obstore.get(self.store, validate_key(key))
        except (BaseError, OSError) as exc:
            raise self._error(exc, "download", key) from None

    def _chunks(self, result: GetResult, key: str) -> Iterator[bytes]:
        try:
            yield from result.stream(min_chunk_size=COPY_CHUNK_BYTES)
        except (BaseError, OSError) as exc:
            # A broken body is transient whatever obstore calls it: the object was there.
            error = self._error(exc, "download", key)
            if isinstance(error, StemMissing):
                error = StorageUnavailable(f"the download of {key} from {self.url} broke off")
            raise error from None

    def download(self, key: str, dest: Path) -> StoredObject:
        """Stream ``key`` into ``dest`` atomically; verified against its sha256 metadata."""
        result = self._get(key)
        size, attributes = result.meta["size"], result.attributes
        got = _receive(
            dest,
            self._chunks(result, key),
            key=key,
            where=self.url,
            sha256=attributes.get(SHA256_ATTRIBUTE, ""),
            size=size,
        )
        return StoredObject(
            key, got.bytes, got.sha256, self._stored(key, size, attributes).content_type
        )

    def read_bytes(self, key: str) -> bytes | None:
        """The content of the small object ``key``, verified; None when absent."""
        try:
            result = self._get(key)
        except StemMissing:
            return None
        size = result.meta["size"]
        if size > MAX_SMALL_OBJECT_BYTES:
            raise StorageError(f"{key} is {size} bytes, too large to read whole: download it")
        data = b"".join(self._chunks(result, key))
        if len(data) != size:
            raise StorageUnavailable(f"{key} from {self.url} came back short; it is read again")
        recorded = result.attributes.get(SHA256_ATTRIBUTE, "")
        if recorded and hashlib.sha256(data).hexdigest() != recorded:
            raise StemCorrupt(f"{key} in {self.url} does not match its recorded sha256")
        return data

    def sign_url(self, key: str, *, expires_s: int) -> str:
        """A pre-signed GET URL for ``key`` (computed locally, no request is made)."""
        if not 1 <= expires_s <= MAX_SIGN_EXPIRES_S:
            raise StorageError(f"expires_s must be 1..{MAX_SIGN_EXPIRES_S} (S3 allows 7 days)")
        try:
            return obstore.sign(self.store, "GET", validate_key(key), timedelta(seconds=expires_s))
        except (BaseError, OSError) as exc:
            raise self._error(exc, "signing", key) from None

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix`` with bulk deletes; returns how many."""
        folder = _validate_prefix(prefix)
        try:
            keys = [
                meta["path"]
                for chunk in obstore.list(self.store, folder, chunk_size=1000)
                for meta in chunk
            ]
            for start in range(0, len(keys), 1000):
                obstore.delete(self.store, keys[start : start + 1000])
        except (BaseError, OSError) as exc:
            error = self._error(exc, "delete", f"{folder}/")
            if isinstance(error, StemMissing):
                error = StorageError(
                    f"bucket {self.bucket} does not exist: fix VIDGO_STEMS_STORAGE_URL"
                )
            raise error from None
        return len(keys)
