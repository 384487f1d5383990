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

Results go to a JSONL manifest (:mod:`vidgo_stems.batch.results`), one line per row, and to a
failure
report grouped by reason; the batch's record lives in Redis (:mod:`vidgo_stems.batch.store`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from vidgo_stems.batch.catalog import (
    CatalogCheck,
    CatalogRow,
    RowProblem,
    check_catalog,
    read_catalog,
)
from vidgo_stems.batch.results import (
    FINAL_STATES,
    INVALID,
    FailureReport,
    ManifestWriter,
    invalid_entry,
    manifest_entry,
    write_json_atomically,
)
from vidgo_stems.batch.store import BatchStore, job_states
from vidgo_stems.celery_app import Producer
from vidgo_stems.errors import BatchError, JobConflict
from vidgo_stems.models import validate_metadata
from vidgo_stems.pipeline.ledger import Ledger
from vidgo_stems.pipeline.record import NewJob, Subscription
from vidgo_stems.pipeline.states import JobState, Step, TaskName, new_token
from vidgo_stems.producer import Enqueued, enqueue_request
from vidgo_stems.urlsafety import source_policy

__all__ = ["INVALID", "BatchError", "BatchOptions", "BatchRunner", "Progress", "jobs_to_submit"]

log = logging.getLogger(__name__)

WATCH_SLICE = 2000  # jobs of the window looked at per look
EXPIRED_REASON = (
    "the job left the ledger (VIDGO_STEMS_JOB_RETENTION_S) before its result was read; "
    "its stems, if any, are in storage under <job_id>/"
)


@dataclass
class Progress:
    """A snapshot for the live view."""

    batch_id: str
    rows: int
    jobs: int
    rows_final: int = 0
    # Rows final without waiting on a job in this run: in the manifest when it started, rows of
    # jobs that had already ended when they were attached, invalid rows. Not in the rate.
    rows_final_at_once: int = 0
    by_state: Counter[str] = field(default_factory=Counter)  # rows, final and in flight
    started: float = field(default_factory=time.monotonic)
    fed: int = 0

    @property
    def failures(self) -> int:
        return sum(self.by_state[s] for s in FINAL_STATES if s != JobState.DONE.value)

    @property
    def rate(self) -> float:
        """Rows whose jobs ended during this run, per second of it."""
        elapsed = max(time.monotonic() - self.started, 1e-6)
        return (self.rows_final - self.rows_final_at_once) / elapsed

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
    # Rows whose jobs ended FAILED or CANCELLED run again (their jobs are retried).
    retry_failed: bool = False


