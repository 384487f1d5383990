"""The job ledger in Redis: the source of truth for every job, whatever the broker says.

A job is one hash (``<prefix>:job:<id>``) plus a history list. Every change is a compare-and-set
done by one Lua script: it applies only when the job is in an expected state *and* holds the
expected step token. The token is the baton of the pipeline: each Celery message carries the
token current when it was sent, a stage acts only while its token is current, and a hand-off sets
a fresh token before the next message is sent. Duplicate deliveries, racing polls and restarted
workers therefore find a stale token and stop without side effects.

Field values are stored as JSON; ``state`` and ``token`` as plain strings.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, cast

import redis

from worker.models import JobRequest


class JobState(StrEnum):
    QUEUED = "QUEUED"
    SUBMITTING = "SUBMITTING"
    SUBMITTED = "SUBMITTED"
    RUNNING = "RUNNING"
    DOWNLOADING = "DOWNLOADING"
    POSTPROCESSING = "POSTPROCESSING"
    DONE = "DONE"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return self in (JobState.DONE, JobState.FAILED, JobState.CANCELLED)


S = JobState
ACTIVE_STATES = frozenset(s for s in JobState if not s.is_terminal)

#: Every legal move.
TRANSITIONS: frozenset[tuple[JobState, JobState]] = frozenset(
    {
        (S.QUEUED, S.SUBMITTING),
        (S.SUBMITTING, S.QUEUED),  # the submit never left, or submits are paused: try later
        (S.SUBMITTING, S.SUBMITTED),
        (S.SUBMITTED, S.RUNNING),
        (S.SUBMITTED, S.DOWNLOADING),
        (S.RUNNING, S.DOWNLOADING),
        (S.SUBMITTED, S.QUEUED),  # resubmit a failed or stalled Vidgo task
        (S.RUNNING, S.QUEUED),
        (S.DOWNLOADING, S.POSTPROCESSING),
        (S.POSTPROCESSING, S.DONE),
        # A self-move hands the baton on: a poll re-queueing, a deferral, the recovery sweep.
        *((s, s) for s in ACTIVE_STATES),
        *((s, S.FAILED) for s in ACTIVE_STATES),
        *((s, S.CANCELLED) for s in ACTIVE_STATES),
    }
)


class IllegalTransition(ValueError):
    """Raised when code asks for a move the state machine does not have (a programming error)."""


def new_token() -> str:
    return secrets.token_urlsafe(12)


# KEYS: job hash, history list, active-jobs zset, webhooks-due zset, Vidgo in-flight zset.
# A job that ends and has a webhook_url joins the webhooks-due zset in the same step, so its
# completion webhook cannot be lost between the end and the send. A job whose Vidgo work is
# over (downloading, or ended) leaves the in-flight set in the same step, so no slot leaks.
# ARGV: allowed states (",a,b,"), expected token ("" = any), new state ("" = keep),
#       new token ("" = keep), now, history entry JSON (without "from"), ttl on terminal,
#       terminal flag ("1"/"0"), n_set, then n_set field/value pairs, then field/increment pairs.
_ADVANCE = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {0, ''} end
if not string.find(ARGV[1], ',' .. state .. ',', 1, true) then return {0, state} end
if ARGV[2] ~= '' and redis.call('HGET', KEYS[1], 'token') ~= ARGV[2] then return {0, state} end
local n_set = tonumber(ARGV[9])
local i = 10
for _ = 1, n_set do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  i = i + 2
end
while i <= #ARGV do
  redis.call('HINCRBY', KEYS[1], ARGV[i], tonumber(ARGV[i + 1]))
  i = i + 2
end
local to = state
if ARGV[3] ~= '' then to = ARGV[3] end
redis.call('HSET', KEYS[1], 'state', to, 'updated_at', ARGV[5])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'token', ARGV[4]) end
redis.call('RPUSH', KEYS[2], '{"from":"' .. state .. '",' .. string.sub(ARGV[6], 2))
if ARGV[8] == '1' or to == 'DOWNLOADING' or to == 'POSTPROCESSING' then
  redis.call('ZREM', KEYS[5], KEYS[1])
end
if ARGV[8] == '1' then
  redis.call('ZREM', KEYS[3], KEYS[1])
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[7]))
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[7]))
  if redis.call('HEXISTS', KEYS[1], 'webhook_url') == 1 then
    redis.call('ZADD', KEYS[4], ARGV[5], KEYS[1])
  end
else
  redis.call('ZADD', KEYS[3], ARGV[5], KEYS[1])
end
return {1, state}
"""

# KEYS: job hash, history list, active-jobs zset. ARGV: now, history JSON, field/value pairs.
_CREATE = """
local state = redis.call('HGET', KEYS[1], 'state')
if state then return {0, state} end
local i = 3
while i <= #ARGV do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  i = i + 2
end
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[1], KEYS[1])
return {1, 'QUEUED'}
"""


