"""The recovery sweep: drive on, from the ledger, jobs whose next message was lost.

A hand-off writes the next message in the same script that moves the job (onto its queue, or
into the schedule), so no crash separates the two. The sweep is the consistency check over
that: a message can still vanish when Redis restarts and loses its last writes, or when a
producer died between creating a job and sending its first message. Every hand-off records
when the next message is due (``next_due_at``); a job still in the same state well past that
(``sweep_grace_s``, plus the task time limit for stages that may be running, plus the durable
timeout when durable writes are on) and with no entry
waiting in the schedule is *kicked*: one script installs a fresh step token and sends the
matching message. Any late copy of the old message then finds a stale token and does nothing,
so a kick can never make work happen twice. A job kicked while SUBMITTING meets the
ambiguous-submit policy when its submit may have been sent, and is claimed again when not.

Every worker runs :class:`SweepThread`; a Redis lock lets one sweep run at a time. The same
sweep sends ``vidgo.purge`` to apply retention (``VIDGO_STEMS_PURGE_AFTER_S``) when it is set.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import redis

from vidgo_stems.errors import VidgoStemsError
from vidgo_stems.files.scratch import StemStore
from vidgo_stems.heartbeat import HEARTBEAT_INTERVAL_S, beat, write_heartbeat
from vidgo_stems.keys import Keys
from vidgo_stems.observe import metrics
from vidgo_stems.pipeline.ledger import Ledger
from vidgo_stems.pipeline.outbox import redispatch_overdue
from vidgo_stems.pipeline.record import JobRecord
from vidgo_stems.pipeline.schedule import Schedule
from vidgo_stems.pipeline.states import STATES, JobState, Step, new_token
from vidgo_stems.settings import Settings
from vidgo_stems.vidgo.gate import VidgoGate

log = logging.getLogger(__name__)

#: The task that drives a job on from each active state.
STEP_FOR_STATE = {s: info.task for s, info in STATES.items() if info.task is not None}


def overdue_by(job: JobRecord, now: float, settings: Settings) -> float:
    """Seconds past the point where the job's next message should have done something."""
    due = max(job.next_due_at or 0.0, job.updated_at)
    allowance = settings.sweep_grace_s
    if STATES[job.state].working:
        allowance += settings.task_time_limit_s
    if settings.redis_durable_replicas:
        # A durable hand-off sends its message only once the replicas hold the move.
        allowance += settings.redis_durable_timeout_s
    return now - (due + allowance)


def active_job_ids(ledger: Ledger, *, older_than_s: float = 0.0, limit: int = 1000) -> list[str]:
    """Ids of non-terminal jobs not updated for ``older_than_s`` seconds, oldest first."""
    cutoff = ledger.clock() - older_than_s
    keys = cast(
        list[Any],
        ledger.redis.zrangebyscore(ledger.keys.active, "-inf", cutoff, start=0, num=limit),
    )
    return [ledger.keys.job_id_of(k) for k in keys]


def sweep(
    ledger: Ledger,
    settings: Settings,
    *,
    now: float | None = None,
    limit: int = 1000,
) -> list[str]:
    """Kick every overdue active job that has no entry waiting in the schedule; returns the
    ids kicked."""
    now = time.time() if now is None else now
    kicked = []
    candidates = active_job_ids(ledger, older_than_s=settings.sweep_grace_s, limit=limit)
    schedule = Schedule(ledger.redis, ledger.keys.prefix)
    waiting = schedule.due_of([ledger.keys.job(job_id) for job_id in candidates])
    for job_id, due in zip(candidates, waiting, strict=True):
        if due is not None:
            continue  # its message waits in the schedule: the promoter will send it
        job = ledger.get(job_id)
        if job is None or job.state.is_terminal or overdue_by(job, now, settings) <= 0:
            continue
        late = round(overdue_by(job, now, settings), 1)
        if kick(ledger, job, now=now, event="recovered", detail={"overdue_s": late}):
            ledger.bump_counter("recoveries")
            metrics.RECOVERIES.inc()
            kicked.append(job_id)
            log.warning(
                "recovered job %s: %s had no live message; re-dispatched", job_id, job.state.value
            )
    return kicked


