"""A batch's results on disk: the JSONL manifest, one line per row, and the failure report.

The manifest is appended as rows end (so a crash loses at most a line cut short, dropped on the
next open) and rewritten in catalog order, atomically, when the batch is complete.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vidgo_stems.batch.catalog import CatalogRow, RowProblem
from vidgo_stems.errors import BatchError
from vidgo_stems.files.links import link, stem_links
from vidgo_stems.files.scratch import atomic_writer, storage_error, write_json
from vidgo_stems.files.storage import Storage
from vidgo_stems.pipeline.record import JobRecord
from vidgo_stems.pipeline.states import JobState

INVALID = "INVALID"  # the manifest state of a catalog row that was skipped as bad
FINAL_STATES = (*(s.value for s in JobState if s.is_terminal), INVALID)
#: Rows that ``--retry-failed`` runs again.
RERUN_STATES = (JobState.FAILED.value, JobState.CANCELLED.value)


def manifest_entry(
    batch_id: str, row: CatalogRow, job: JobRecord, storage: Storage, ttl_s: int
) -> dict[str, Any]:
    """A finished row: its job's outcome, with links (valid ``ttl_s`` seconds) and the storage
    keys they point at (``vidgo-stems status JOB`` mints fresh links later)."""
    done = job.state is JobState.DONE
    files = job.outputs or job.stems
    stems = stem_links(storage, files, ttl_s) if done else {}
    for name, info in stems.items():
        info["key"] = files[name].key
    return {
        "batch_id": batch_id,
        "line": row.line,
        "row_id": row.row_id,
        "title": row.request.title,
        "audio_url": row.request.audio_url,
        "metadata": row.metadata,
        "job_id": job.job_id,
        "state": job.state.value,
        "stems": stems,
        "manifest_key": job.manifest_key if done else None,
        "manifest_url": link(storage, job.manifest_key, ttl_s) if done else None,
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
        "title": None,
        "audio_url": None,
        "metadata": {},
        "job_id": None,
        "state": INVALID,
        "stems": {},
        "manifest_key": None,
        "manifest_url": None,
        "vidgo_task_ids": [],
        "submit_attempts": 0,
        "polls": 0,
        "error_code": "invalid_row",
        "error_message": problem.reason,
    }


class ManifestWriter:
    """Appends one JSON line per finished row; on resume, knows which rows are already in."""

    def __init__(self, path: Path, batch_id: str, *, retry_failed: bool = False) -> None:
        self.path = path
        self.batch_id = batch_id
        #: Rows that ended FAILED or CANCELLED are dropped on open, so they run again.
        self.retry_failed = retry_failed
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
            if self.retry_failed and entry.get("state") in RERUN_STATES:
                continue
            self.written.add(int(entry["line"]))
            self.earlier.append(entry)
            kept.append(line)
        if lines[-1].strip() or len(kept) < len([c for c in complete if c.strip()]):
            with atomic_writer(self.path) as handle:
                handle.write("".join(k + "\n" for k in kept).encode())

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
        with atomic_writer(self.path) as handle:
            for entry in entries:
                handle.write(json.dumps(entry, sort_keys=True).encode() + b"\n")


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
    write_json(path, data)
