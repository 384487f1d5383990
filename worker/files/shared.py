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

import redis

from worker.errors import ConfigError
from worker.files.storage import Storage
from worker.keys import Keys

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
            storage.put_bytes(MARKER_KEY, candidate.encode(), content_type="text/plain")
        marker = _text(storage.read_bytes(MARKER_KEY))
    if marker != known:
        raise ConfigError(
            f"refusing to start: the storage at {storage.url} is not the storage the other "
            "workers use (its identity does not match the one in Redis), so post-processing "
            "here would not find stems downloaded elsewhere. Give every worker the same "
            "storage: VIDGO_STEMS_STORAGE_URL=s3://bucket/prefix, or file:// on a folder all "
            f"worker hosts mount (after moving storage on purpose, delete {keys.storage_id})"
        )
    log.info("storage %s is shared (identity %s)", storage.url, marker)
    return str(marker)


def _text(value: object) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)
