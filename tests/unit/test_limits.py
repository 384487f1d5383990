"""Global Vidgo limits in Redis: token buckets with adaptive rate, and the in-flight cap."""

from __future__ import annotations

import random

import httpx
import pytest

from tests.jobs import ManualClock, create_job, move_to
from tests.steps import StepLog
from vidgo_stems.files.scratch import StemStore
from vidgo_stems.files.storage import FileStorage
from vidgo_stems.pipeline.stages import Outcome, StageContext, TaskName, run_submit
from vidgo_stems.pipeline.states import JobState
from vidgo_stems.vidgo import VidgoClient
from vidgo_stems.vidgo.gate import VidgoGate
from vidgo_stems.vidgo.limits import VidgoLimits


@pytest.fixture
def world(make_settings, fake_redis):
    client = fake_redis
    clock = ManualClock(1000.0)
    settings = make_settings(
        vidgo_submit_rate_per_s=2.0,
        vidgo_submit_burst=3,
        vidgo_query_rate_per_s=10.0,
        vidgo_query_burst=5,
        rate_floor_ratio=0.25,
        rate_recovery_s=60,
        max_in_flight=2,
    )
    slept = []
    limits = VidgoLimits(client, settings, clock=clock, sleep=slept.append)
    return client, limits, clock, settings, slept


def test_a_burst_goes_at_once_then_callers_queue_at_the_rate(world):
    _, limits, *_ = world
    waits = [limits.reserve("submit") for _ in range(7)]
    assert waits[:3] == [0, 0, 0]
    assert waits[3:] == pytest.approx([0.5, 1.0, 1.5, 2.0])


def test_no_window_admits_more_than_burst_plus_rate_times_length(world):
    _, limits, clock, *_ = world
    rng = random.Random(7)
    sent = []
    for _ in range(400):
        clock.now += rng.expovariate(6.0)  # callers arrive three times faster than the rate
        sent.append(clock.now + limits.reserve("submit"))
    sent.sort()
    for i, start in enumerate(sent):
        in_window = sum(1 for t in sent[i:] if t < start + 5.0)
        assert in_window <= 3 + 2.0 * 5.0 + 1e-9


def test_submits_and_queries_have_separate_buckets(world):
    _, limits, *_ = world
    for _ in range(3):
        limits.reserve("submit")
    assert limits.reserve("submit") > 0
    assert limits.reserve("query") == 0


def test_a_429_halves_the_rate_down_to_the_floor_and_it_recovers_slowly(world):
    _, limits, clock, *_ = world
    limits.penalise()
    assert limits.current_rate("submit") == 1.0 and limits.current_rate("query") == 5.0
    for _ in range(5):
        limits.penalise()
    assert limits.current_rate("submit") == 0.5  # floor: 25% of 2/s
    clock.now += 30
    limits.reserve("submit")
    assert limits.current_rate("submit") == pytest.approx(0.5 + 1.5 * 30 / 60)
    clock.now += 60
    limits.reserve("submit")
    assert limits.current_rate("submit") == 2.0


def test_throttle_sleeps_only_when_it_must(world):
    _, limits, _, _, slept = world
    for _ in range(4):
        limits.throttle("submit")
    assert slept == [pytest.approx(0.5)]


def test_the_client_throttles_every_call_and_a_429_lowers_the_rate(world):
    _, limits, _, settings, slept = world
    answers = [httpx.Response(429, json={"code": 429, "error": {"message": "slow down"}})]
    answers += [httpx.Response(200, json={"code": 200, "data": {"credits_amount": 5}})] * 8

    client = VidgoClient(
        settings, transport=httpx.MockTransport(lambda r: answers.pop(0)), limits=limits
    )
    with pytest.raises(Exception, match="slow down"):
        client.balance()
    assert limits.current_rate("query") == 5.0
    for _ in range(8):
        client.balance()
    assert len(slept) >= 3  # 9 queries against a burst of 5
    client.close()


