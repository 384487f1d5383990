"""``s3://`` storage through obstore: streaming multipart uploads with S3 checksums, our own
sha256 as object metadata, pre-signed GET links, retries; configured by the ``AWS_*`` variables.

obstore runs a Rust (tokio) runtime that does not survive ``fork()``: use it only in the
process that created it (pool children build their own; the worker's main process never
touches storage).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import obstore
from obstore.exceptions import (
    BaseError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
)
from obstore.store import S3Store

from vidgo_stems.errors import (
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


from vidgo_stems.files.objects import (
    _BUCKET,
    _HTTP_KIND,
    _HTTP_KIND_REASONS,
    _STATUS,
    _URL_EXAMPLE,
    COPY_CHUNK_BYTES,
    MAX_SIGN_EXPIRES_S,
    MAX_SMALL_OBJECT_BYTES,
    PUT_CHUNK_BYTES,
    PUT_MAX_CONCURRENCY,
    SHA256_ATTRIBUTE,
    StoredObject,
    _receive,
    _validate_prefix,
    already_stored,
    validate_key,
)


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
        # obstore (0.12) raises one GenericError for every other failure and carries no status
        # code: the status and the transport error's kind are read from its text, and only
        # they are shown.
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
        size, existing = already_stored(self, key, path, sha256)
        if existing is not None:
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
            raise self._upload_error(exc, key) from None
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
            raise self._upload_error(exc, key) from None
        return StoredObject(key, len(data), sha256, content_type)

    def _upload_error(self, exc: Exception, key: str) -> VidgoStemsError:
        error = self._error(exc, "upload", key)
        if isinstance(error, StemMissing):  # on a write, "not found" is the bucket
            return StorageError(
                f"bucket {self.bucket} does not exist: create it or fix VIDGO_STEMS_STORAGE_URL"
            )
        return error

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
