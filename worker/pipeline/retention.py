"""Retention: remove ended jobs, their stored files and their ledger entries, together.

The ledger keeps every ended job in an index scored by when it ended (``<prefix>:jobs:ended``,
written in the same Lua step that ends the job), so finding what is old costs one range read,
never a scan. Files go first: a crash mid-purge leaves a ledger entry whose files are gone, and
the next purge finishes it; never files without an entry that would name them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from vidgo_stems.errors import InvalidRequest
from vidgo_stems.files.links import ORIGINALS, job_key
from vidgo_stems.files.storage import Storage
from vidgo_stems.keys import text
from vidgo_stems.pipeline.ledger import Ledger
from vidgo_stems.pipeline.outbox import PROGRESS
from vidgo_stems.pipeline.states import JobState

log = logging.getLogger(__name__)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """Seconds in ``30d``, ``12h``, ``90m``, ``45s`` or a plain number of seconds."""
    match = _DURATION.match(text.lower())
    if not match:
        raise InvalidRequest(
            f"cannot read {text[:40]!r} as a duration: use a number with s, m, h, d or w, e.g. 30d"
        )
    return float(match.group(1)) * _UNIT_S[match.group(2)]


@dataclass(frozen=True)
class Purged:
    """One ended job that was (or, in a dry run, would be) removed."""

    job_id: str
    ended_at: float
    files: int


def ended_before(ledger: Ledger, at: float, *, limit: int = 1000) -> list[tuple[str, float]]:
    """(job id, ended at) of jobs that ended before ``at``, oldest first."""
    pairs = cast(
        list[tuple[Any, float]],
        ledger.redis.zrangebyscore(
            ledger.keys.ended, "-inf", at, start=0, num=limit, withscores=True
        ),
    )
    return [(ledger.keys.job_id_of(key), float(score)) for key, score in pairs]


def purge(
    ledger: Ledger,
    storage: Storage,
    *,
    older_than_s: float,
    now: float,
    dry_run: bool = False,
    limit: int = 10_000,
    forget_result: Callable[[str], None] = lambda _: None,
) -> list[Purged]:
    """Remove every job that ended more than ``older_than_s`` ago (at most ``limit``)."""
    done = []
    for job_id, ended_at in ended_before(ledger, now - older_than_s, limit=limit):
        if dry_run:
            job = ledger.get(job_id)
            files = len(job.stems) + (1 if job.manifest_key else 0) if job else 0
            done.append(Purged(job_id, ended_at, files))
            continue
        removed = storage.delete_prefix(f"{job_id}/")
        forget_result(job_id)
        forget(ledger, job_id)
        done.append(Purged(job_id, ended_at, removed))
        log.info("purged job %s (ended %.0fs ago, %d file(s))", job_id, now - ended_at, removed)
    return done


def forget(ledger: Ledger, job_id: str) -> None:
    """Remove an ended job's record, history and deliveries, and every index entry."""
    key = ledger.keys.job(job_id)
    pipe = ledger.redis.pipeline()
    subs = [text(m) for m in cast(list[Any], ledger.redis.hkeys(ledger.keys.subscriptions(job_id)))]
    subs += [sub + PROGRESS for sub in subs]
    pipe.delete(
        key,
        ledger.keys.history(job_id),
        ledger.keys.parts(job_id),
        ledger.keys.subscriptions(job_id),
        ledger.keys.hooks(job_id),
        ledger.keys.hook_status(job_id),
        *(ledger.keys.deliveries(job_id, sub) for sub in subs),
    )
    pipe.zrem(
        ledger.keys.webhooks_due, *(ledger.keys.outbox_member(job_id, sub) for sub in subs or [""])
    )
    scheduled = [key, f"{key}#{ORIGINALS}"]
    pipe.hdel(ledger.keys.schedule_messages, *scheduled)
    pipe.zrem(ledger.keys.schedule, *scheduled)
    indexes = [ledger.keys.ended, ledger.keys.active, ledger.keys.in_flight, ledger.keys.schedule]
    indexes += [ledger.keys.created, *(ledger.keys.state_index(s.value) for s in JobState)]
    for index in indexes:
        pipe.zrem(index, key)
    pipe.execute()


def remove_originals(ledger: Ledger, storage: Storage, job_id: str) -> int:
    """Remove the stems of a DONE job as Vidgo served them (its delivered stems stay); a job
    that is active again (retried) keeps them. Returns how many files went."""
    job = ledger.get(job_id)
    if job is not None and job.state is not JobState.DONE:
        return 0
    removed = storage.delete_prefix(job_key(job_id, ORIGINALS))
    log.info(
        "job %s: removed %d file(s) as Vidgo served them (their links expired)", job_id, removed
    )
    return removed
