"""Job search for the console: the ledger's listing, filtered further, a page at a time.

A job id is looked up directly. Otherwise the page walks the index that
:func:`vidgo_stems.pipeline.listing.list_jobs` picks (a batch, a state, or every job by creation
time, from ``since`` on) and keeps the jobs whose error code and title match. Each request
looks at no more than SCAN_BUDGET jobs: when the filters match rarely, a page comes back
short with a cursor to go on from, so no request ever walks a million jobs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vidgo_stems.errors import InvalidRequest
from vidgo_stems.pipeline.ledger import Ledger
from vidgo_stems.pipeline.listing import list_jobs
from vidgo_stems.pipeline.record import JobRecord
from vidgo_stems.pipeline.states import STATES, JobState

PAGE = 50
#: Jobs looked at per request at most.
SCAN_BUDGET = 2000


@dataclass(frozen=True)
class Query:
    """What the operator searches for; every field given must match."""

    state: JobState | None = None
    batch: str | None = None
    code: str | None = None
    since: str | None = None
    job_id: str | None = None
    title: str | None = None
    cursor: str | None = None

    @classmethod
    def parse(cls, params: dict[str, str]) -> Query:
        values = {k: v.strip() for k, v in params.items() if v and v.strip()}
        state = values.get("state", "").upper()
        if state and state not in JobState.__members__:
            allowed = ", ".join(s.value for s in JobState)
            raise InvalidRequest(f"state must be one of {allowed}")
        return cls(
            state=JobState(state) if state else None,
            batch=values.get("batch"),
            code=values.get("code"),
            since=values.get("since"),
            job_id=values.get("job_id"),
            title=values.get("title"),
            cursor=values.get("cursor"),
        )


def search(ledger: Ledger, query: Query) -> dict[str, Any]:
    """One page of jobs matching ``query``: rows, the next cursor, and how many were read."""
    if query.job_id:
        job = ledger.get(query.job_id) if query.job_id.isprintable() else None
        return {"jobs": [row(job)] if job else [], "next_cursor": None, "scanned": 1}
    state = query.state
    if state is None and query.code:
        state = JobState.CANCELLED if query.code == "cancelled" else JobState.FAILED
    title = (query.title or "").casefold()
    found: list[dict[str, Any]] = []
    cursor, scanned = query.cursor, 0
    while len(found) < PAGE and scanned < SCAN_BUDGET:
        # Ask for no more than still fits, so the cursor never skips a match.
        want = min(PAGE - len(found), SCAN_BUDGET - scanned)
        page = list_jobs(
            ledger, state=state, batch=query.batch, since=query.since, cursor=cursor, limit=want
        )
        scanned += want
        found += [row(job) for job in page.jobs if _matches(job, query.code, title)]
        cursor = page.next_cursor
        if cursor is None:
            break
    return {"jobs": found, "next_cursor": cursor, "scanned": scanned}


def _matches(job: JobRecord, code: str | None, title: str) -> bool:
    if code and job.error_code != code:
        return False
    return not title or title in (job.request.title or "").casefold()


def row(job: JobRecord) -> dict[str, Any]:
    """A job as a line of the search results."""
    return {
        "job_id": job.job_id,
        "state": job.state.value,
        "stage": STATES[job.state].stage,
        "title": job.request.title,
        "error_code": job.error_code,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "vidgo_task_ids": list(job.vidgo_task_ids),
    }