@dataclass(frozen=True)
class JobRecord:
    """A snapshot of one job as the ledger holds it."""

    job_id: str
    state: JobState
    token: str
    request: JobRequest
    created_at: float
    updated_at: float
    vidgo_task_id: str | None = None
    vidgo_task_ids: tuple[str, ...] = ()
    vidgo_status: str | None = None
    vidgo_progress: int | None = None
    submitted_at: float | None = None
    submit_attempts: int = 0
    polls: int = 0
    live_task_ids: tuple[str, ...] = ()
    attempt_empty_polls: dict[str, int] = field(default_factory=dict)
    next_due_at: float | None = None
    stem_urls: dict[str, str] = field(default_factory=dict)
    stems: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] | None = None
    manifest_path: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    callback_token: str | None = None
    webhook_url: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    webhook_status: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_hash(cls, job_id: str, raw: Mapping[Any, Any]) -> JobRecord:
        values = {_text(k): _text(v) for k, v in raw.items()}
        decoded: dict[str, Any] = {}
        for key, value in values.items():
            if key in ("state", "token"):
                continue
            try:
                decoded[key] = json.loads(value)
            except json.JSONDecodeError:
                decoded[key] = value
        known = {f for f in cls.__dataclass_fields__ if f not in ("job_id", "state", "token")}
        kwargs = {k: v for k, v in decoded.items() if k in known}
        kwargs["request"] = JobRequest.model_validate(kwargs["request"])
        kwargs["vidgo_task_ids"] = tuple(kwargs.get("vidgo_task_ids") or ())
        kwargs["live_task_ids"] = tuple(kwargs.get("live_task_ids") or ())
        return cls(
            job_id=job_id,
            state=JobState(values["state"]),
            token=values.get("token", ""),
            extra={k: v for k, v in decoded.items() if k not in known},
            **kwargs,
        )


class Ledger:
    """Reads and compare-and-sets jobs in Redis. Safe to share between threads."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = "vidgo-stems",
        retention_s: int = 30 * 24 * 3600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self._retention_s = retention_s
        self._clock = clock
        self._advance = client.register_script(_ADVANCE)
        self._create = client.register_script(_CREATE)

    # -- keys: every Redis key this project writes is named here ---------------------------
    def job_key(self, job_id: str) -> str:
        return f"{self._prefix}:job:{job_id}"

    def history_key(self, job_id: str) -> str:
        return f"{self._prefix}:job:{job_id}:history"

    @property
    def active_key(self) -> str:
        return f"{self._prefix}:jobs:active"

    @property
    def counters_key(self) -> str:
        return f"{self._prefix}:counters"

    @property
    def in_flight_key(self) -> str:
        return f"{self._prefix}:vidgo:in-flight"

    @property
    def webhooks_due_key(self) -> str:
        return f"{self._prefix}:webhooks:due"

    def deliveries_key(self, job_id: str) -> str:
        return f"{self._prefix}:job:{job_id}:webhooks"

    def job_id_of(self, key: Any) -> str:
        """The job id in a job key (members of the active and webhooks-due sets are keys)."""
        return _text(key).removeprefix(self.job_key(""))

    @property
    def redis(self) -> redis.Redis:
        return self._redis

    @property
    def retention_s(self) -> int:
        return self._retention_s

    # -- reads -----------------------------------------------------------------------------
    def get(self, job_id: str) -> JobRecord | None:
        raw = cast(Mapping[Any, Any], self._redis.hgetall(self.job_key(job_id)))
        return JobRecord.from_hash(job_id, raw) if raw else None

    def history(self, job_id: str) -> list[dict[str, Any]]:
        items = cast(list[Any], self._redis.lrange(self.history_key(job_id), 0, -1))
        return [json.loads(item) for item in items]

    def counters(self) -> dict[str, int]:
        raw = cast(Mapping[Any, Any], self._redis.hgetall(self.counters_key))
        return {_text(k): int(v) for k, v in raw.items()}

    def bump_counter(self, name: str, by: int = 1) -> None:
        self._redis.hincrby(self.counters_key, name, by)

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
        """Create a QUEUED job unless one exists; returns the job and whether it is new."""
        now = self._clock()
        optional = {"webhook_url": webhook_url, "metadata": dict(metadata) if metadata else None}
        fields = {
            **{k: json.dumps(v) for k, v in optional.items() if v is not None},
            "state": JobState.QUEUED.value,
            "token": token,
            "request": json.dumps(request.model_dump(mode="json")),
            "created_at": json.dumps(now),
            "updated_at": json.dumps(now),
            "callback_token": json.dumps(secrets.token_urlsafe(24)),
        }
        entry = json.dumps({"from": None, "to": "QUEUED", "at": now, "event": "enqueued"})
        created, _ = self._create(
            keys=[self.job_key(job_id), self.history_key(job_id), self.active_key],
            args=[now, entry, *_pairs(fields)],
        )
        if created:  # what was written is the whole job: no need to read it back
            return JobRecord.from_hash(job_id, fields), True
        job = self.get(job_id)
        assert job is not None, "job vanished right after create"
        return job, False

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
    ) -> bool:
        """Apply a move when the job is in ``expect`` and holds ``token``; False when it is not.

        ``to=None`` keeps the state (a guarded update). ``token=None`` skips the token check
        (for operator actions). Raises IllegalTransition for a move the machine does not have.
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
        ok, _ = self._advance(
            keys=[
                self.job_key(job_id),
                self.history_key(job_id),
                self.active_key,
                self.webhooks_due_key,
                self.in_flight_key,
            ],
            args=[
                "," + ",".join(s.value for s in expected) + ",",
                token or "",
                to.value if to else "",
                new_token or "",
                now,
                json.dumps(entry),
                self._retention_s,
                "1" if to is not None and to.is_terminal else "0",
                len(set_pairs) // 2,
                *set_pairs,
                *incr_pairs,
            ],
        )
        return bool(ok)

    def active_job_ids(self, *, older_than_s: float = 0.0, limit: int = 1000) -> list[str]:
        """Ids of non-terminal jobs not updated for ``older_than_s`` seconds, oldest first."""
        cutoff = self._clock() - older_than_s
        keys = cast(
            list[Any],
            self._redis.zrangebyscore(self.active_key, "-inf", cutoff, start=0, num=limit),
        )
        return [self.job_id_of(k) for k in keys]


def _pairs(mapping: Mapping[str, Any]) -> list[Any]:
    out: list[Any] = []
    for key, value in mapping.items():
        out.extend((key, value))
    return out


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
