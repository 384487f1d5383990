"""Batch runs: drive a whole catalog through the pipeline with backpressure, resume and results.

A batch is its catalog's content (``batch_id_of``): running the same command on the same file
re-attaches to the same batch. The driver reads the catalog as a stream and keeps at most
``window`` of its jobs between enqueue and end; it feeds the next row only when one ends. So
Redis holds a bounded number of this batch's messages, and workers a bounded number of
countdowns, however large the catalog.

Nothing here can pay twice: a row is enqueued through the ledger, where the job id is the
request's fingerprint, so a row whose job exists (finished, or still running from an earlier,
interrupted run) is re-attached, never submitted again. Ctrl-C stops feeding at the next row
boundary and leaves the ledger, the manifest and the jobs in flight consistent.

Results go to a JSONL manifest, one line per row (``line``, ``row_id``, ``job_id``, ``state``,
stems with paths and checksums, attempts, error code and message), appended as rows end and
re-sorted by line when the batch is complete, and to a failure report grouped by reason.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from worker.batch.catalog import CatalogCheck, CatalogRow, RowProblem, check_catalog, read_catalog
from worker.files.scratch import storage_error
from worker.pipeline.ledger import JobRecord, JobState, Ledger
from worker.settings import Settings
from worker.web.api import Enqueued, submit_job
from worker.web.webhooks import event_for

log = logging.getLogger(__name__)

INVALID = "INVALID"  # the manifest state of a catalog row that was skipped as bad
WATCH_SLICE = 2000  # jobs of the window looked at per look
EXPIRED_REASON = (
    "the job left the ledger (VIDGO_STEMS_JOB_RETENTION_S) before its result was read; "
    "its stems, if any, are under STEMS_DIR/<job_id>"
)
FINAL_STATES = (*(s.value for s in JobState if s.is_terminal), INVALID)


class BatchError(Exception):
    """Raised when a batch cannot run as asked (bad rows with --bad-rows stop, a foreign
    manifest); the message says what to do."""


# -- the batch in Redis --------------------------------------------------------------------
class BatchStore:
    """The batch's record in Redis: what it is, and every job it has fed (for batch-status)."""

    def __init__(self, ledger: Ledger, batch_id: str) -> None:
        self.ledger = ledger
        self.batch_id = batch_id
        self.key = ledger.job_key("").replace(":job:", f":batch:{batch_id}")
        self.jobs_key = f"{self.key}:jobs"

    def save(self, **fields: Any) -> None:
        redis = self.ledger.redis
        redis.hset(self.key, mapping={k: json.dumps(v) for k, v in fields.items()})
        redis.expire(self.key, self.ledger.retention_s)

    def add_jobs(self, job_ids: list[str]) -> None:
        pipe = self.ledger.redis.pipeline(transaction=False)
        pipe.sadd(self.jobs_key, *job_ids)
        pipe.expire(self.jobs_key, self.ledger.retention_s)
        pipe.execute()

    def info(self) -> dict[str, Any]:
        raw = cast(dict[bytes, bytes], self.ledger.redis.hgetall(self.key))
        return {k.decode(): json.loads(v) for k, v in raw.items()}

    def job_ids(self) -> list[str]:
        members = cast(set[bytes], self.ledger.redis.smembers(self.jobs_key))
        return sorted(m.decode() for m in members)


def job_states(ledger: Ledger, job_ids: list[str]) -> dict[str, str]:
    """Current state per job id ("EXPIRED" when the ledger no longer has it), in one pipeline."""
    states: dict[str, str] = {}
    for start in range(0, len(job_ids), 2000):
        chunk = job_ids[start : start + 2000]
        pipe = ledger.redis.pipeline(transaction=False)
        for job_id in chunk:
            pipe.hget(ledger.job_key(job_id), "state")
        for job_id, state in zip(chunk, pipe.execute(), strict=True):
            states[job_id] = state.decode() if state is not None else "EXPIRED"
    return states


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
            code = cast(bytes | None, ledger.redis.hget(ledger.job_key(job_id), "error_code"))
            failures[json.loads(code) if code else "unknown"] += 1
    return BatchView(batch_id, info, dict(Counter(states.values())), dict(failures))


