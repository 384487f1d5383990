"""Worker liveness: the heartbeat file each worker host writes (its container health check reads
it) and the registry of workers seen in Redis (a sorted set of hostnames by last beat), which
the gateway, ``vidgo-stems stats`` and the cluster metrics read."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, cast

import redis

from vidgo_stems.keys import Keys, text

log = logging.getLogger(__name__)

#: Workers write a heartbeat this often; one unseen for WORKER_SEEN_S counts as gone.
HEARTBEAT_INTERVAL_S = 10.0
WORKER_SEEN_S = 3 * HEARTBEAT_INTERVAL_S


def write_heartbeat(path: Path, *, redis_ok: bool) -> None:
    """Replace the heartbeat file atomically: when, and whether Redis answered."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps({"at": time.time(), "redis": redis_ok}))
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("cannot write the heartbeat file %s: %s", path, exc.strerror or exc)


def read_heartbeat(path: Path) -> dict[str, Any] | None:
    """The last heartbeat, or None when there is none (or it is unreadable)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def workers_key(prefix: str) -> str:
    return Keys(prefix).workers


def beat(client: redis.Redis, prefix: str, hostname: str) -> None:
    """Record that ``hostname`` is alive now, and forget workers gone for a long time."""
    now = time.time()
    pipe = client.pipeline()
    pipe.zadd(workers_key(prefix), {hostname: now})
    pipe.zremrangebyscore(workers_key(prefix), "-inf", now - 100 * WORKER_SEEN_S)
    pipe.execute()


def workers_seen(client: redis.Redis, prefix: str, *, within_s: float = WORKER_SEEN_S) -> list[str]:
    """Hostnames of workers that wrote a heartbeat in the last ``within_s`` seconds."""
    names = cast(
        list[Any], client.zrangebyscore(workers_key(prefix), time.time() - within_s, "+inf")
    )
    return sorted(text(n) for n in names)
