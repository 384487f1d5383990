"""The storage a process is configured for, and the links callers get to what it holds.

Links are minted on every read and never stored: an S3 link is pre-signed by the store; a
``file://`` link is a signed, expiring gateway URL when ``VIDGO_STEMS_PUBLIC_BASE_URL`` and
``VIDGO_STEMS_FILE_URL_SECRET`` are set, and otherwise a plain ``file://`` URI (good on the one
host that holds the folder, and nowhere else).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from vidgo_stems.errors import ConfigError, StorageError, StorageUnavailable
from vidgo_stems.files.signing import make_signer
from vidgo_stems.files.stems import StemFile
from vidgo_stems.files.storage import Storage, open_storage
from vidgo_stems.settings import Settings

MANIFEST_NAME = "manifest.json"
#: Under a job's folder: stems as Vidgo served them (until the job is done), and waveforms.
ORIGINALS = "original"
PEAKS = "peaks"


def file_root(settings: Settings) -> Path | None:
    """The folder of ``file://`` storage, or None for object storage."""
    parts = urlsplit(settings.storage_location)
    return Path(unquote(parts.path)) if parts.scheme == "file" else None


def open_configured_storage(settings: Settings) -> Storage:
    """The storage ``settings`` name, with the right signer for ``file://`` links."""
    return open_storage(settings.storage_location, url_signer=_file_signer(settings))


def _file_signer(settings: Settings) -> Callable[[str, int], str] | None:
    root = file_root(settings)
    if root is None:
        return None
    if settings.public_base_url and settings.file_url_secret is not None:
        secret = settings.file_url_secret.get_secret_value().encode()
        return make_signer(settings.public_base_url, secret)

    def local_uri(key: str, expires_s: int) -> str:
        return root.joinpath(*key.split("/")).as_uri()

    return local_uri


def job_key(job_id: str, name: str) -> str:
    """The storage key of one of a job's files."""
    return f"{job_id}/{name}"


def stem_links(storage: Storage, stems: Mapping[str, StemFile], ttl_s: int) -> dict[str, Any]:
    """Per stem: a fresh ``url`` plus what the ledger recorded (``sha256``, ``bytes``,
    ``content_type``); ``url`` is None when the link cannot be made right now."""
    return {
        name: {
            "url": link(storage, stem.key, ttl_s),
            "sha256": stem.sha256,
            "bytes": stem.bytes,
            "content_type": stem.content_type,
        }
        for name, stem in sorted(stems.items())
    }


def link(storage: Storage, key: str | None, ttl_s: int) -> str | None:
    """A fresh link to ``key``; None when there is no key or the store cannot sign now."""
    if not key:
        return None
    try:
        return storage.sign_url(key, expires_s=ttl_s)
    except (StorageError, StorageUnavailable, ConfigError):
        return None
