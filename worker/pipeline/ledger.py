"""The job ledger in Redis: the source of truth for every job, whatever the broker says.

A job is one hash (``<prefix>:job:<id>``) plus a history list. Every change is a compare-and-set
done by one Lua script (``lua/``): it applies only when the job is in an expected state *and*
holds the expected step token. The token is the baton of the pipeline: each Celery message
carries the token current when it was sent, a stage acts only while its token is current, and a
hand-off sets a fresh token before the next message is sent. Duplicate deliveries, racing polls
and restarted workers therefore find a stale token and stop without side effects. Nothing else
writes a job's record.

Field values are stored as JSON; ``state`` and ``token`` as plain strings.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, cast

import redis

from vidgo_stems.keys import Keys, text
from vidgo_stems.models import JobRequest
from vidgo_stems.observe import metrics
from vidgo_stems.observe.logs import transition_fields
from vidgo_stems.pipeline.durable import Durability, Need
from vidgo_stems.pipeline.move import Move
from vidgo_stems.pipeline.record import Enqueue, JobRecord, NewJob, Subscription
from vidgo_stems.pipeline.scripts import ADVANCE, ANNOTATE, CREATE
from vidgo_stems.pipeline.states import (
    TERMINAL_STATES,
    JobState,
    Step,
    state_list,
)
from vidgo_stems.text import loads_stored

log = logging.getLogger(__name__)


class Ledger:
    """Reads and compare-and-sets jobs in Redis. Safe to share between threads."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = "vidgo-stems",
        retention_s: int = 30 * 24 * 3600,
        clock: Callable[[], float] = time.time,
        durable_replicas: int = 0,
        durable_timeout_s: float = 30.0,
        encode: Callable[[Step], tuple[str, str]] | None = None,
    ) -> None:
        self._redis = client
        self._encode = encode
        self._durability = Durability(
            client, replicas=durable_replicas, timeout_s=durable_timeout_s
        )
        self.keys = Keys(prefix)
        self.retention_s = retention_s
        self.clock = clock
        self._advance = ADVANCE.bind(client)
        self._create = CREATE.bind(client)
        self._annotate = ANNOTATE.bind(client)

    @property
    def redis(self) -> redis.Redis:
        """The client, for components that keep their own keys beside the ledger's."""
        return self._redis

    # -- reads -----------------------------------------------------------------------------
    def get(self, job_id: str) -> JobRecord | None:
        raw = cast(Mapping[Any, Any], self._redis.hgetall(self.keys.job(job_id)))
        return JobRecord.from_hash(job_id, raw) if raw else None

    def history(self, job_id: str) -> list[dict[str, Any]]:
        items = cast(list[Any], self._redis.lrange(self.keys.history(job_id), 0, -1))
        return [loads_stored(item) for item in items]

    def counters(self) -> dict[str, int]:
        raw = cast(Mapping[Any, Any], self._redis.hgetall(self.keys.counters))
        return {text(k): int(v) for k, v in raw.items()}

    def bump_counter(self, name: str, by: int = 1) -> None:
        self._redis.hincrby(self.keys.counters, name, by)

    # -- writes ----------------------------------------------------------------------------
    def enqueue(
        self,
        job_id: str,
        request: JobRequest,
        *,
        token: str,
        subscription: Subscription | None = None,
        max_subscribers: int = 100,
        take_subscribers_when_failed: bool = False,
        step: Step | None = None,
    ) -> Enqueue:
        """Find or create the job and subscribe the caller, in one atomic step.

        A job that ended FAILED or CANCELLED takes no new subscriber (its caller is to retry it)
        unless ``take_subscribers_when_failed``. The creator's webhook URL and metadata are also
        the job's own. ``step`` (the first message) is pushed onto its queue in the same step
        when the job is new.
        """
        call = self._creation(
            NewJob(job_id, request, token, subscription, step),
            max_subscribers=max_subscribers,
            take_subscribers_when_failed=take_subscribers_when_failed,
        )
        if self._durability.replicas:
            result = self._durability.write(
                call.run,
                applied=lambda r: bool(r[0]),
                landed=lambda: bool(self._redis.exists(self.keys.job(job_id))),
                probe=lambda p: p.exists(self.keys.job(job_id)),
                holds=bool,
                touch=self.keys.job(job_id),
                what=f"job {job_id}'s creation",
            )
        else:
            result = call.run(self._redis)
        return self._found(call, result)

    def enqueue_many(
        self, jobs: list[NewJob], *, max_subscribers: int = 100, chunk: int = 500
    ) -> list[Enqueue]:
        """:meth:`enqueue` for many jobs, pipelined ``chunk`` at a time (one round trip each);
        each job is still created, subscribed and sent in its own atomic step."""
        if self._durability.replicas:  # each creation waits for its replicas
            return [
                self.enqueue(
                    j.job_id,
                    j.request,
                    token=j.token,
                    subscription=j.subscription,
                    max_subscribers=max_subscribers,
                    step=j.step,
                )
                for j in jobs
            ]
        found: list[Enqueue] = []
        for start in range(0, len(jobs), chunk):
            calls = [
                self._creation(j, max_subscribers=max_subscribers)
                for j in jobs[start : start + chunk]
            ]
            pipe = self._redis.pipeline(transaction=False)
            for call in calls:
                call.run(pipe)
            results = pipe.execute()
            found += [self._found(c, r) for c, r in zip(calls, results, strict=True)]
        return found

    def _creation(
        self,
        new: NewJob,
        *,
        max_subscribers: int,
        take_subscribers_when_failed: bool = False,
    ) -> _Creation:
        now = self.clock()
        job_id, subscription = new.job_id, new.subscription
        optional: dict[str, Any] = {}
        if subscription is not None:
            optional = {"webhook_url": subscription.webhook_url, "metadata": subscription.metadata}
        fields = {
            **{k: json.dumps(v) for k, v in optional.items() if v},
            "state": JobState.QUEUED.value,
            "token": new.token,
            "request": json.dumps(new.request.model_dump(mode="json")),
            "created_at": json.dumps(now),
            "updated_at": json.dumps(now),
            "callback_token": json.dumps(secrets.token_urlsafe(24)),
        }
        entry = json.dumps({"from": None, "to": "QUEUED", "at": now, "event": "enqueued"})
        refused = () if take_subscribers_when_failed else (JobState.FAILED, JobState.CANCELLED)
        queue, message = self.encode(new.step) if new.step is not None else (self.keys.active, "")
        keys = {
            **self._job_keys(job_id, queue, CREATE.keys),
            "state_index": self.keys.state_index(JobState.QUEUED.value),
        }
        args = {
            "now": now,
            "entry": entry,
            "state": JobState.QUEUED.value,
            "sub_id": subscription.sub_id if subscription else "",
            "subscription": subscription.to_json() if subscription else "",
            "has_webhook": "1" if subscription and subscription.webhook_url else "0",
            "max_subscribers": max_subscribers,
            "refused": state_list(tuple(refused)),
            "message": message,
            "same_as": _same_as(new),
        }

        def run(client: Any) -> Any:
            return self._create(keys=keys, args=args, rest=_pairs(fields), client=client)

        return _Creation(job_id, fields, run)

    def _found(self, call: _Creation, result: Any) -> Enqueue:
        """The job as the create script left it: what it wrote when new, else what it read."""
        created, _, subscribed, found = result
        if created:
            metrics.JOBS_ENTERED.labels(JobState.QUEUED.value).inc()
            job = JobRecord.from_hash(call.job_id, call.fields)
        else:
            job = JobRecord.from_hash(call.job_id, dict(zip(found[::2], found[1::2], strict=True)))
        return Enqueue(job, bool(created), int(subscribed))

    def _job_keys(self, job_id: str, queue: str, names: tuple[str, ...]) -> dict[str, str]:
        """The keys named ``names`` of ``job_id``'s scripts (``queue``: the next message's)."""
        keys = self.keys
        every = {
            "job": keys.job(job_id),
            "history": keys.history(job_id),
            "active": keys.active,
            "created": keys.created,
            "webhooks_due": keys.webhooks_due,
            "in_flight": keys.in_flight,
            "ended": keys.ended,
            "subscriptions": keys.subscriptions(job_id),
            "hooks": keys.hooks(job_id),
            "schedule": keys.schedule,
            "schedule_messages": keys.schedule_messages,
            "schedule_wake": keys.schedule_wake,
            "queue": queue,
        }
        return {name: every[name] for name in names if name in every}

    def advance(
        self,
        job_id: str,
        *,
        expect: JobState | Iterable[JobState],
        token: str | None,
        to: JobState | None = None,
        new_token: str | None = None,
        fields: Mapping[str, Any] | None = None,
        incr: Mapping[str, int] | None = None,
        event: str,
        detail: Mapping[str, Any] | None = None,
        unless_subscribed: bool = False,
        durable: Need | None = None,
        step: Step | None = None,
    ) -> bool:
        """Apply a move when the job is in ``expect`` and holds ``token``; False when it is not.

        ``to=None`` keeps the state (a guarded update). ``token=None`` skips the token check
        (for operator actions). ``fields`` and ``incr`` name fields of :class:`JobRecord`
        (another name is a ValueError). ``unless_subscribed`` applies the move only while the
        job has no subscriber left. ``durable`` asks the replicas for it (see
        :mod:`vidgo_stems.pipeline.durable`; ``Need.CONFIRM`` raises NotReplicated). ``step``
        is the job's next message, sent by the same step: onto its queue when due now, else
        into the schedule (:mod:`vidgo_stems.pipeline.schedule`). Raises IllegalTransition for
        a move the machine does not have.
        """
        move = Move(
            expect=(expect,) if isinstance(expect, JobState) else tuple(expect),
            token=token,
            event=event,
            to=to,
            new_token=new_token,
            fields=fields or {},
            incr=incr or {},
            detail=detail or {},
            unless_subscribed=unless_subscribed,
            step=step,
        )
        return self.apply(job_id, move, durable=durable)

    def apply(self, job_id: str, move: Move, *, durable: Need | None = None) -> bool:
        """:meth:`advance`, for a move already built.

        A durable move's next message is sent only once the replicas hold the move: no step
        may build on a move a failover could still take back (its own moves would be lost
        with it). A worker that stops in between leaves the job to the recovery sweep.
        """
        if durable is not None and move.step is not None and self._durability.replicas:
            if not self.apply(job_id, replace(move, step=None), durable=durable):
                return False
            # Guarded by the token the move installed; no history entry of its own.
            expect = (move.to,) if move.to is not None else move.expect
            send = Move(expect=expect, token=move.held_token, event="", step=move.step)
            self.apply(job_id, send)  # refused only when the job moved on meanwhile
            return True
        queue, message = self.encode(move.step) if move.step else (self.keys.prefix, "")
        args = move.args(
            now=self.clock(),
            message=message,
            retention_s=self.retention_s,
            index_prefix=self.keys.state_index_prefix,
        )
        keys, rest = self._job_keys(job_id, queue, ADVANCE.keys), move.rest()

        def run(client: Any) -> Any:
            return self._advance(keys=keys, args=args, rest=rest, client=client)

        ok, was, *after = self._write(run, job_id, move, durable) if durable else run(None)
        if not ok and move.new_token and self._holds(job_id, move.new_token, move.to):
            # Refused because an earlier send of this very move (its reply lost, the client
            # retried) applied it: only this call knows new_token, so the move is ours.
            ok, was, after = 1, move.expect[0].value, []
        if ok and move.to is not None and text(was) != move.to.value:
            task = _json_text(after[0]) if after else None
            self._moved(job_id, text(was), move.to, move.event, task)
        return bool(ok)

    def _write(self, run: Callable[[Any], Any], job_id: str, move: Move, need: Need) -> Any:
        """Run a move that must reach the replicas (plainly when none are configured)."""
        if not self._durability.replicas:
            return run(None)
        to = move.to.value if move.to else "its state"
        return self._durability.write(
            run,
            applied=lambda r: bool(r[0]),
            landed=lambda: self._holds(job_id, move.held_token, move.to),
            probe=lambda p: p.hmget(self.keys.job(job_id), ["token", "state"]),
            holds=lambda raw: _is_held(raw, move.held_token, move.to),
            touch=self.keys.job(job_id),
            what=f"job {job_id}'s move to {to}",
            need=need,
        )

    def encode(self, step: Step) -> tuple[str, str]:
        """The queue and the message for ``step``."""
        if self._encode is None:
            raise RuntimeError("this ledger was built without a message encoder")
        return self._encode(step)

    def _moved(
        self, job_id: str, was: str, to: JobState, event: str, vidgo_task_id: str | None
    ) -> None:
        """Count and log one transition (after it happened; the task named is the one the
        job has now)."""
        metrics.JOBS_ENTERED.labels(to.value).inc()
        if to in TERMINAL_STATES:
            metrics.JOBS_FINISHED.labels(to.value).inc()
        log.info(
            "job %s %s -> %s (%s)",
            job_id,
            was,
            to.value,
            event,
            extra=transition_fields(
                job_id, vidgo_task_id, from_state=was, to_state=to.value, event=event
            ),
        )

    def _holds(self, job_id: str, token: str, state: JobState | None) -> bool:
        """Whether the job holds ``token`` (and is in ``state``, when one is given)."""
        raw = cast(list[Any], self._redis.hmget(self.keys.job(job_id), ["token", "state"]))
        return _is_held(raw, token, state)

    def annotate(self, job_id: str, fields: Mapping[str, Any]) -> bool:
        """Set bookkeeping fields of an existing job without moving it; False when it is gone."""
        pairs = Move(expect=(), token=None, event="", fields=fields).rest()
        return bool(self._annotate(keys={"job": self.keys.job(job_id)}, rest=pairs))


