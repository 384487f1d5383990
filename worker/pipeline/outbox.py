"""Subscribers and the webhook outbox, kept beside the ledger.

Every caller that enqueued a job is a subscription (its own webhook URL, metadata and the
events it asked for) in a hash next to the job. When the job ends, the ledger's Lua step puts
one outbox entry per subscription with a webhook (``<job key>#<subscription id>``, scored by
when it is due) in the same step, so no completion webhook can be lost between the end and
the send. A subscription that asked for ``job.stems_stored`` gets a second entry when the
stems are stored (``<job key>#<subscription id>|stems_stored``); its end waits behind it, so
the events arrive in order. The sending is :mod:`vidgo_stems.webhooks`, run by the
``vidgo.webhook`` task; a message for a job delivers every entry of that job that is due.

An entry is named by an *entry id*: the subscription id for the end, the subscription id
with ``|stems_stored`` for the stems stored.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, cast

from vidgo_stems.keys import text
from vidgo_stems.models import STEMS_STORED
from vidgo_stems.pipeline.ledger import Ledger
from vidgo_stems.pipeline.record import Subscription
from vidgo_stems.text import loads_stored

#: What an entry id adds to its subscription id for the stems-stored event.
PROGRESS = "|stems_stored"


def entry_of(entry_id: str) -> tuple[str, str | None]:
    """(subscription id, ``job.stems_stored`` or None for the end) of an outbox entry id."""
    if entry_id.endswith(PROGRESS):
        return entry_id.removesuffix(PROGRESS), STEMS_STORED
    return entry_id, None


class Outbox:
    """The subscriptions of jobs, their webhooks due, and every delivery attempt."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.keys = ledger.keys
        self._redis = ledger.redis

    # -- subscriptions ---------------------------------------------------------------------
    def subscriptions(self, job_id: str) -> dict[str, Subscription]:
        raw = cast(Mapping[Any, Any], self._redis.hgetall(self.keys.subscriptions(job_id)))
        subs = [Subscription.from_json(text(k), v) for k, v in raw.items()]
        return {s.sub_id: s for s in sorted(subs, key=lambda s: (s.at, s.sub_id))}

    def subscription(self, job_id: str, sub_id: str) -> Subscription | None:
        raw = self._redis.hget(self.keys.subscriptions(job_id), sub_id)
        return Subscription.from_json(sub_id, raw) if raw else None

    def unsubscribe(self, job_id: str, sub_id: str) -> int | None:
        """Remove one subscription; returns how many are left (None: it was not there)."""
        pipe = self._redis.pipeline()
        pipe.hdel(self.keys.subscriptions(job_id), sub_id)
        pipe.srem(self.keys.hooks(job_id), sub_id)
        pipe.zrem(
            self.keys.webhooks_due,
            self.keys.outbox_member(job_id, sub_id),
            self.keys.outbox_member(job_id, sub_id + PROGRESS),
        )
        pipe.hlen(self.keys.subscriptions(job_id))
        removed, _, _, left = pipe.execute()
        return int(left) if removed else None

    # -- the outbox ------------------------------------------------------------------------
    def due_at(self, job_id: str, sub_id: str) -> float | None:
        member = self.keys.outbox_member(job_id, sub_id)
        return cast(float | None, self._redis.zscore(self.keys.webhooks_due, member))

    def due_for(self, job_id: str) -> dict[str, float]:
        """Entry id -> when its webhook is due, for every entry of this job."""
        hooks = [text(m) for m in cast(set[Any], self._redis.smembers(self.keys.hooks(job_id)))]
        entries = [e for sub_id in sorted(hooks) for e in (sub_id, sub_id + PROGRESS)]
        pipe = self._redis.pipeline(transaction=False)
        for entry in entries:
            pipe.zscore(self.keys.webhooks_due, self.keys.outbox_member(job_id, entry))
        due = dict(zip(entries, pipe.execute(), strict=True))
        return {entry: float(at) for entry, at in due.items() if at is not None}

    def schedule(self, job_id: str, sub_id: str, at: float) -> None:
        self._redis.zadd(self.keys.webhooks_due, {self.keys.outbox_member(job_id, sub_id): at})

    def clear(self, job_id: str, sub_id: str) -> None:
        self._redis.zrem(self.keys.webhooks_due, self.keys.outbox_member(job_id, sub_id))

    def clear_job(self, job_id: str) -> None:
        """Drop every entry of a job (it starts again: its end will put them back)."""
        for sub_id in self.due_for(job_id):
            self.clear(job_id, sub_id)

    def due_before(self, at: float, *, limit: int = 1000) -> list[tuple[str, str]]:
        """(job id, subscription id) of entries due before ``at``, oldest first."""
        members = cast(
            list[Any],
            self._redis.zrangebyscore(self.keys.webhooks_due, "-inf", at, start=0, num=limit),
        )
        return [self.keys.outbox_entry(m) for m in members]

    # -- attempts and status ---------------------------------------------------------------
    def record(self, job_id: str, sub_id: str, attempt: Mapping[str, Any]) -> None:
        key = self.keys.deliveries(job_id, sub_id)
        pipe = self._redis.pipeline()
        pipe.rpush(key, json.dumps(dict(attempt)))
        pipe.expire(key, self.ledger.retention_s)
        pipe.execute()

    def deliveries(self, job_id: str, sub_id: str) -> list[dict[str, Any]]:
        items = cast(list[Any], self._redis.lrange(self.keys.deliveries(job_id, sub_id), 0, -1))
        return [loads_stored(item) for item in items]

    def set_status(self, job_id: str, sub_id: str, status: str) -> None:
        """An entry's webhook status; an end's is also the job's latest (``webhook_status``)."""
        pipe = self._redis.pipeline()
        pipe.hset(self.keys.hook_status(job_id), sub_id, status)
        pipe.expire(self.keys.hook_status(job_id), self.ledger.retention_s)
        pipe.execute()
        if entry_of(sub_id)[1] is None:
            self.ledger.annotate(job_id, {"webhook_status": status})

    def status(self, job_id: str, sub_id: str) -> str | None:
        raw = self._redis.hget(self.keys.hook_status(job_id), sub_id)
        return text(raw) if raw is not None else None

    def lock(self, job_id: str, sub_id: str, timeout_s: float) -> Any:
        """A non-blocking lock: one delivery of a subscription's webhook at a time."""
        return self._redis.lock(
            self.keys.webhook_lock(job_id, sub_id), timeout=timeout_s, blocking=False
        )


