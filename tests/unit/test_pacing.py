"""Poll pacing on fakeredis: polls are spaced so that every polling job together stays within
the query budget, and when it binds, tasks likely to have finished come first."""

from __future__ import annotations

import random

import pytest

from tests.jobs import ManualClock
from vidgo_stems.keys import Keys
from vidgo_stems.pipeline.pacing import HEADROOM, MIN_SAMPLES, PollPacing, bucket_of


@pytest.fixture
def world(make_settings, fake_redis):
    settings = make_settings(vidgo_query_rate_per_s=10.0, redis_key_prefix="pc")
    clock = ManualClock(1000.0)
    pacing = PollPacing(fake_redis, settings, clock=clock, rng=random.Random(3))
    return fake_redis, pacing, clock


def polling(client, n, state="SUBMITTED"):
    keys = Keys("pc")
    client.zadd(keys.state_index(state), {f"pc:job:{state}{i}": i for i in range(n)})


def test_a_few_jobs_keep_their_own_schedule(world):
    client, pacing, _ = world
    polling(client, 5)
    assert pacing.next_poll_s(3.0, model="base", elapsed_s=10) == 3.0


def test_many_jobs_are_spread_so_that_their_polls_fit_the_budget(world):
    client, pacing, _ = world
    polling(client, 600)
    polling(client, 400, "RUNNING")
    spacing = 1000 / (10.0 * HEADROOM)  # 125 s between polls of one job
    waits = [pacing.next_poll_s(3.0, model="base", elapsed_s=10) for _ in range(200)]
    assert all(0.9 * spacing <= w <= 1.1 * spacing for w in waits)
    rate = sum(1 / w for w in waits) / len(waits) * 1000  # polls per second, all jobs
    assert rate <= 10.0 * HEADROOM * 1.05
    assert pacing.next_poll_s(3.0, model="base", elapsed_s=10, live_tasks=2) >= 1.8 * spacing


def test_the_polling_count_is_cached_for_a_moment(world):
    client, pacing, clock = world
    polling(client, 100)
    assert pacing.polling_jobs() == 100
    polling(client, 300, "RUNNING")
    assert pacing.polling_jobs() == 100
    clock.now += 5
    assert pacing.polling_jobs() == 400


def test_when_the_budget_binds_tasks_likely_finished_are_polled_first(world):
    client, pacing, _ = world
    polling(client, 1000)
    for seconds in [60 + i for i in range(MIN_SAMPLES * 2)]:  # base tasks take 60 to 100 s
        pacing.record_duration("base", seconds)
    spacing = pacing.spacing_s()
    young = pacing.next_poll_s(3.0, model="base", elapsed_s=-spacing + 1)
    old = pacing.next_poll_s(3.0, model="base", elapsed_s=400)
    assert young > spacing * 1.3 and old < spacing * 0.9
    unknown = pacing.next_poll_s(3.0, model="other", elapsed_s=400)
    assert 0.9 * spacing <= unknown <= 1.1 * spacing  # no durations known: spacing only


def test_the_duration_histogram_reads_back_as_a_share(world):
    _, pacing, _ = world
    for seconds in [10] * 15 + [100] * 15:
        pacing.record_duration("base", seconds)
    assert pacing.finished_share("base", 5) == 0
    assert pacing.finished_share("base", 20) == 0.5
    assert pacing.finished_share("base", 200) == 1.0
    assert bucket_of(0.2) == 0 and bucket_of(100) > bucket_of(10)