def test_the_in_flight_cap_holds_and_the_ledger_frees_slots(world, make_fake_ledger):
    _, limits, *_ = world
    ledger = make_fake_ledger(prefix="vidgo-stems")
    for job_id in ("a", "b", "c"):
        create_job(ledger, job_id, token="t")
    assert limits.take_slot(ledger.keys.job("a")) and limits.take_slot(ledger.keys.job("b"))
    assert limits.take_slot(ledger.keys.job("a"))  # a job keeps its slot (resubmits)
    assert not limits.take_slot(ledger.keys.job("c"))
    move_to(ledger, "a", JobState.FAILED, event="end")
    assert limits.in_flight() == 1
    assert limits.take_slot(ledger.keys.job("c"))
    move_to(ledger, "b", JobState.SUBMITTING)
    assert limits.in_flight() == 2  # still waiting for Vidgo
    move_to(ledger, "b", JobState.DOWNLOADING)  # through SUBMITTED
    assert limits.in_flight() == 1


def test_a_submit_over_the_cap_waits_queued_and_submits_nothing(world, make_fake_ledger, tmp_path):
    client, limits, _, settings, _ = world
    sent = StepLog(client, "vidgo-stems")
    ledger = make_fake_ledger(prefix="vidgo-stems", encode=sent)
    calls = []
    vidgo = VidgoClient(settings, transport=httpx.MockTransport(lambda r: calls.append(r)))
    ctx = StageContext(
        settings=settings,
        ledger=ledger,
        gate=VidgoGate(client, prefix="vidgo-stems"),
        storage=FileStorage(tmp_path / "stored"),
        scratch=StemStore(tmp_path / "scratch"),
        vidgo_factory=lambda: vidgo,
        http_factory=lambda: None,
        limits=limits,
    )
    for other in ("x", "y"):
        assert limits.take_slot(ledger.keys.job(other))
    create_job(ledger, "job", token="t0")
    assert run_submit(ctx, "job", "t0") is Outcome.HANDED_OFF
    job = ledger.get("job")
    assert job.state is JobState.QUEUED and calls == []
    (step,) = sent
    assert step.task is TaskName.SUBMIT and step.countdown_s >= settings.in_flight_wait_s
    assert ledger.history("job")[-1]["reason"] == "2 jobs in flight"
    vidgo.close()


def test_no_request_goes_out_inside_a_cool_down_set_by_another_worker(world):
    client, limits, _, _, slept = world
    gate = VidgoGate(client, prefix="vidgo-stems")
    gate.cool_down(4.0, "429 elsewhere")
    tokens_before = client.hget(limits.bucket_key("query"), "tokens")

    def sleep(seconds):  # the cool-down runs out while this worker sleeps
        slept.append(seconds)
        client.delete("vidgo-stems:gate:cooldown")

    limits._sleep = sleep
    limits.throttle("query")
    assert len(slept) == 1 and 3.9 < slept[0] <= 4.0
    assert tokens_before is None  # no token was taken during the cool-down, one after it
    assert float(client.hget(limits.bucket_key("query"), "tokens")) == 4.0


def test_a_cool_down_that_starts_while_waiting_for_a_token_is_waited_out_before_sending(world):
    client, limits, _, _, slept = world
    gate = VidgoGate(client, prefix="vidgo-stems")
    for _ in range(3):
        limits.throttle("submit")  # the burst is spent: the next one waits for its token

    def sleep(seconds):
        slept.append(seconds)
        if len(slept) == 1:  # another worker gets a 429 during this wait
            gate.cool_down(2.0, "429 elsewhere")
        else:
            client.delete("vidgo-stems:gate:cooldown")

    limits._sleep = sleep
    limits.throttle("submit")
    assert slept[0] == pytest.approx(0.5)
    assert len(slept) == 2 and 1.9 < slept[1] <= 2.0
