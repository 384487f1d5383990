"""The global limits hold across two worker processes: counted at the emulator and the ledger."""

from __future__ import annotations

import threading

import pytest

from tests.support import Stack
from worker.pipeline.ledger import JobState

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
                samples.append(redis_client.zcard(stack.ledger.in_flight_key))
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
