"""The chaos tests' progress-bounded wait: slow is not stuck, stuck is named."""

from __future__ import annotations

import itertools

import pytest

from tests.chaos.deadlines import wait_progress


def test_a_count_that_keeps_growing_is_waited_for_past_any_one_stall():
    calls = itertools.count()
    ticks = iter(range(100))
    assert wait_progress(
        lambda: next(calls), lambda: next(ticks) >= 40, stall_s=0.0, what="rows", interval_s=0.001
    )


def test_a_count_that_stops_growing_fails_naming_what_and_where_it_stood():
    with pytest.raises(TimeoutError, match=r"400 rows to end: no progress for 0s, stuck at 7"):
        wait_progress(
            lambda: 7, lambda: False, stall_s=0.05, what="400 rows to end", interval_s=0.01
        )