class BatchRunner:
    """Runs one catalog to the end (or to a stop request), writing results as rows end."""

    def __init__(
        self,
        catalog: Path,
        manifest: Path,
        producer: Producer,
        options: BatchOptions,
        *,
        check: CatalogCheck | None = None,
        on_progress: Callable[[Progress], None] = lambda _: None,
        stop: threading.Event | None = None,
    ) -> None:
        self.catalog = catalog
        self.producer = producer
        self.ledger = producer.ledger
        self.options = options
        source = source_policy(producer.settings)
        self.check = check or check_catalog(catalog, producer.settings.json_limits, source)
        self.batch_id = self.check.batch_id
        self.store = BatchStore(self.ledger, self.batch_id)
        self.manifest = ManifestWriter(manifest, self.batch_id, retry_failed=options.retry_failed)
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
        self._ended_when_attached: set[str] = set()  # their rows are final at once

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
        self.progress.rows_final = self.progress.rows_final_at_once = len(self.manifest.written)
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
        settings = self.producer.settings
        for item in read_catalog(self.catalog, settings.json_limits, source_policy(settings)):
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
                    self._record(invalid_entry(self.batch_id, item), at_once=True)
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
        """Create the chunk's new jobs in pipelined bulk steps (each job created, subscribed
        and its submit message pushed in one script); jobs that already existed take the
        one-by-one path, which knows about ended, retried and full jobs."""
        firsts = list({row.job_id: row for row in reversed(rows)}.values())  # first row per job
        sub_id = f"batch-{self.batch_id}"  # one per job per batch: a resume does not add more
        new_jobs = []
        for row in firsts:
            token = new_token()
            metadata = validate_metadata(row.metadata) if row.metadata else None
            subscription = Subscription.new(sub_id=sub_id, metadata=metadata)
            step = Step(TaskName.SUBMIT, row.job_id, token)
            new_jobs.append(NewJob(row.job_id, row.request, token, subscription, step))
        found = self.ledger.enqueue_many(
            new_jobs, max_subscribers=self.producer.settings.max_subscribers_per_job
        )
        enqueued = [
            Enqueued(row.job_id, True, f.job.state, sub_id)
            for row, f in zip(firsts, found, strict=True)
            if f.created
        ]
        existing = [row for row, f in zip(firsts, found, strict=True) if not f.created]
        enqueued += list(pool.map(self._submit_one, existing))
        self.store.add_jobs([e.job_id for e in enqueued])
        self._ended_when_attached.update(
            e.job_id for e in enqueued if e.state.value in FINAL_STATES
        )
        self.progress.fed += len(enqueued)
        for row in rows:
            self.window.setdefault(row.job_id, []).append(row)

    def _submit_one(self, row: CatalogRow) -> Enqueued:
        try:
            return self._enqueue_row(row)
        except JobConflict:
            # Ended FAILED or CANCELLED (without --retry-failed), or full of subscribers: the
            # row re-attaches to the job as it is, and its result is recorded as such.
            job = self.ledger.get(row.job_id)
            return Enqueued(row.job_id, False, job.state if job else JobState.QUEUED)

    def _enqueue_row(self, row: CatalogRow) -> Enqueued:
        return enqueue_request(
            row.request,
            job_id=row.job_id,
            metadata=row.metadata or None,
            # One subscription per job per batch: a resumed batch does not subscribe again.
            subscription_id=f"batch-{self.batch_id}",
            retry_failed=self.options.retry_failed,
            producer=self.producer,
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
                at_once = job_id in self._ended_when_attached
                self._ended_when_attached.discard(job_id)
                for row in rows:
                    if job is None:  # expired between two looks: ask for a re-run
                        self._record(
                            invalid_entry(self.batch_id, RowProblem(row.line, EXPIRED_REASON)),
                            at_once=at_once,
                        )
                    else:
                        self._record(
                            manifest_entry(
                                self.batch_id,
                                row,
                                job,
                                self.producer.storage,
                                self.producer.settings.url_ttl_s,
                            ),
                            at_once=at_once,
                        )
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

    def _record(self, entry: dict[str, Any], *, at_once: bool = False) -> None:
        """Write a row's result; ``at_once`` when it was final without waiting in this run."""
        if self.manifest.write(entry):
            self.progress.rows_final += 1
            self.progress.rows_final_at_once += at_once
            self.progress.by_state[entry["state"]] += 1
            self.failures.add(entry)

    def _write_report(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_report < 5.0:
            return
        self._last_report = now
        write_json_atomically(self.report_path, self.failures.as_dict())


def jobs_to_submit(ledger: Ledger | None, job_ids: list[str], *, retry_failed: bool = False) -> int:
    """Jobs of a batch that may still need a Vidgo task: unknown to the ledger, still QUEUED,
    and with ``retry_failed`` those that ended FAILED or CANCELLED (an upper bound: a retry
    reuses what it can)."""
    if ledger is None:
        return len(job_ids)
    needing = {"EXPIRED", JobState.QUEUED.value}
    if retry_failed:
        needing |= {JobState.FAILED.value, JobState.CANCELLED.value}
    states = job_states(ledger, job_ids)
    return sum(1 for s in states.values() if s in needing)
