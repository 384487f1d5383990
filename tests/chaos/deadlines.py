"""Deadlines of the chaos tests, derived from the stack under test (its settings and its
emulator's timings), times :data:`tests.sentinel.MARGIN`, never guessed.

A wait for "a job to be somewhere" is bounded by one job's way through the pipeline; a wait
for every job to end by the rounds the workers' slots need, plus the recoveries a test makes
happen (each is the sweep's grace past the task time limit, as the sweep waits it out).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from tests.sentinel import MARGIN


def vidgo_timing(stack) -> dict:
    return stack.emulator.http.get("/_emulator/config").json()


def one_job_s(stack, *, attempts: int = 1) -> float:
    """One job through the pipeline ``attempts`` times: Vidgo's queue and run time (with its
    slow answers and the stems' chunk delay), the longest poll interval, a retry's backoff, and
    a stage's soft time limit for download and post-processing."""
    s, vidgo = stack.settings, vidgo_timing(stack)
    faults = vidgo.get("faults") or {}
    vidgo_s = vidgo["queue_s"] + vidgo["run_s"] + faults.get("slow_s", 0.0)
    stage_s = s.poll_max_s + s.retry_backoff_max_s + s.resubmit_backoff_max_s
    return attempts * (vidgo_s + stage_s + s.task_soft_time_limit_s)


def recovery_s(stack) -> float:
    """How long the sweep takes to send on a job whose message was lost."""
    s = stack.settings
    durable = s.redis_durable_timeout_s if s.redis_durable_replicas else 0.0
    return s.sweep_grace_s + s.sweep_interval_s + s.task_time_limit_s + durable


def reach_s(stack, *, attempts: int = 1) -> float:
    """Deadline for a job to reach a given point on its way."""
    return MARGIN * one_job_s(stack, attempts=attempts)


def settle_s(
    stack, *, jobs: int, slots: int, attempts: int = 1, recoveries: int = 1, extra_s: float = 0
) -> float:
    """Deadline for ``jobs`` to end on ``slots`` worker processes."""
    rounds = math.ceil(jobs / slots)
    work = rounds * one_job_s(stack, attempts=attempts) + recoveries * recovery_s(stack)
    return MARGIN * (work + extra_s)


def redis_call_s(stack) -> float:
    """The longest one ledger call can take: every retry's socket timeout and backoff (the
    client's backoff is capped at 2 s)."""
    s = stack.settings
    return (s.redis_retries + 1) * s.redis_socket_timeout_s + s.redis_retries * 2.0


def wait_progress(
    count: Callable[[], int],
    done: Callable[[], bool],
    *,
    stall_s: float,
    what: str,
    interval_s: float = 0.2,
) -> int:
    """Wait until ``done()``, as long as ``count()`` keeps growing: give up only when it has
    not grown for ``stall_s``, naming what was awaited and where it stood. A long run on a busy
    machine is slow, not stuck; a stuck one is found within one stall."""
    seen, since = count(), time.monotonic()
    while not done():
        now = count()
        if now > seen:
            seen, since = now, time.monotonic()
        elif time.monotonic() - since > stall_s:
            raise TimeoutError(f"{what}: no progress for {stall_s:.0f}s, stuck at {seen}")
        time.sleep(interval_s)
    return count()