def deliveries(ledger: Ledger, job_id: str) -> list[dict[str, Any]]:
    """Every delivery attempt of a job's webhooks, all subscriptions and events, oldest
    first."""
    outbox = Outbox(ledger)
    entries = [e for sub in outbox.subscriptions(job_id) for e in (sub, sub + PROGRESS)]
    attempts = [a for entry in entries for a in outbox.deliveries(job_id, entry)]
    return sorted(attempts, key=lambda a: a.get("at", 0))


def announce_stems_stored(
    ledger: Ledger, dispatch: Callable[[str, float], None], job_id: str
) -> int:
    """Put a ``job.stems_stored`` entry in the outbox for every subscription that asked for
    it, and send the message that delivers them; returns how many."""
    outbox = Outbox(ledger)
    asked = [
        sub.sub_id
        for sub in outbox.subscriptions(job_id).values()
        if sub.webhook_url and STEMS_STORED in sub.events
    ]
    for sub_id in asked:
        outbox.schedule(job_id, sub_id + PROGRESS, ledger.clock())
    if asked:
        dispatch(job_id, 0.0)
    return len(asked)


def announce(ledger: Ledger, dispatch: Callable[[str, float], None], job_id: str) -> bool:
    """Send the webhook message of a job that just ended, if a webhook of it is due."""
    if not Outbox(ledger).due_for(job_id):
        return False
    dispatch(job_id, 0.0)
    return True


def redispatch_overdue(
    ledger: Ledger,
    dispatch: Callable[[str, float], None],
    *,
    now: float,
    grace_s: float,
    limit: int = 1000,
) -> list[str]:
    """Re-send the message of every job with a webhook overdue by ``grace_s`` (lost message)."""
    job_ids = list(
        dict.fromkeys(j for j, _ in Outbox(ledger).due_before(now - grace_s, limit=limit))
    )
    for job_id in job_ids:
        dispatch(job_id, 0.0)
    return job_ids
