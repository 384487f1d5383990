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

import os
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

from vidgo_stems.errors import ConfigError
from vidgo_stems.files.localfs import FileStorage
from vidgo_stems.files.objects import (
    _URL_EXAMPLE,
    Storage,
    StoredObject,
    content_type_for,
    validate_key,
)
from vidgo_stems.files.s3 import S3Storage

__all__ = [
    "FileStorage",
    "S3Storage",
    "Storage",
    "StoredObject",
    "content_type_for",
    "open_storage",
    "validate_key",
]


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