def kick(
    ledger: Ledger,
    job: JobRecord,
    *,
    now: float,
    event: str,
    detail: dict[str, object] | None = None,
) -> bool:
    """Send ``job``'s current step now under a fresh token; False if it moved meanwhile."""
    token = new_token()
    return ledger.advance(
        job.job_id,
        expect=job.state,
        token=job.token,
        to=job.state,
        new_token=token,
        fields={"next_due_at": now},
        incr={"recoveries": 1} if event == "recovered" else None,
        event=event,
        detail=detail,
        step=Step(STEP_FOR_STATE[job.state], job.job_id, token),
    )


def wake_waiting_submits(ledger: Ledger, *, now: float | None = None) -> list[str]:
    """Submit now every QUEUED job that waits for a later try (after a credits pause ends)."""
    now = time.time() if now is None else now
    woken = []
    for job_id in active_job_ids(ledger, older_than_s=-1e12, limit=1_000_000):
        job = ledger.get(job_id)
        waiting = job is not None and job.state is JobState.QUEUED and (job.next_due_at or 0) > now
        if waiting and job is not None and kick(ledger, job, now=now, event="woken"):
            woken.append(job_id)
    return woken


class SweepThread(threading.Thread):
    """Every worker runs one: a heartbeat every few seconds (``/readyz`` counts workers by it),
    and :func:`sweep` plus the webhook re-send at start and every ``sweep_interval_s``, one
    worker at a time."""

    def __init__(
        self,
        client: redis.Redis,
        ledger: Ledger,
        settings: Settings,
        *,
        dispatch_webhook: Callable[[str, float], None] | None = None,
        dispatch_purge: Callable[[], None] | None = None,
        hostname: str = "",
        heartbeat_file: Path | None = None,
        read_balance: Callable[[], int] | None = None,
    ) -> None:
        super().__init__(name="vidgo-stems-sweep", daemon=True)
        self._heartbeat_file = heartbeat_file
        self._read_balance = read_balance
        self._dispatch_purge = dispatch_purge
        self._redis = client
        self._ledger = ledger
        self._dispatch_webhook = dispatch_webhook
        self._settings = settings
        self._hostname = hostname or socket.gethostname()
        self._lock_key = Keys(settings.redis_key_prefix).sweep_lock
        self._stop_event = threading.Event()

    def run(self) -> None:
        next_sweep = 0.0
        while not self._stop_event.is_set():
            redis_ok = False
            try:
                beat(self._redis, self._settings.redis_key_prefix, self._hostname)
                redis_ok = True
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + self._settings.sweep_interval_s
                    self.clean_scratch()
                    self.sweep_once()
            except (redis.RedisError, OSError) as exc:
                log.warning("recovery sweep skipped: %s", exc)
            if self._heartbeat_file is not None:
                write_heartbeat(self._heartbeat_file, redis_ok=redis_ok)
            self._stop_event.wait(min(HEARTBEAT_INTERVAL_S, self._settings.sweep_interval_s))

    def clean_scratch(self) -> list[str]:
        """Every host: drop this host's scratch folders left by jobs finished elsewhere."""
        scratch = StemStore(self._settings.scratch_root)
        return scratch.remove_older_than(self._settings.scratch_ttl_s, now=time.time())

    def sweep_once(self) -> list[str]:
        lock_ms = max(1000, int(self._settings.sweep_interval_s * 1000))
        if not self._redis.set(self._lock_key, "1", nx=True, px=lock_ms):
            return []
        if self._dispatch_webhook is not None:
            redispatch_overdue(
                self._ledger,
                self._dispatch_webhook,
                now=time.time(),
                grace_s=self._settings.sweep_grace_s,
            )
        if self._dispatch_purge is not None and self._settings.purge_after_s:
            # Purging talks to the storage layer; that happens in a pool child (vidgo.purge),
            # never in this process, which forks the children (obstore is not fork-safe).
            self._dispatch_purge()
        swept = sweep(self._ledger, self._settings)
        self.check_balance()  # last: a slow Vidgo must not hold up the sweep
        return swept

    def check_balance(self) -> int | None:
        """Read Vidgo's balance when the last reading (by any worker) is older than
        ``balance_check_s``; the sweep lock makes it one worker at a time."""
        period = self._settings.balance_check_s
        if self._read_balance is None or not period:
            return None
        gate = VidgoGate(self._redis, prefix=self._settings.redis_key_prefix)
        last = gate.balance()
        now = time.time()
        if last is not None and now - last[1] < period:
            return None
        try:
            credits = self._read_balance()
        except VidgoStemsError as exc:
            log.warning("could not read the Vidgo balance: %s", exc.message)
            return None
        gate.record_balance(credits, at=now)
        return credits

    def stop(self) -> None:
        self._stop_event.set()
