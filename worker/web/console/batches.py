"""Batches as the console shows them: progress, this run's rate and ETA, failures, credits.

Batches are listed from the index that :class:`vidgo_stems.batch.store.BatchStore` keeps (newest
first). A batch's figures read its jobs' state, end time and Vidgo tasks in pipelined chunks
(as ``vidgo-stems batch-status`` does), so they cost one round trip per thousand jobs and
constant memory; they are kept for a few seconds so that a live page does not read them again
on every refresh.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

from vidgo_stems.batch.store import BatchStore
from vidgo_stems.keys import text
from vidgo_stems.pipeline.ledger import Ledger
from vidgo_stems.pipeline.states import JobState
from vidgo_stems.web.console.figures import CHUNK

#: Batches the console lists at most.
LISTED = 50
#: How long a batch's figures are reused.
FRESH_S = 3.0
_ENDED = {s.value for s in JobState if s.is_terminal}
_FAILED = {JobState.FAILED.value, JobState.CANCELLED.value}
_UNPAID = {JobState.QUEUED.value, JobState.SUBMITTING.value}


@dataclass
class BatchFigures:
    """One batch at a glance."""

    batch_id: str
    status: str
    catalog: str
    rows: int
    jobs: int
    by_state: dict[str, int] = field(default_factory=dict)
    ended: int = 0
    failed: int = 0
    rate_per_min: float = 0.0
    eta_s: float | None = None
    credits_spent: float = 0.0
    credits_to_go: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    has_manifest: bool = False
    has_report: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Batches:
    """Reads batch figures, reusing each for FRESH_S seconds."""

    def __init__(self, ledger: Ledger, credits_per_task: float) -> None:
        self.ledger = ledger
        self.credits_per_task = credits_per_task
        self._cache: dict[str, tuple[float, BatchFigures]] = {}
        self._lock = threading.Lock()

    def listed(self) -> list[BatchFigures]:
        """The newest batches, newest first; ids whose record has expired leave the index."""
        index = self.ledger.keys.batches
        ids = [text(m) for m in cast(list[Any], self.ledger.redis.zrevrange(index, 0, LISTED - 1))]
        found = []
        for batch_id in ids:
            figures = self.get(batch_id)
            if figures is None:
                self.ledger.redis.zrem(index, batch_id)
            else:
                found.append(figures)
        return found

    def get(self, batch_id: str) -> BatchFigures | None:
        """One batch's figures, or None when there is no such batch."""
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(batch_id)
        if cached and now - cached[0] < FRESH_S:
            return cached[1]
        figures = self._read(batch_id)
        with self._lock:
            if len(self._cache) > 4 * LISTED:
                self._cache.clear()
            if figures is not None:
                self._cache[batch_id] = (now, figures)
        return figures

    def files(self, batch_id: str) -> dict[str, Path]:
        """The batch's manifest and failure report, where this machine can read them."""
        info = BatchStore(self.ledger, batch_id).info()
        manifest = info.get("manifest")
        if not isinstance(manifest, str):
            return {}
        path = Path(manifest)
        return {"manifest": path, "report": path.with_name(path.stem + ".failures.json")}

    def _read(self, batch_id: str) -> BatchFigures | None:
        store = BatchStore(self.ledger, batch_id)
        info = store.info()
        if not info:
            return None
        figures = BatchFigures(
            batch_id=batch_id,
            status=str(info.get("status", "")),
            catalog=Path(str(info.get("catalog", ""))).name,
            rows=int(info.get("rows") or 0),
            jobs=int(info.get("jobs") or 0),
            started_at=info.get("started_at"),
            finished_at=info.get("finished_at"),
        )
        self._count(store.jobs_key, figures)
        files = self.files(batch_id)
        figures.has_manifest = bool(files) and files["manifest"].is_file()
        figures.has_report = bool(files) and files["report"].is_file()
        return figures

    def _count(self, jobs_key: str, figures: BatchFigures) -> None:
        """Fill in the figures that need the batch's jobs, a chunk at a time."""
        states: Counter[str] = Counter()
        tasks = ended_this_run = 0
        started = figures.started_at or 0.0
        offset = 0
        while True:
            ids = cast(list[Any], self.ledger.redis.zrange(jobs_key, offset, offset + CHUNK - 1))
            for state, updated_at, task_ids in self._jobs([text(i) for i in ids]):
                states[state] += 1
                tasks += task_ids
                ended_this_run += state in _ENDED and updated_at >= started
            if len(ids) < CHUNK:
                break
            offset += CHUNK
        figures.by_state = dict(states)
        figures.ended = sum(states[s] for s in _ENDED)
        figures.failed = sum(states[s] for s in _FAILED)
        figures.credits_spent = tasks * self.credits_per_task
        figures.credits_to_go = sum(states[s] for s in _UNPAID) * self.credits_per_task
        self._rate(figures, ended_this_run, sum(states.values()))

    def _rate(self, figures: BatchFigures, ended_this_run: int, fed: int) -> None:
        if not figures.started_at:
            return
        until = figures.finished_at if figures.status != "running" else None
        elapsed_s = max(1.0, (until or time.time()) - figures.started_at)
        figures.rate_per_min = round(ended_this_run * 60 / elapsed_s, 2)
        left = max(figures.jobs, fed) - figures.ended
        if figures.status == "running" and figures.rate_per_min > 0:
            figures.eta_s = round(left * 60 / figures.rate_per_min, 1)

    def _jobs(self, ids: list[str]) -> list[tuple[str, float, int]]:
        """(state, last update, Vidgo tasks paid) of each job; EXPIRED for those gone."""
        pipe = self.ledger.redis.pipeline(transaction=False)
        for job_id in ids:
            pipe.hmget(self.ledger.keys.job(job_id), ["state", "updated_at", "vidgo_task_ids"])
        rows = []
        for state, updated_at, task_ids in pipe.execute():
            if state is None:
                rows.append(("EXPIRED", 0.0, 0))
                continue
            paid = text(task_ids).count('"') // 2 if task_ids else 0
            rows.append((text(state), float(text(updated_at or b"0")), paid))
        return rows
