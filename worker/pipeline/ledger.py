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
from dataclasses import dataclass
from importlib import resources
from typing import Any, cast

import redis

from worker.errors import IllegalTransition
from worker.keys import Keys, text
from worker.models import JobRequest
from worker.observe import metrics
from worker.observe.logs import transition_fields
from worker.pipeline.durable import Durability
from worker.pipeline.record import Enqueue, JobRecord, Subscription
from worker.pipeline.states import (
    ACTIVE_STATES,
    SLOT_FREE_STATES,
    TERMINAL_STATES,
    TRANSITIONS,
    JobState,
    Step,
    new_token,
    state_list,
)

__all__ = [
    "ACTIVE_STATES",
    "TRANSITIONS",
    "Enqueue",
    "IllegalTransition",
    "JobRecord",
    "JobState",
    "Ledger",
    "NewJob",
    "Subscription",
    "new_token",
]


log = logging.getLogger(__name__)


def _lua(name: str) -> str:
    return resources.files("worker.pipeline").joinpath("lua", f"{name}.lua").read_text()


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
        self._retention_s = retention_s
        self._clock = clock
        self._advance = client.register_script(_lua("advance"))
        self._create = client.register_script(_lua("create"))
        self._annotate = client.register_script(_lua("annotate"))

    @property
    def redis(self) -> redis.Redis:
        """The client, for components that keep their own keys beside the ledger's."""
        return self._redis

    @property
    def retention_s(self) -> int:
        return self._retention_s

    # -- reads -----------------------------------------------------------------------------
    def get(self, job_id: str) -> JobRecord | None:
        raw = cast(Mapping[Any, Any], self._redis.hgetall(self.keys.job(job_id)))
        return JobRecord.from_hash(job_id, raw) if raw else None

    def history(self, job_id: str) -> list[dict[str, Any]]:
        items = cast(list[Any], self._redis.lrange(self.keys.history(job_id), 0, -1))
        return [json.loads(item) for item in items]

    def states(self, job_ids: list[str], *, chunk: int = 2000) -> dict[str, str | None]:
        """Current state per job id (None when the ledger no longer has it), pipelined."""
        states: dict[str, str | None] = {}
        for start in range(0, len(job_ids), chunk):
            part = job_ids[start : start + chunk]
            pipe = self._redis.pipeline(transaction=False)
            for job_id in part:
                pipe.hget(self.keys.job(job_id), "state")
            for job_id, state in zip(part, pipe.execute(), strict=True):
                states[job_id] = text(state) if state is not None else None
        return states

    def error_code(self, job_id: str) -> str | None:
        raw = cast(bytes | None, self._redis.hget(self.keys.job(job_id), "error_code"))
        return cast(str, json.loads(raw)) if raw else None

    def counters(self) -> dict[str, int]:
        raw = cast(Mapping[Any, Any], self._redis.hgetall(self.keys.counters))
        return {text(k): int(v) for k, v in raw.items()}

    def bump_counter(self, name: str, by: int = 1) -> None:
        self._redis.hincrby(self.keys.counters, name, by)

    # -- writes ----------------------------------------------------------------------------
    def create(
        self,
        job_id: str,
        request: JobRequest,
        *,
        token: str,
        webhook_url: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> tuple[JobRecord, bool]:
        """Create a QUEUED job unless one exists; returns the job and whether it is new. A
        webhook URL or metadata subscribes the caller (see :meth:`enqueue`)."""
        subscription = None
        if webhook_url is not None or metadata:
            subscription = Subscription.new(webhook_url=webhook_url, metadata=metadata)
        found = self.enqueue(job_id, request, token=token, subscription=subscription)
        return found.job, found.created

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
        now = self._clock()
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
        keys = [
            self.keys.job(job_id),
            self.keys.history(job_id),
            self.keys.active,
            self.keys.state_index(JobState.QUEUED.value),
            self.keys.created,
            self.keys.subscriptions(job_id),
            self.keys.hooks(job_id),
            self.keys.webhooks_due,
            queue,
        ]
        args = [
            now,
            entry,
            JobState.QUEUED.value,
            subscription.sub_id if subscription else "",
            subscription.to_json() if subscription else "",
            "1" if subscription and subscription.webhook_url else "0",
            max_subscribers,
            state_list(tuple(refused)),
            message,
            *_pairs(fields),
        ]
        return _Creation(job_id, fields, lambda client: self._create(keys, args, client=client))

    def _found(self, call: _Creation, result: Any) -> Enqueue:
        created, _, subscribed = result
        if created:  # what was written is the whole job: no need to read it back
            metrics.JOBS_ENTERED.labels(JobState.QUEUED.value).inc()
            job = JobRecord.from_hash(call.job_id, call.fields)
        else:
            found = self.get(call.job_id)
            assert found is not None, "job vanished right after create"
            job = found
        return Enqueue(job, bool(created), int(subscribed))

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
        durable: bool = False,
        step: Step | None = None,
    ) -> bool:
        """Apply a move when the job is in ``expect`` and holds ``token``; False when it is not.

        ``to=None`` keeps the state (a guarded update). ``token=None`` skips the token check
        (for operator actions). ``unless_subscribed`` applies the move only while the job has
        no subscriber left. ``durable`` waits for replicas (see :mod:`worker.pipeline.durable`).
        ``step`` is the job's next message, sent by the same step: onto its queue when due
        now, else into the schedule (:mod:`worker.pipeline.schedule`).
        Raises IllegalTransition for a move the machine does not have.
        """
        expected = [expect] if isinstance(expect, JobState) else list(expect)
        if to is not None:
            bad = [s for s in expected if (s, to) not in TRANSITIONS]
            if bad:
                raise IllegalTransition(f"no transition {bad[0].value} -> {to.value}")
        now = self._clock()
        entry = {"to": to.value if to else None, "at": now, "event": event, **(detail or {})}
        set_pairs = _pairs({k: json.dumps(v) for k, v in (fields or {}).items()})
        incr_pairs = _pairs({k: str(int(v)) for k, v in (incr or {}).items()})
        queue, message = self.encode(step) if step is not None else (self.keys.prefix, "")
        keys = [
            self.keys.job(job_id),
            self.keys.history(job_id),
            self.keys.active,
            self.keys.webhooks_due,
            self.keys.in_flight,
            self.keys.ended,
            self.keys.subscriptions(job_id),
            self.keys.hooks(job_id),
            self.keys.schedule,
            self.keys.schedule_messages,
            self.keys.schedule_wake,
            queue,
        ]
        args = [
            state_list(tuple(expected)),
            token or "",
            to.value if to else "",
            new_token or "",
            now,
            json.dumps(entry),
            self._retention_s,
            state_list(TERMINAL_STATES),
            state_list(SLOT_FREE_STATES),
            self.keys.state_index_prefix,
            "1" if unless_subscribed else "0",
            repr(now + step.countdown_s) if step is not None else "0",
            message,
            len(set_pairs) // 2,
            *set_pairs,
            *incr_pairs,
        ]
        if durable and self._durability.replicas:
            result = self._durability.write(
                lambda client: self._advance(keys=keys, args=args, client=client),
                applied=lambda r: bool(r[0]),
                landed=lambda: self._holds(job_id, new_token or token or "", to),
                touch=self.keys.job(job_id),
                what=f"job {job_id}'s move to {to.value if to else 'its state'}",
            )
        else:
            result = self._advance(keys=keys, args=args)
        ok, was, *after = result
        if not ok and new_token and self._holds(job_id, new_token, to):
            # Refused because an earlier send of this very move (its reply lost, the client
            # retried) applied it: only this call knows new_token, so the move is ours.
            ok, was, after = 1, expected[0].value, []
        if ok and to is not None and text(was) != to.value:
            self._moved(job_id, text(was), to, event, _json_text(after[0]) if after else None)
        return bool(ok)

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
        raw_token, raw_state = raw
        if raw_token is None or text(raw_token) != token:
            return False
        return state is None or (raw_state is not None and text(raw_state) == state.value)

    def annotate(self, job_id: str, fields: Mapping[str, Any]) -> bool:
        """Set bookkeeping fields of an existing job without moving it; False when it is gone."""
        pairs = _pairs({k: json.dumps(v) for k, v in fields.items()})
        return bool(self._annotate(keys=[self.keys.job(job_id)], args=pairs))

    def first_callback_within(self, job_id: str, seconds: float) -> bool:
        """True for the first Vidgo callback of a job within ``seconds`` (later ones repeat it)."""
        key = self.keys.callback_debounce(job_id)
        return bool(self._redis.set(key, "1", nx=True, px=max(1, int(seconds * 1000))))

    def ended_before(self, at: float, *, limit: int = 1000) -> list[tuple[str, float]]:
        """(job id, ended at) of jobs that ended before ``at``, oldest first."""
        pairs = cast(
            list[tuple[Any, float]],
            self._redis.zrangebyscore(
                self.keys.ended, "-inf", at, start=0, num=limit, withscores=True
            ),
        )
        return [(self.keys.job_id_of(key), float(score)) for key, score in pairs]

    def forget(self, job_id: str) -> None:
        """Remove an ended job's record, history and deliveries, and every index entry."""
        key = self.keys.job(job_id)
        pipe = self._redis.pipeline()
        subs = [
            text(m) for m in cast(list[Any], self._redis.hkeys(self.keys.subscriptions(job_id)))
        ]
        pipe.delete(
            key,
            self.keys.history(job_id),
            self.keys.subscriptions(job_id),
            self.keys.hooks(job_id),
            self.keys.hook_status(job_id),
            *(self.keys.deliveries(job_id, sub) for sub in subs),
        )
        pipe.zrem(
            self.keys.webhooks_due, *(self.keys.outbox_member(job_id, sub) for sub in subs or [""])
        )
        pipe.hdel(self.keys.schedule_messages, key)
        indexes = [self.keys.ended, self.keys.active, self.keys.in_flight, self.keys.schedule]
        indexes += [self.keys.created, *(self.keys.state_index(s.value) for s in JobState)]
        for index in indexes:
            pipe.zrem(index, key)
        pipe.execute()

    def active_job_ids(self, *, older_than_s: float = 0.0, limit: int = 1000) -> list[str]:
        """Ids of non-terminal jobs not updated for ``older_than_s`` seconds, oldest first."""
        cutoff = self._clock() - older_than_s
        keys = cast(
            list[Any],
            self._redis.zrangebyscore(self.keys.active, "-inf", cutoff, start=0, num=limit),
        )
        return [self.keys.job_id_of(k) for k in keys]


@dataclass(frozen=True)
class NewJob:
    """One job to find or create: its id, request, first step token, the caller's
    subscription, and the first message to send when it is new."""

    job_id: str
    request: JobRequest
    token: str
    subscription: Subscription | None = None
    step: Step | None = None


@dataclass(frozen=True)
class _Creation:
    job_id: str
    fields: dict[str, str]
    run: Callable[[Any], Any]


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