# -- results on disk -----------------------------------------------------------------------
def manifest_entry(batch_id: str, row: CatalogRow, job: JobRecord) -> dict[str, Any]:
    data = event_for(job)["data"]
    return {
        "batch_id": batch_id,
        "line": row.line,
        "row_id": row.row_id,
        "job_id": job.job_id,
        "state": job.state.value,
        "stems": data["stems"],
        "manifest_path": job.manifest_path,
        "vidgo_task_ids": list(job.vidgo_task_ids),
        "submit_attempts": job.submit_attempts,
        "polls": job.polls,
        "error_code": job.error_code,
        "error_message": job.error_message,
    }


def invalid_entry(batch_id: str, problem: RowProblem) -> dict[str, Any]:
    return {
        "batch_id": batch_id,
        "line": problem.line,
        "row_id": None,
        "job_id": None,
        "state": INVALID,
        "stems": {},
        "manifest_path": None,
        "vidgo_task_ids": [],
        "submit_attempts": 0,
        "polls": 0,
        "error_code": "invalid_row",
        "error_message": problem.reason,
    }


class ManifestWriter:
    """Appends one JSON line per finished row; on resume, knows which rows are already in."""

    def __init__(self, path: Path, batch_id: str) -> None:
        self.path = path
        self.batch_id = batch_id
        self.written: set[int] = set()
        self.earlier: list[dict[str, Any]] = []  # entries already in the file when opened
        self._handle: Any = None

    def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.exists():
                self._load()
            self._handle = self.path.open("a", encoding="utf-8")
        except OSError as exc:
            raise storage_error(exc, self.path) from None

    def _load(self) -> None:
        """Read the rows already written, dropping a last line cut short by a crash."""
        text = self.path.read_text(encoding="utf-8")
        lines = text.split("\n")
        complete = lines[:-1]  # what follows the last newline was cut short, or is empty
        kept: list[str] = []
        for line in complete:
            if not line.strip():
                continue
            entry = json.loads(line)
            if entry.get("batch_id") != self.batch_id:
                raise BatchError(
                    f"{self.path} holds results of batch {entry.get('batch_id')}, not of this "
                    f"catalog ({self.batch_id}): give another --manifest path"
                )
            self.written.add(int(entry["line"]))
            self.earlier.append(entry)
            kept.append(line)
        if lines[-1].strip():
            self.path.write_text("".join(k + "\n" for k in kept), encoding="utf-8")

    def write(self, entry: dict[str, Any]) -> bool:
        """Append the row's result unless it is in already; True when written."""
        if entry["line"] in self.written:
            return False
        try:
            self._handle.write(json.dumps(entry, sort_keys=True) + "\n")
            self._handle.flush()
        except OSError as exc:
            raise storage_error(exc, self.path) from None
        self.written.add(int(entry["line"]))
        return True

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def finalise(self) -> None:
        """Rewrite the manifest in catalog order, atomically."""
        self.close()
        entries = [json.loads(line) for line in self.path.read_text().splitlines() if line]
        entries.sort(key=lambda e: e["line"])
        temp = self.path.with_name(self.path.name + ".tmp")
        try:
            with temp.open("w", encoding="utf-8") as handle:
                for entry in entries:
                    handle.write(json.dumps(entry, sort_keys=True) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, self.path)
        except OSError as exc:
            raise storage_error(exc, self.path) from None


class FailureReport:
    """Failed, cancelled and invalid rows grouped by reason, kept up to date as rows end."""

    def __init__(self, batch_id: str) -> None:
        self.batch_id = batch_id
        self.groups: dict[str, dict[str, Any]] = {}
        self.total = 0

    def add(self, entry: dict[str, Any]) -> None:
        if entry["state"] == JobState.DONE.value:
            return
        self.total += 1
        group = self.groups.setdefault(
            entry["error_code"] or "unknown",
            {"count": 0, "example": entry["error_message"], "rows": []},
        )
        group["count"] += 1
        if len(group["rows"]) < 100:
            group["rows"].append({"line": entry["line"], "row_id": entry["row_id"]})

    def as_dict(self) -> dict[str, Any]:
        ordered = dict(sorted(self.groups.items(), key=lambda kv: -int(kv[1]["count"])))
        return {"batch_id": self.batch_id, "failed_rows": self.total, "by_reason": ordered}


def write_json_atomically(path: Path, data: Any) -> None:
    temp = path.with_name(path.name + ".tmp")
    try:
        temp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        os.replace(temp, path)
    except OSError as exc:
        raise storage_error(exc, path) from None


