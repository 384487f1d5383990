"""What the whole cluster looks like right now, read from Redis in a few round trips.

One :class:`Snapshot` feeds both ``vidgo-stems stats`` and the Prometheus collector that every
metrics endpoint registers. These values describe the cluster, not the process that serves
them, so every endpoint reports the same numbers: aggregate them with ``max``, never ``sum``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from vidgo_stems.heartbeat import workers_seen
from vidgo_stems.keys import Keys
from vidgo_stems.pipeline.ledger import Ledger
from vidgo_stems.pipeline.states import POLLING_STATES, JobState
from vidgo_stems.settings import Settings
from vidgo_stems.vidgo.gate import VidgoGate
from vidgo_stems.vidgo.limits import Kind, configured_rate

#: Jobs waiting for their next poll.
#: At most this many polling jobs are read to find overdue polls (the oldest created first).
OVERDUE_SAMPLE = 20_000
#: A poll this late counts as overdue (a poll a moment late is only in the queue).
OVERDUE_AFTER_S = 5.0


@dataclass
class Bucket:
    rate_per_s: float
    tokens: float
    burst: float


@dataclass
class Snapshot:
    at: float
    jobs: dict[str, int]
    queues: dict[str, int]
    in_flight: int
    in_flight_cap: int
    polls_pending: int
    polls_overdue: int
    oldest_overdue_s: float
    finished_last_min: int
    finished_last_10min: int
    buckets: dict[str, Bucket]
    cooldown_s: float
    submits_paused_s: float
    workers: list[str]
    counters: dict[str, int] = field(default_factory=dict)
    cooldown_reason: str = ""
    submits_paused_reason: str = ""
    credits_balance: int | None = None
    credits_balance_age_s: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def take_snapshot(
    client: redis.Redis, ledger: Ledger, settings: Settings, queues: list[str]
) -> Snapshot:
    """Read the cluster's state: about a dozen commands plus one pipelined read of the polling
    jobs' due times."""
    keys = Keys(settings.redis_key_prefix)
    now = time.time()
    pipe = client.pipeline(transaction=False)
    for state in JobState:
        pipe.zcard(keys.state_index(state.value))
    for queue in queues:
        pipe.llen(queue)
    pipe.zcard(keys.in_flight)
    pipe.zcount(keys.ended, now - 60, "+inf")
    pipe.zcount(keys.ended, now - 600, "+inf")
    for kind in ("submit", "query"):
        pipe.hmget(keys.rate_bucket(kind), ["tokens", "ts", "rate"])
    for state in POLLING_STATES:
        pipe.zrange(keys.state_index(state.value), 0, OVERDUE_SAMPLE - 1)
    out = iter(pipe.execute())
    jobs = {state.value: int(next(out)) for state in JobState}
    queue_depths = {queue: int(next(out)) for queue in queues}
    in_flight = int(next(out))
    last_min, last_10min = int(next(out)), int(next(out))
    kinds: tuple[Kind, Kind] = ("submit", "query")
    buckets: dict[str, Bucket] = {
        kind: _bucket(next(out), now, *configured_rate(settings, kind)) for kind in kinds
    }
    polling = [member for state in POLLING_STATES for member in next(out)]
    overdue, oldest = _overdue(client, polling, now)
    gate = VidgoGate(client, prefix=settings.redis_key_prefix)
    cooldown, pause, balance = gate.cooldown(), gate.submit_pause(), gate.balance()
    return Snapshot(
        at=now,
        jobs=jobs,
        queues=queue_depths,
        in_flight=in_flight,
        in_flight_cap=settings.max_in_flight,
        polls_pending=sum(jobs[s.value] for s in POLLING_STATES),
        polls_overdue=overdue,
        oldest_overdue_s=oldest,
        finished_last_min=last_min,
        finished_last_10min=last_10min,
        buckets=buckets,
        cooldown_s=cooldown.remaining_s if cooldown else 0.0,
        submits_paused_s=pause.remaining_s if pause else 0.0,
        workers=workers_seen(client, settings.redis_key_prefix),
        counters=ledger.counters(),
        cooldown_reason=cooldown.reason if cooldown else "",
        submits_paused_reason=pause.reason if pause else "",
        credits_balance=balance[0] if balance else None,
        credits_balance_age_s=round(now - balance[1], 1) if balance else None,
    )


def _bucket(raw: list[Any], now: float, rate: float, burst: float) -> Bucket:
    """A token bucket's level now, refilled since its last use as the reserve script would."""
    tokens, ts, stored_rate = (float(v) if v is not None else None for v in raw)
    current_rate = stored_rate if stored_rate is not None else rate
    if tokens is None or ts is None:
        return Bucket(rate_per_s=current_rate, tokens=burst, burst=burst)
    level = min(burst, tokens + max(0.0, now - ts) * current_rate)
    return Bucket(rate_per_s=current_rate, tokens=round(level, 3), burst=burst)


