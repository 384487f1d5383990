"""The global limits hold across two worker processes: counted at the emulator and the ledger."""

from __future__ import annotations

import threading
import time

import pytest

from tests.support import Stack
from vidgo_stems.pipeline.states import JobState

pytestmark = pytest.mark.integration

SUBMIT_RATE, SUBMIT_BURST = 4.0, 2
QUERY_RATE, QUERY_BURST = 8.0, 4
CAP = 5


def most_in_any_window(times, window_s):
    times = sorted(times)
    best, j = 0, 0
    for i, start in enumerate(times):
        while j < len(times) and times[j] < start + window_s:
            j += 1
        best = max(best, j - i)
    return best


def test_rate_limits_and_the_in_flight_cap_hold_across_two_workers(
    redis_server, redis_client, emulator, tracks_url, tmp_path
):
    stack = Stack(
        redis_client,
        redis_server.url,
        emulator,
        tracks_url,
        tmp_path,
        VIDGO_STEMS_VIDGO_SUBMIT_RATE_PER_S=str(SUBMIT_RATE),
        VIDGO_STEMS_VIDGO_SUBMIT_BURST=str(SUBMIT_BURST),
        VIDGO_STEMS_VIDGO_QUERY_RATE_PER_S=str(QUERY_RATE),
        VIDGO_STEMS_VIDGO_QUERY_BURST=str(QUERY_BURST),
        VIDGO_STEMS_MAX_IN_FLIGHT=str(CAP),
        VIDGO_STEMS_IN_FLIGHT_WAIT_S="0.2",
    )
    try:
        stack.start_worker(concurrency=3, name="one")
        stack.start_worker(concurrency=3, name="two")
        since = max((e["at"] for e in emulator.record()), default=0.0)
        samples, done = [], threading.Event()

        def sample():
            while not done.is_set():
                samples.append(redis_client.zcard(stack.ledger.keys.in_flight))
                done.wait(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        job_ids = [stack.enqueue(stack.track_url(), output_type="vocals") for _ in range(30)]
        views = stack.wait_all(job_ids, timeout_s=120)
        done.set()
        sampler.join()
        assert {v.state for v in views} == {JobState.DONE}

        ours = {v.vidgo_task_id for v in views}
        record = [e for e in emulator.record() if e["at"] > since]
        submits = [e["at"] for e in record if e["kind"] == "submit"]
        queries = [
            e["at"] for e in record if e["kind"] in ("detail", "status") and e["task_id"] in ours
        ]
        assert len(submits) == 30 and len(queries) >= 30
        for window in (1.0, 3.0):
            # One request of slack for the gap between sending and the emulator's clock.
            assert most_in_any_window(submits, window) <= SUBMIT_BURST + SUBMIT_RATE * window + 1
            assert most_in_any_window(queries, window) <= QUERY_BURST + QUERY_RATE * window + 1
        # The limit was the brake: 30 submits at 4/s take at least 7 s.
        assert max(submits) - min(submits) >= (30 - SUBMIT_BURST) / SUBMIT_RATE - 0.5

        # In flight, from the ledger: from taking a slot (just before "submitting") until the
        # move to DOWNLOADING frees it.
        edges = []
        for view in views:
            start = next(h["at"] for h in view.history if h["event"] == "submitting")
            end = next(h["at"] for h in view.history if h.get("to") == "DOWNLOADING")
            edges += [(start, 1), (end, -1)]
        level, peak = 0, 0
        for _, step in sorted(edges, key=lambda e: (e[0], e[1])):
            level += step
            peak = max(peak, level)
        assert peak <= CAP and max(samples) <= CAP
        assert peak == CAP  # and the cap, not something else, was what held them back
        assert any(e["event"] == "submit_deferred" for v in views for e in v.history)
    finally:
        stack.stop()


def test_polls_are_spread_within_the_query_budget_so_worker_slots_do_not_wait_for_it(
    redis_server, redis_client, emulator, tracks_url, tmp_path
):
    rate, burst, jobs = 4.0, 4, 24
    stack = Stack(
        redis_client,
        redis_server.url,
        emulator,
        tracks_url,
        tmp_path,
        VIDGO_STEMS_VIDGO_SUBMIT_RATE_PER_S="20",
        VIDGO_STEMS_VIDGO_SUBMIT_BURST="20",
        VIDGO_STEMS_VIDGO_QUERY_RATE_PER_S=str(rate),
        VIDGO_STEMS_VIDGO_QUERY_BURST=str(burst),
        # Each job alone would be polled every 0.2 to 0.5 s: 24 jobs would ask 50+ times a
        # second, against a budget of 4.
        VIDGO_STEMS_POLL_INITIAL_S="0.3",
        VIDGO_STEMS_POLL_MAX_S="0.5",
        VIDGO_STEMS_POLL_MIN_INTERVAL_S="0.2",
    )
    try:
        with emulator.configured(run_s=10.0):
            stack.start_worker(concurrency=2, name="one")
            stack.start_worker(concurrency=2, name="two")
            since = max((e["at"] for e in emulator.record()), default=0.0)
            started = time.monotonic()
            job_ids = [stack.enqueue(stack.track_url(), output_type="vocals") for _ in range(jobs)]
            views = stack.wait_all(job_ids, timeout_s=120)
            elapsed = time.monotonic() - started
        assert {v.state for v in views} == {JobState.DONE}
        ours = {v.vidgo_task_id for v in views}
        record = [e for e in emulator.record() if e["at"] > since]
        queries = [
            e["at"] for e in record if e["kind"] in ("detail", "status") and e["task_id"] in ours
        ]
        for window in (1.0, 5.0):  # the budget holds, counted at the emulator
            assert most_in_any_window(queries, window) <= burst + rate * window + 1
        # ... and it held because polls were planned within it, not because worker slots slept
        # on rate tokens: the four slots waited for tokens a small share of the run.
        waited_s = stack.ledger.counters().get("query_wait_ms", 0) / 1000
        assert waited_s < 0.25 * elapsed * 4, (waited_s, elapsed)
        polled = [h for v in views for h in v.history if h["event"] == "polled"]
        assert len(polled) >= jobs
    finally:
        stack.stop()