@dataclass(frozen=True)
class _Creation:
    job_id: str
    fields: dict[str, str]
    run: Callable[[Any], Any]


def _same_as(new: NewJob) -> str:
    """What an existing job must have asked for to take this caller, as JSON: the request's
    fields but the title, when the caller chose the id; "" when the id is the fingerprint."""
    if new.job_id == new.request.fingerprint():
        return ""
    fields = new.request.model_dump(mode="json", exclude={"title"})
    return json.dumps(fields)


def _is_held(raw: Any, token: str, state: JobState | None) -> bool:
    """Whether a job's [token, state] as read hold ``token`` (and ``state``, when given)."""
    raw_token, raw_state = raw
    if raw_token is None or text(raw_token) != token:
        return False
    return state is None or (raw_state is not None and text(raw_state) == state.value)


def _pairs(mapping: Mapping[str, Any]) -> list[Any]:
    out: list[Any] = []
    for key, value in mapping.items():
        out.extend((key, value))
    return out


def _json_text(raw: Any) -> str | None:
    """A JSON-encoded string field as read by Lua ('' when absent)."""
    raw_text = text(raw)
    if not raw_text:
        return None
    try:
        value = json.loads(raw_text)
    except json.JSONDecodeError:
        return raw_text
    return value if isinstance(value, str) else None