def _overdue(client: redis.Redis, job_keys: list[Any], now: float) -> tuple[int, float]:
    """How many polling jobs are past their due time by more than OVERDUE_AFTER_S, and the
    oldest such lateness in seconds."""
    if not job_keys:
        return 0, 0.0
    pipe = client.pipeline(transaction=False)
    for key in job_keys:
        pipe.hget(key, "next_due_at")
    count, oldest = 0, 0.0
    for raw in pipe.execute():
        if raw is None:
            continue
        late = now - float(cast(bytes, raw))
        if late > OVERDUE_AFTER_S:
            count += 1
            oldest = max(oldest, late)
    return count, round(oldest, 3)


class ClusterCollector(Collector):
    """Scrape-time gauges from :func:`take_snapshot`; a Redis error leaves them out of that
    scrape (and sets ``vidgo_stems_cluster_scrape_ok`` to 0) instead of failing the scrape."""

    def __init__(
        self, client: redis.Redis, ledger: Ledger, settings: Settings, queues: list[str]
    ) -> None:
        self._client, self._ledger, self._settings, self._queues = client, ledger, settings, queues

    def collect(self) -> Iterator[Any]:
        ok = GaugeMetricFamily(
            "vidgo_stems_cluster_scrape_ok", "1 when the cluster gauges could be read from Redis."
        )
        try:
            snap = take_snapshot(self._client, self._ledger, self._settings, self._queues)
        except (redis.RedisError, OSError):
            ok.add_metric([], 0)
            yield ok
            return
        ok.add_metric([], 1)
        yield ok
        yield from _families(snap)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


#: The cluster's single-valued gauges: (name, help, the snapshot's attribute).
_SCALARS = (
    ("vidgo_stems_inflight_slots_used", "Vidgo in-flight slots held.", "in_flight"),
    ("vidgo_stems_inflight_slots_cap", "The in-flight cap (max_in_flight).", "in_flight_cap"),
    ("vidgo_stems_polls_pending", "Jobs waiting for a poll.", "polls_pending"),
    (
        "vidgo_stems_polls_overdue",
        f"Jobs whose poll is more than {OVERDUE_AFTER_S:g}s past due.",
        "polls_overdue",
    ),
    (
        "vidgo_stems_poll_oldest_overdue_seconds",
        "How far past due the most overdue poll is.",
        "oldest_overdue_s",
    ),
    (
        "vidgo_stems_rate_limit_cooldown_seconds",
        "Seconds left in a cool-down after a 429.",
        "cooldown_s",
    ),
    (
        "vidgo_stems_submits_paused_seconds",
        "Seconds left in a pause of submits for lack of credits.",
        "submits_paused_s",
    ),
)


def _labelled(
    family: type[GaugeMetricFamily] | type[CounterMetricFamily],
    name: str,
    doc: str,
    label: str,
    values: Mapping[str, float],
) -> Any:
    metric = family(name, doc, labels=[label])
    for key, value in values.items():
        metric.add_metric([key], value)
    return metric


def _families(snap: Snapshot) -> Iterator[Any]:
    yield _labelled(
        GaugeMetricFamily, "vidgo_stems_jobs", "Jobs in the ledger by state.", "state", snap.jobs
    )
    yield _labelled(
        GaugeMetricFamily,
        "celery_queue_length",
        "Messages waiting in a Celery queue.",
        "queue_name",
        snap.queues,
    )
    for name, doc, attribute in _SCALARS:
        yield _gauge(name, doc, getattr(snap, attribute))
    buckets = snap.buckets.items()
    yield _labelled(
        GaugeMetricFamily,
        "vidgo_stems_rate_bucket_tokens",
        "Tokens in the rate-limit bucket.",
        "kind",
        {kind: bucket.tokens for kind, bucket in buckets},
    )
    yield _labelled(
        GaugeMetricFamily,
        "vidgo_stems_rate_bucket_rate",
        "The bucket's current refill rate per second.",
        "kind",
        {kind: bucket.rate_per_s for kind, bucket in buckets},
    )
    yield _gauge("vidgo_stems_workers_seen", "Workers with a recent heartbeat.", len(snap.workers))
    if snap.credits_balance is not None and snap.credits_balance_age_s is not None:
        yield _gauge(
            "vidgo_stems_credits_balance",
            "The Vidgo credit balance last read.",
            snap.credits_balance,
        )
        yield _gauge(
            "vidgo_stems_credits_balance_age_seconds",
            "How long ago the balance was read (every VIDGO_STEMS_BALANCE_CHECK_S).",
            snap.credits_balance_age_s,
        )
    yield _labelled(
        CounterMetricFamily,
        "vidgo_stems_events",
        "Cluster-wide event counters kept in the ledger (retries, stalls, recoveries, ...).",
        "event",
        snap.counters,
    )
