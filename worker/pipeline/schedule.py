"""The schedule: every message that waits (a re-poll, a resubmission's backoff, a retry, a
deferral) waits in Redis, never in a worker's memory.

A hand-off that is not due at once writes its Celery message into a sorted set scored by due
time, in the same script that moves the job in the ledger (``lua/advance.lua``): one entry
per job, replaced by the job's next hand-off and removed when it ends. A *promoter* pushes due
entries onto their Celery queues with one script per batch (``lua/promote.lua``), which takes
each entry out in the same step that pushes it: a crash loses none, two promoters never push
one twice. It leaves a queue alone while it holds ``schedule_queue_depth`` messages, so due
work is pushed as fast as workers take it and never buried under a backlog.

Every worker runs a :class:`Promoter`; a short lease (``lua/lease.lua``) makes one active at a
time, and another takes over within :data:`LEASE_S` when it dies. The active one sleeps until
the next entry is due, or until a hand-off puts an earlier one in front (the wake list).

Celery countdowns are not used: Celery keeps them in worker memory, where a worker that dies
takes them along until the visibility timeout, and a worker holding ``worker_eta_task_limit``
of them stops consuming its queue.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any, cast

import redis

from vidgo_stems.keys import Keys
from vidgo_stems.observe import metrics

log = logging.getLogger(__name__)

#: A promoter that stops renewing its lease is replaced this many seconds later at most.
LEASE_S = 3.0
#: Entries pushed per script call (one round trip).
BATCH = 500

#: Turns a step into (the Celery queue it goes to, the message to push there, as JSON).
Encoder = Callable[[Any], tuple[str, str]]


def _lua(name: str) -> str:
    return resources.files("vidgo_stems.pipeline").joinpath("lua", f"{name}.lua").read_text()


@dataclass(frozen=True)
class Promoted:
    """What one promote call did."""

    pushed: int
    held: int  # due, but left for a queue that is full
    next_due: float | None  # when the earliest remaining entry is due


class Schedule:
    """Reads and promotes the schedule under one key prefix."""

    def __init__(self, client: redis.Redis, prefix: str = "vidgo-stems") -> None:
        self._redis = client
        self.keys = Keys(prefix)
        self._promote = client.register_script(_lua("promote"))
        self._lease = client.register_script(_lua("lease"))

    def promote(self, now: float, *, limit: int = BATCH, max_depth: int = 200) -> Promoted:
        """Push up to ``limit`` entries due by ``now`` onto their queues (oldest first)."""
        pushed, held, first = cast(
            list[Any],
            self._promote(
                keys=[self.keys.schedule, self.keys.schedule_messages],
                args=[repr(now), limit, max_depth],
            ),
        )
        text = first.decode() if isinstance(first, bytes) else str(first)
        return Promoted(int(pushed), int(held), float(text) if text else None)

    def add(self, entry: str, due: float, queue: str, message: str) -> None:
        """Schedule a message that no ledger move carries (a webhook's next attempt)."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.zadd(self.keys.schedule, {entry: due})
        pipe.hset(self.keys.schedule_messages, entry, f"{queue}\n{message}")
        pipe.lpush(self.keys.schedule_wake, "1")
        pipe.ltrim(self.keys.schedule_wake, 0, 0)
        pipe.execute()

    def due_at(self, entry: str) -> float | None:
        """When ``entry`` (a job key, for a job's next step) is due; None when not scheduled."""
        score = self._redis.zscore(self.keys.schedule, entry)
        return None if score is None else float(cast(float, score))

    def due_of(self, entries: list[str]) -> list[float | None]:
        """:meth:`due_at` of many entries in one round trip."""
        pipe = self._redis.pipeline(transaction=False)
        for entry in entries:  # ZMSCORE would need Redis 6.2
            pipe.zscore(self.keys.schedule, entry)
        return [None if s is None else float(s) for s in pipe.execute()]

    def size(self) -> int:
        return int(cast(int, self._redis.zcard(self.keys.schedule)))

    def overdue(self, now: float) -> tuple[int, float]:
        """How many entries are past due, and by how long the oldest one is."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.zcount(self.keys.schedule, "-inf", now)
        pipe.zrange(self.keys.schedule, 0, 0, withscores=True)
        count, first = pipe.execute()
        oldest = max(0.0, now - float(first[0][1])) if count and first else 0.0
        return int(count), oldest

    def hold_lease(self, owner: str, seconds: float = LEASE_S) -> bool:
        """Take or renew the promoter's lease; True while ``owner`` holds it."""
        return bool(self._lease(keys=[self.keys.promoter_lease], args=[owner, int(seconds * 1000)]))

    def release_lease(self, owner: str) -> None:
        if self._redis.get(self.keys.promoter_lease) in (owner, owner.encode()):
            self._redis.delete(self.keys.promoter_lease)

    def wait_for_wake(self, timeout_s: float) -> None:
        """Block until a hand-off schedules an entry ahead of all others, or ``timeout_s``.

        Redis truncates a BLPOP timeout to whole milliseconds and reads 0 as "for ever"
        (0.001 s can become 0), so the wait is rounded up to 10 ms steps."""
        self._redis.blpop(
            [self.keys.schedule_wake], timeout=max(0.01, math.ceil(timeout_s * 100) / 100)
        )


class Promoter(threading.Thread):
    """Pushes due schedule entries onto Celery queues while this worker holds the lease."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        *,
        max_depth: int,
        hostname: str = "",
        clock: Callable[[], float] = time.time,
        lease_s: float = LEASE_S,
    ) -> None:
        super().__init__(name="vidgo-stems-promoter", daemon=True)
        self.schedule = Schedule(client, prefix)
        self.owner = f"{hostname or socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._max_depth = max_depth
        self._clock = clock
        self._lease_s = lease_s
        self._stop_event = threading.Event()
        self.pushed = 0

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                wait_s = self.step()
                if wait_s:
                    self._sleep(wait_s)
            except (redis.RedisError, OSError) as exc:
                log.warning("schedule promoter: %s; trying again in 1s", exc)
                self._stop_event.wait(1.0)
        with contextlib.suppress(redis.RedisError, OSError):  # else it expires by itself
            self.schedule.release_lease(self.owner)

    def step(self) -> float:
        """One round: promote what is due if this worker holds the lease. Returns how long to
        wait before the next round (0: go on at once)."""
        renew_s = self._lease_s / 3
        if not self.schedule.hold_lease(self.owner, self._lease_s):
            return -renew_s  # not ours: look again later (negative: a plain sleep)
        now = self._clock()
        done = self.schedule.promote(now, limit=BATCH, max_depth=self._max_depth)
        self.pushed += done.pushed
        if done.pushed:
            metrics.SCHEDULE_PROMOTED.inc(done.pushed)
        if done.pushed >= BATCH:
            return 0.0
        if done.held:
            return 0.05  # queues are full: let the workers take some first
        if done.next_due is None:
            return renew_s
        return max(0.001, min(renew_s, done.next_due - self._clock()))

    def _sleep(self, wait_s: float) -> None:
        if wait_s < 0:  # not the active promoter: a plain sleep
            self._stop_event.wait(-wait_s)
            return
        # The active promoter sleeps on the wake list, so an earlier entry wakes it.
        self.schedule.wait_for_wake(wait_s)

    def stop(self) -> None:
        self._stop_event.set()