# -- the driver ----------------------------------------------------------------------------
@dataclass
class Progress:
    """A snapshot for the live view."""

    batch_id: str
    rows: int
    jobs: int
    rows_final: int = 0
    rows_final_before: int = 0  # already in the manifest when this run started
    by_state: Counter[str] = field(default_factory=Counter)  # rows, final and in flight
    started: float = field(default_factory=time.monotonic)
    fed: int = 0

    @property
    def failures(self) -> int:
        return sum(self.by_state[s] for s in FINAL_STATES if s != JobState.DONE.value)

    @property
    def rate(self) -> float:
        """Rows finished per second in this run."""
        elapsed = max(time.monotonic() - self.started, 1e-6)
        return (self.rows_final - self.rows_final_before) / elapsed

    @property
    def eta_s(self) -> float | None:
        left = self.rows - self.rows_final
        return left / self.rate if self.rate > 0 else None


@dataclass
class BatchOptions:
    window: int = 500
    bad_rows: Literal["stop", "skip"] = "stop"
    check_interval_s: float = 0.5
    # New jobs are enqueued in chunks, each by a few threads: enqueueing is round trips to
    # Redis, so threads overlap them.
    chunk: int = 64
    threads: int = 4


class BatchRunner:
    """Runs one catalog to the end (or to a stop request), writing results as rows end."""

    def __init__(
        self,
        catalog: Path,
        manifest: Path,
        ledger: Ledger,
        settings: Settings,
        options: BatchOptions,
        *,
        check: CatalogCheck | None = None,
        on_progress: Callable[[Progress], None] = lambda _: None,
        stop: threading.Event | None = None,
    ) -> None:
        self.catalog = catalog
        self.ledger = ledger
        self.settings = settings
        self.options = options
        self.check = check or check_catalog(catalog)
        self.batch_id = self.check.batch_id
        self.store = BatchStore(ledger, self.batch_id)
        self.manifest = ManifestWriter(manifest, self.batch_id)
        self.report_path = manifest.with_name(manifest.stem + ".failures.json")
        self.on_progress = on_progress
        self.stop = stop or threading.Event()
        self.window: dict[str, list[CatalogRow]] = {}
        self.progress = Progress(self.batch_id, self.check.rows, self.check.jobs)
        self.failures = FailureReport(self.batch_id)
        self._last_report = 0.0
        self._last_watch = 0.0
        self._cursor = 0
        self._in_flight: dict[str, str] = {}  # last state seen per job of the window

    def run(self) -> Progress:
        """Feed, watch and record until every row has a final result or a stop is asked for."""
        if self.check.problems and self.options.bad_rows == "stop":
            shown = "; ".join(str(p) for p in self.check.problems[:20])
            more = len(self.check.problems) - 20
            raise BatchError(
                f"{len(self.check.problems)} bad row(s) in {self.catalog}: {shown}"
                + (f" (and {more} more)" if more > 0 else "")
                + "; fix them, or pass --bad-rows skip to run the good rows"
            )
        self.manifest.open()
        self.progress.rows_final = self.progress.rows_final_before = len(self.manifest.written)
        self._count_existing()
        self.store.save(
            catalog=str(self.catalog),
            manifest=str(self.manifest.path),
            rows=self.check.rows,
            valid_rows=self.check.valid,
            jobs=self.check.jobs,
            bad_rows=len(self.check.problems),
            status="running",
            started_at=time.time(),
        )
        try:
            self._feed()
            self._drain()
        finally:
            self.manifest.close()
            complete = self.progress.rows_final >= self.check.rows
            if complete:
                self.manifest.finalise()
            self._write_report(force=True)
            self.store.save(
                status="complete" if complete else "interrupted",
                finished_at=time.time(),
                rows_final=self.progress.rows_final,
            )
            self.on_progress(self.progress)
        return self.progress

    def _count_existing(self) -> None:
        for entry in self.manifest.earlier:
            self.progress.by_state[entry["state"]] += 1
            self.failures.add(entry)

    def _rows(self) -> Iterator[CatalogRow | RowProblem]:
        bad_lines = {p.line for p in self.check.problems}
        for item in read_catalog(self.catalog):
            if item.line in bad_lines and isinstance(item, CatalogRow):
                # A row the full check refused (an id reused for other content).
                reason = next(p for p in self.check.problems if p.line == item.line).reason
                yield RowProblem(item.line, reason)
            else:
                yield item

    def _feed(self) -> None:
        pending: list[CatalogRow] = []  # rows of new jobs, enqueued a chunk at a time
        with ThreadPoolExecutor(self.options.threads, thread_name_prefix="batch-feed") as pool:
            for item in self._rows():
                if self.stop.is_set():
                    break
                if item.line in self.manifest.written:
                    continue
                if isinstance(item, RowProblem):
                    self._record(invalid_entry(self.batch_id, item))
                    continue
                if item.job_id in self.window:
                    self.window[item.job_id].append(item)
                    continue
                if any(p.job_id == item.job_id for p in pending):
                    pending.append(item)  # the same job again: it rides with the first row
                    continue
                pending.append(item)
                if len({p.job_id for p in pending}) >= self._room():
                    self._enqueue(pool, pending)
                    pending = []
                    self._wait_for_room()
            if pending and not self.stop.is_set():
                self._enqueue(pool, pending)

    def _room(self) -> int:
        return max(1, min(self.options.chunk, self.options.window - len(self.window)))

    def _wait_for_room(self) -> None:
        self._watch(throttle=True)
        while len(self.window) >= self.options.window and not self.stop.is_set():
            self.stop.wait(self.options.check_interval_s)
            self._watch()

    def _enqueue(self, pool: ThreadPoolExecutor, rows: list[CatalogRow]) -> None:
        firsts = {row.job_id: row for row in reversed(rows)}  # the first row of each job
        enqueued = list(pool.map(self._submit_one, firsts.values()))
        self.store.add_jobs([e.job_id for e in enqueued])
        self.progress.fed += len(enqueued)
        for row in rows:
            self.window.setdefault(row.job_id, []).append(row)

    def _submit_one(self, row: CatalogRow) -> Enqueued:
        return submit_job(
            row.request,
            job_id=row.job_id,
            metadata=row.metadata or None,
            ledger=self.ledger,
            settings=self.settings,
        )

    def _watch(self, *, throttle: bool = False) -> None:
        """Record every job of the window that has ended; refresh the live counts."""
        now = time.monotonic()
        if throttle and now - self._last_watch < self.options.check_interval_s:
            return
        self._last_watch = now
        ids = self._next_slice()
        states = job_states(self.ledger, ids)
        for job_id in ids:
            state = states[job_id]
            rows = self.window[job_id]
            if state in FINAL_STATES or state == "EXPIRED":
                job = self.ledger.get(job_id)
                del self.window[job_id]
                for row in rows:
                    if job is None:  # expired between two looks: ask for a re-run
                        self._record(
                            invalid_entry(self.batch_id, RowProblem(row.line, EXPIRED_REASON))
                        )
                    else:
                        self._record(manifest_entry(self.batch_id, row, job))
        self._in_flight.update({j: states[j] for j in ids if j in self.window})
        for job_id in [j for j in ids if j not in self.window]:
            self._in_flight.pop(job_id, None)
        counts: Counter[str] = Counter()
        for job_id, state in self._in_flight.items():
            counts[state] += len(self.window.get(job_id, ()))
        for state in JobState:
            if not state.is_terminal:
                self.progress.by_state[state.value] = counts[state.value]
        self._write_report()
        self.on_progress(self.progress)

    def _next_slice(self) -> list[str]:
        """The next WATCH_SLICE jobs of the window, round robin: each look costs the same
        however large the window is."""
        ids = list(self.window)
        if len(ids) <= WATCH_SLICE:
            return ids
        if self._cursor >= len(ids):
            self._cursor = 0
        chosen = ids[self._cursor : self._cursor + WATCH_SLICE]
        self._cursor += WATCH_SLICE
        return chosen

    def _drain(self) -> None:
        while self.window and not self.stop.is_set():
            self._watch()
            if self.window:
                self.stop.wait(self.options.check_interval_s)

    def _record(self, entry: dict[str, Any]) -> None:
        if self.manifest.write(entry):
            self.progress.rows_final += 1
            self.progress.by_state[entry["state"]] += 1
            self.failures.add(entry)

    def _write_report(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_report < 5.0:
            return
        self._last_report = now
        write_json_atomically(self.report_path, self.failures.as_dict())


def jobs_to_submit(ledger: Ledger | None, job_ids: list[str]) -> int:
    """Jobs of a batch that still need a Vidgo task: unknown to the ledger, or still QUEUED."""
    if ledger is None:
        return len(job_ids)
    states = job_states(ledger, job_ids)
    return sum(1 for s in states.values() if s in ("EXPIRED", JobState.QUEUED.value))
