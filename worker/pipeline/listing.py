"""Listing jobs by state, by batch and by time, a page at a time, from indexes the ledger keeps.

The ledger keeps one sorted set of job keys per state and one of all jobs, each scored by the
job's creation time and moved in the same Lua step as the job itself; a batch keeps a sorted
set of the job ids it fed. A page walks one of them in score order from a cursor (the last
score and member seen), so a job that exists from the first page to the last is listed
exactly once, and no page ever scans the keyspace.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from vidgo_stems.errors import InvalidRequest, shown
from vidgo_stems.keys import text
from vidgo_stems.pipeline.ledger import Ledger
from vidgo_stems.pipeline.record import JobRecord
from vidgo_stems.pipeline.states import JobState

MAX_LIMIT = 1000
_CHUNK = 200


@dataclass(frozen=True)
class Page:
    """One page of jobs, oldest first, and the cursor of the next page (None: the last)."""

    jobs: list[JobRecord]
    next_cursor: str | None


def encode_cursor(score: float, member: str) -> str:
    return base64.urlsafe_b64encode(f"{score!r}|{member}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        score, member = text.split("|", 1)
        if math.isfinite(float(score)) and member and member.isprintable():
            return float(score), member
    except (ValueError, binascii.Error, UnicodeDecodeError):
        pass
    raise InvalidRequest(
        "the cursor is not one this service gave out: pass next_cursor from the previous "
        "page unchanged, or leave it out to start from the first page"
    )


def parse_since(since: float | str | None) -> float | None:
    """``since`` as Unix time: a finite number (of seconds), or an ISO 8601 time (UTC unless
    it names its offset); InvalidRequest saying what to send otherwise."""
    if since is None:
        return None
    if not isinstance(since, str):
        value = float(since)
    else:
        try:
            value = float(since)
        except ValueError:
            try:
                moment = datetime.fromisoformat(since.strip())
            except ValueError:
                value = math.nan
            else:
                if moment.tzinfo is None:
                    moment = moment.replace(tzinfo=UTC)
                value = moment.timestamp()
    if not math.isfinite(value):
        raise InvalidRequest(
            f"since {shown(since, 40)} is not a time: send Unix seconds (1767225600) or an "
            "ISO 8601 time (2026-01-01T00:00:00Z)"
        )
    return value


def list_jobs(
    ledger: Ledger,
    *,
    state: JobState | None = None,
    batch: str | None = None,
    since: float | str | None = None,
    cursor: str | None = None,
    limit: int = 100,
) -> Page:
    """Jobs matching every filter given, oldest first, at most ``limit`` of them."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    to_id: Callable[[Any], str] = ledger.keys.job_id_of
    if batch is not None:
        key, to_id = ledger.keys.batch_jobs(batch), text
    elif state is not None:
        key = ledger.keys.state_index(state.value)
    else:
        key = ledger.keys.created
    since = parse_since(since)
    after = decode_cursor(cursor) if cursor else None
    low = None if batch else since
    jobs: list[JobRecord] = []
    while len(jobs) < limit:
        chunk = _after(ledger, key, after, low, _CHUNK)
        for score, member in chunk:
            after = (score, member)
            job = ledger.get(to_id(member))
            if job is None:
                continue  # expired from the ledger; its index entry goes with the next purge
            if (state is not None and job.state is not state) or (
                since is not None and job.created_at < since
            ):
                continue
            jobs.append(job)
            if len(jobs) == limit:
                break
        if len(chunk) < _CHUNK:
            break
    more = after is not None and bool(_after(ledger, key, after, low, 1))
    return Page(jobs, encode_cursor(*after) if more and after else None)


def _after(
    ledger: Ledger, key: str, after: tuple[float, str] | None, since: float | None, count: int
) -> list[tuple[float, str]]:
    """Up to ``count`` (score, member) of ``key`` in Redis order, strictly after ``after``
    (members of equal score are ordered by name), from ``since`` on."""
    if after is None:
        return _range(ledger, key, "-inf" if since is None else since, "+inf", count)
    score, member = after
    ties = [item for item in _range(ledger, key, score, score, None) if item[1] > member]
    if len(ties) >= count:
        return ties[:count]
    return ties + _range(ledger, key, f"({score!r}", "+inf", count - len(ties))


def _range(
    ledger: Ledger, key: str, low: Any, high: Any, count: int | None
) -> list[tuple[float, str]]:
    if count is None:
        found = ledger.redis.zrangebyscore(key, low, high, withscores=True)
    else:
        found = ledger.redis.zrangebyscore(key, low, high, start=0, num=count, withscores=True)
    rows = cast(list[tuple[Any, float]], found)
    return [(float(score), text(member)) for member, score in rows]
