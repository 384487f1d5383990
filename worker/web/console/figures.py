"""The console's figures, read from the ledger's indexes and counters, never by listing jobs.

The overview is the cluster snapshot (:func:`vidgo_stems.monitor.cluster.take_snapshot`, the one
``vidgo-stems stats`` and ``/metrics`` read) plus a per-minute history of jobs ended (counts
over the ended index) and each worker's last heartbeat. Failures are grouped by reading the
error code of the FAILED and CANCELLED jobs in scope, a chunk at a time, so the work follows
the number of failures and the memory the number of distinct codes, not the number of jobs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import redis

from vidgo_stems.keys import text
from vidgo_stems.monitor.cluster import take_snapshot
from vidgo_stems.pipeline.ledger import Ledger
from vidgo_stems.pipeline.listing import parse_since
from vidgo_stems.pipeline.retry import RETRYABLE
from vidgo_stems.pipeline.states import STATES, JobState
from vidgo_stems.settings import Settings
from vidgo_stems.text import loads_stored

#: Minutes of throughput history the overview shows.
HISTORY_MIN = 30
#: Jobs read per round trip when a figure has to look at jobs one by one.
CHUNK = 1000
#: Example jobs kept per failure group.
EXAMPLES = 3


def overview(
    client: redis.Redis, ledger: Ledger, settings: Settings, queues: list[str]
) -> dict[str, Any]:
    """Everything the overview page shows, JSON-ready."""
    snap = take_snapshot(client, ledger, settings, queues).to_json()
    by_stage: dict[str, int] = {}
    for state, count in snap["jobs"].items():
        stage = STATES[JobState(state)].stage
        by_stage[stage] = by_stage.get(stage, 0) + count
    snap["stages"] = by_stage
    snap["total"] = sum(snap["jobs"].values())
    snap["history"] = throughput_history(client, ledger, snap["at"])
    snap["heartbeats"] = heartbeats(client, ledger)
    snap["credits_per_task"] = settings.credits_per_task
    return snap


def throughput_history(client: redis.Redis, ledger: Ledger, now: float) -> list[int]:
    """Jobs ended in each of the last HISTORY_MIN minutes, oldest first (one ZCOUNT each)."""
    pipe = client.pipeline(transaction=False)
    for minutes_ago in range(HISTORY_MIN, 0, -1):
        start = now - minutes_ago * 60
        pipe.zcount(ledger.keys.ended, start, f"({start + 60}")
    return [int(n) for n in pipe.execute()]


def heartbeats(client: redis.Redis, ledger: Ledger) -> list[dict[str, Any]]:
    """Every worker in the registry with its last heartbeat, most recent first."""
    found = client.zrange(ledger.keys.workers, 0, 99, desc=True, withscores=True)
    rows = cast(list[tuple[Any, float]], found)
    now = time.time()
    return [{"name": text(n), "age_s": round(now - float(at), 1)} for n, at in rows]


@dataclass(frozen=True)
class Scope:
    """Which failures a page looks at: one batch, those created since a time, or all."""

    batch: str | None = None
    since: float | None = None

    @classmethod
    def parse(cls, batch: str | None, since: str | None) -> Scope:
        return cls(batch or None, parse_since(since) if since else None)

    def describe(self) -> str:
        if self.batch:
            return f"batch {self.batch}"
        if self.since is not None:
            return "created since " + time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(self.since))
        return "all jobs"


@dataclass
class Group:
    """Failed (or cancelled) jobs that share an error code."""

    code: str
    count: int = 0
    message: str = ""
    examples: list[str] = field(default_factory=list)


def failure_groups(ledger: Ledger, scope: Scope) -> list[Group]:
    """The failures in ``scope`` by error code, largest group first."""
    groups: dict[str, Group] = {}
    for job_id, code, message in _failures(ledger, scope):
        group = groups.setdefault(code, Group(code))
        group.count += 1
        if len(group.examples) < EXAMPLES:
            group.examples.append(job_id)
            group.message = group.message or message
    return sorted(groups.values(), key=lambda g: (-g.count, g.code))


def _failures(ledger: Ledger, scope: Scope) -> Iterator[tuple[str, str, str]]:
    """(job id, error code, message) of every FAILED or CANCELLED job in scope."""
    if scope.batch:
        for ids in _chunks(ledger.redis, ledger.keys.batch_jobs(scope.batch), None):
            yield from _read(ledger, [text(i) for i in ids], check_state=True)
        return
    for state in RETRYABLE:
        for members in _chunks(ledger.redis, ledger.keys.state_index(state.value), scope.since):
            ids = [ledger.keys.job_id_of(m) for m in members]
            yield from _read(ledger, ids, check_state=False)


def _chunks(client: redis.Redis, key: str, since: float | None) -> Iterator[list[Any]]:
    """The members of a sorted set (scored from ``since`` on), CHUNK at a time."""
    low: Any = "-inf" if since is None else since
    offset = 0
    while True:
        members = cast(list[Any], client.zrangebyscore(key, low, "+inf", start=offset, num=CHUNK))
        if members:
            yield members
        if len(members) < CHUNK:
            return
        offset += CHUNK


def _read(ledger: Ledger, ids: list[str], *, check_state: bool) -> Iterator[tuple[str, str, str]]:
    pipe = ledger.redis.pipeline(transaction=False)
    for job_id in ids:
        pipe.hmget(ledger.keys.job(job_id), ["state", "error_code", "error_message"])
    ended = {s.value for s in RETRYABLE}
    for job_id, (state, code, message) in zip(ids, pipe.execute(), strict=True):
        if state is None or (check_state and text(state) not in ended):
            continue
        yield job_id, _decoded(code) or "unknown", _decoded(message) or ""


def _decoded(raw: Any) -> str | None:
    if raw is None:
        return None
    try:
        value = loads_stored(text(raw))
    except ValueError:
        return text(raw)
    return None if value is None else str(value)
