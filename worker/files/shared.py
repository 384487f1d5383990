"""Is this host's storage the one every other worker uses? Checked once when a worker starts.

Stages run on any host, so a worker whose ``file://`` folder is not the folder the others
write (a local disk where a shared mount was meant) would fail every job it touches. The first
worker to start writes a random identity both into the storage (``_vidgo-stems/storage-id``) and
into Redis; every later worker reads the one in its storage and compares. A mismatch, or a
storage without the identity while Redis has one, refuses the start with one line saying what
to set. Object storage passes trivially: every host reaches the same bucket.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

import redis

from vidgo_stems.errors import ConfigError
from vidgo_stems.files.storage import Storage
from vidgo_stems.keys import Keys

log = logging.getLogger(__name__)

MARKER_KEY = "_vidgo-stems/storage-id"


def check_shared_storage(storage: Storage, client: redis.Redis, keys: Keys) -> str:
    """The storage identity every worker shares; raises ConfigError when this host's storage
    is not the one the others use."""
    marker = _text(storage.read_bytes(MARKER_KEY))
    known = _text(client.get(keys.storage_id))
    if known is None:
        # The first worker ever: Redis decides whose identity wins, then the winner marks the
        # storage. A worker that lost the race finds the winner's mark if it shares the storage.
        candidate = marker or "sid-" + secrets.token_hex(12)
        won = bool(client.set(keys.storage_id, candidate, nx=True))
        known = _text(client.get(keys.storage_id))
        if won and marker is None:
            _mark(storage, client, keys, candidate)
        marker = _text(storage.read_bytes(MARKER_KEY))
    if marker != known:
        _refuse_missing_folder(storage)
        raise ConfigError(
            f"refusing to start: the storage at {storage.url} is not the storage the other "
            "workers use (its identity does not match the one in Redis), so post-processing "
            "here would not find stems downloaded elsewhere. Give every worker the same "
            "storage: VIDGO_STEMS_STORAGE_URL=s3://bucket/prefix, or file:// on a folder all "
            f"worker hosts mount (after moving storage on purpose, delete {keys.storage_id})"
        )
    log.info("storage %s is shared (identity %s)", storage.url, marker)
    return str(marker)


def _mark(storage: Storage, client: redis.Redis, keys: Keys, identity: str) -> None:
    """Write the identity this worker just claimed into the storage; if that fails (a folder
    that cannot be made, no permission), take the claim back, so that the next worker with a
    working storage is not refused for a storage that never held it."""
    try:
        storage.put_bytes(MARKER_KEY, identity.encode(), content_type="text/plain")
    except Exception:
        if _text(client.get(keys.storage_id)) == identity:
            client.delete(keys.storage_id)
        raise


def _refuse_missing_folder(storage: Storage) -> None:
    """A ``file://`` storage whose folder does not exist is named as such, not as foreign."""
    root = getattr(storage, "root", None)
    if isinstance(root, Path) and not root.is_dir():
        raise ConfigError(
            f"refusing to start: the storage folder {root} does not exist (or is not a folder). "
            "Mount the folder the other workers share there, or set VIDGO_STEMS_STORAGE_URL "
            "(or STEMS_DIR) to it"
        )


def _text(value: object) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)
