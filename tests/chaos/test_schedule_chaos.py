"""Chaos on the schedule: the worker holding the promoter's lease is SIGKILLed while every job
waits in the schedule, then Redis restarts from its append-only file. Nothing is lost, nothing
is paid twice, and no poll acts twice (the step token guards every duplicate)."""

from __future__ import annotations

from collections import Counter

import pytest
import redis

from tests.chaos.audit import audit
from tests.chaos.deadlines import settle_s
from tests.chaos.test_chaos import states
from tests.waiting import wait_until
from vidgo_stems.devstack.redis_server import RedisServer
from vidgo_stems.pipeline.states import JobState

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(600)]


def test_the_schedule_survives_a_killed_promoter_and_a_redis_restart(chaos):
    with RedisServer(appendonly=True) as own:
        client = redis.Redis.from_url(own.url)
        try:
            stack = chaos(
                redis=(client, own.url),
                emulator={"run_s": 8.0},
                VIDGO_STEMS_POLL_INITIAL_S="1.5",
                VIDGO_STEMS_POLL_MAX_S="2",
                VIDGO_STEMS_POLL_MIN_INTERVAL_S="1",
                VIDGO_STEMS_STALL_TIMEOUT_S="600",
            )
            first = stack.start_worker(concurrency=2, name="first")
            job_ids = [
                stack.enqueue(stack.track_url(f"s{n}"), output_type="vocals") for n in range(12)
            ]
            wait_until(
                lambda: all(stack.job(j).polls >= 1 for j in job_ids),
                timeout_s=settle_s(stack, jobs=12, slots=2, recoveries=0),
                what="every job to be polling",
                seen=lambda: states(stack, job_ids),
            )
            lease = client.get(stack.ledger.keys.promoter_lease)
            assert lease is not None and lease.decode().startswith("first-")
            first.kill()  # SIGKILL: the promoter and its pool die with the lease held
            waiting = client.zcard(stack.ledger.keys.schedule)
            own.restart()  # ... and Redis restarts from its append-only file
            assert client.zcard(stack.ledger.keys.schedule) == waiting > 0
            stack.start_worker(concurrency=2, name="second")
            views = stack.wait_all(job_ids, timeout_s=settle_s(stack, jobs=12, slots=2))
            polls = {v.job_id: stack.ledger.get(v.job_id).polls for v in views}
        finally:
            client.close()
    not_done = [(v.job_id, v.state.value, v.error) for v in views if v.state is not JobState.DONE]
    assert not not_done, not_done
    assert audit(stack, views)["paid"] == len(views)
    # Each poll that acted asked Vidgo once and counted itself; a duplicate delivery asks
    # nothing. One poll per job may have asked just before the kill without recording it.
    asked = Counter(e["task_id"] for e in stack.emulator.record("detail"))
    for view in views:
        done = polls[view.job_id]
        assert done <= asked[view.vidgo_task_id] <= done + 1, (view.job_id, done, asked)
