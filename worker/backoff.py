"""The one backoff formula: exponential growth from a base, capped, then jittered.

Every wait between tries uses it: stage retries (full jitter), resubmissions (half jitter),
webhook deliveries (±20 %), the balance read before a batch, and worker restarts.
"""

from __future__ import annotations

import random


def backoff_s(
    attempt: int,
    *,
    base_s: float,
    max_s: float,
    factor: float = 2.0,
    jitter: tuple[float, float] = (1.0, 1.0),
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before try ``attempt + 1`` (``attempt`` counts from 0).

    The ceiling is ``base_s * factor ** attempt`` capped at ``max_s``; the wait is drawn
    uniformly between ``jitter[0]`` and ``jitter[1]`` times the ceiling (``(0, 1)`` is "full
    jitter", which spreads many clients retrying at once).
    """
    ceiling = min(max_s, base_s * factor ** min(max(attempt, 0), 64))
    low, high = jitter
    if low == high:
        return round(ceiling * low, 3)
    return round((rng or random).uniform(ceiling * low, ceiling * high), 3)
