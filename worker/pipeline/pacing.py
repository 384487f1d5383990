"""Poll pacing: polls are spread so that their total rate stays within the shared query budget.

At scale the query rate (``VIDGO_STEMS_VIDGO_QUERY_RATE_PER_S``) is the real ceiling: with N
jobs polling, each may be asked about at most every ``N * live tasks / (rate * headroom)``
seconds on average. A poll is therefore due at the later of the job's own schedule and that
spacing, so an in-flight count far above what the budget can poll at full speed waits in the
schedule (cheap, in order) rather than in worker slots sleeping on rate tokens.

When the budget binds, polls go first to the tasks most likely to have finished: each model's
task durations are kept in Redis (a histogram in 20 % steps, fed by every finished task), and a
task that has run for less time than all but the fastest 10 % waits longer than the spacing,
one past the median waits less. With callbacks on, polls are a slow safety net already; pacing
only ever makes them later.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable
from typing import Any, cast

import redis

from vidgo_stems.keys import Keys
from vidgo_stems.pipeline.states import POLLING_STATES, JobState
from vidgo_stems.settings import Settings

#: The share of the query budget polls may plan to use (the rest: balance reads, status
#: calls, retries).
HEADROOM = 0.8
#: Durations are kept in buckets of this ratio (1.2: 20 % steps).
STEP = 1.2
#: Fewer finished tasks than this for a model: no ordering yet, only the spacing.
MIN_SAMPLES = 20
#: How long a process reuses the polling count and the duration histograms.
COUNT_TTL_S = 0.5
STATS_TTL_S = 30.0


def bucket_of(seconds: float) -> int:
    """The histogram bucket of a duration: bucket b holds durations up to STEP ** b."""
    return max(0, math.ceil(math.log(max(seconds, 1.0), STEP)))


class PollPacing:
    """The shared query budget and Vidgo's task durations, read with a short cache."""

    def __init__(
        self,
        client: redis.Redis,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self._redis = client
        self._settings = settings
        self._keys = Keys(settings.redis_key_prefix)
        self._clock = clock
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._count: tuple[float, int] | None = None
        self._stats: dict[str, tuple[float, list[tuple[float, int]], int]] = {}

    # -- the budget ---------------------------------------------------------------------------
    def polling_jobs(self) -> int:
        """Jobs waiting on Vidgo (being submitted, SUBMITTED or RUNNING), cached for
        COUNT_TTL_S."""
        now = self._clock()
        with self._lock:
            if self._count is not None and now - self._count[0] < COUNT_TTL_S:
                return self._count[1]
        pipe = self._redis.pipeline(transaction=False)
        for state in (JobState.SUBMITTING, *POLLING_STATES):
            pipe.zcard(self._keys.state_index(state.value))
        count = sum(int(n) for n in pipe.execute())
        with self._lock:
            self._count = (now, count)
        return count

    def spacing_s(self, live_tasks: int = 1) -> float:
        """The least average time between two polls of one job that keeps all polls within
        the budget."""
        rate = self._settings.vidgo_query_rate_per_s * HEADROOM
        return self.polling_jobs() * max(1, live_tasks) / rate

    # -- durations ----------------------------------------------------------------------------
    def record_duration(self, model: str, seconds: float) -> None:
        """A task of ``model`` finished ``seconds`` after its submit."""
        key = self._keys.task_durations(model)
        self._redis.hincrby(key, str(bucket_of(seconds)), 1)

    def finished_share(self, model: str, elapsed_s: float) -> float | None:
        """The share of ``model``'s tasks that had finished ``elapsed_s`` after their submit;
        None while fewer than MIN_SAMPLES are known."""
        buckets, total = self._histogram(model)
        if total < MIN_SAMPLES:
            return None
        done = sum(n for upper, n in buckets if upper <= elapsed_s)
        return done / total

    def _histogram(self, model: str) -> tuple[list[tuple[float, int]], int]:
        now = self._clock()
        with self._lock:
            cached = self._stats.get(model)
            if cached is not None and now - cached[0] < STATS_TTL_S:
                return cached[1], cached[2]
        raw = cast(dict[Any, Any], self._redis.hgetall(self._keys.task_durations(model)))
        buckets = sorted((STEP ** int(k), int(v)) for k, v in raw.items())
        total = sum(n for _, n in buckets)
        with self._lock:
            self._stats[model] = (now, buckets, total)
        return buckets, total

    # -- the plan -----------------------------------------------------------------------------
    def next_poll_s(
        self, own_s: float, *, model: str, elapsed_s: float, live_tasks: int = 1
    ) -> float:
        """When to poll next: the job's own countdown, or later when the budget binds (later
        still for a task unlikely to have finished, sooner for one likely to have)."""
        spacing = self.spacing_s(live_tasks)
        if spacing <= own_s:
            return own_s
        share = self.finished_share(model, elapsed_s + spacing)
        weight = 1.0
        if share is not None:
            weight = 1.5 if share < 0.1 else 0.75 if share > 0.5 else 1.0
        return round(max(own_s, spacing * weight * self._rng.uniform(0.9, 1.1)), 3)
