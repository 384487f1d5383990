"""A batch's record in Redis, and the view of a batch that any machine can read.

The record (``<prefix>:batch:<id>``) says what the batch is and how far its last run got; the
set beside it holds every job the batch fed, so ``vidgo-stems batch-status`` works from any
host while the run goes on elsewhere.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, cast

from vidgo_stems.keys import text
from vidgo_stems.pipeline.ledger import Ledger
from vidgo_stems.pipeline.states import JobState


class BatchStore:
    """The batch's record in Redis: what it is, and every job it has fed (for batch-status)."""

    def __init__(self, ledger: Ledger, batch_id: str) -> None:
        self.ledger = ledger
        self.batch_id = batch_id
        self._redis = ledger.redis
        self._retention_s = ledger.retention_s
        self.key = ledger.keys.batch(batch_id)
        self.jobs_key = ledger.keys.batch_jobs(batch_id)

    def save(self, **fields: Any) -> None:
        self._redis.hset(self.key, mapping={k: json.dumps(v) for k, v in fields.items()})
        self._redis.expire(self.key, self._retention_s)

    def add_jobs(self, job_ids: list[str]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        now = time.time()
        # NX: a job keeps the place it was first fed at, so listing a batch is stable.
        pipe.zadd(self.jobs_key, dict.fromkeys(job_ids, now), nx=True)
        pipe.expire(self.jobs_key, self._retention_s)
        pipe.execute()

    def info(self) -> dict[str, Any]:
        raw = cast(dict[bytes, bytes], self._redis.hgetall(self.key))
        return {k.decode(): json.loads(v) for k, v in raw.items()}

    def job_ids(self) -> list[str]:
        members = cast(list[bytes], self._redis.zrange(self.jobs_key, 0, -1))
        return sorted(m.decode() for m in members)


def job_states(ledger: Ledger, job_ids: list[str]) -> dict[str, str]:
    """Current state per job id ("EXPIRED" when the ledger no longer has it), in one pipeline."""
    return {j: s or "EXPIRED" for j, s in _ledger_states(ledger, job_ids).items()}


@dataclass
class BatchView:
    """The same view of a batch from any machine: its record plus its jobs' states now."""

    batch_id: str
    info: dict[str, Any]
    jobs_by_state: dict[str, int]
    failures: dict[str, int]

    @property
    def jobs_fed(self) -> int:
        return sum(self.jobs_by_state.values())


def batch_view(ledger: Ledger, batch_id: str) -> BatchView | None:
    store = BatchStore(ledger, batch_id)
    info = store.info()
    if not info:
        return None
    ids = store.job_ids()
    states = job_states(ledger, ids)
    failures: Counter[str] = Counter()
    for job_id, state in states.items():
        if state in (JobState.FAILED.value, JobState.CANCELLED.value):
            failures[error_code(ledger, job_id) or "unknown"] += 1
    return BatchView(batch_id, info, dict(Counter(states.values())), dict(failures))


def _ledger_states(
    ledger: Ledger, job_ids: list[str], *, chunk: int = 2000
) -> dict[str, str | None]:
    """Current state per job id (None when the ledger no longer has it), pipelined."""
    states: dict[str, str | None] = {}
    for start in range(0, len(job_ids), chunk):
        part = job_ids[start : start + chunk]
        pipe = ledger.redis.pipeline(transaction=False)
        for job_id in part:
            pipe.hget(ledger.keys.job(job_id), "state")
        for job_id, state in zip(part, pipe.execute(), strict=True):
            states[job_id] = text(state) if state is not None else None
    return states


def error_code(ledger: Ledger, job_id: str) -> str | None:
    raw = cast(bytes | None, ledger.redis.hget(ledger.keys.job(job_id), "error_code"))
    return cast(str, json.loads(raw)) if raw else None
