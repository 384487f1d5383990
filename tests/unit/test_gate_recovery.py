"""The shared cool-down and credits pause, failure classification, and the recovery sweep."""

from __future__ import annotations

import pytest

from tests.jobs import ManualClock, create_job, move_to
from tests.steps import StepLog
from vidgo_stems.models import parse_request
from vidgo_stems.pipeline.recovery import STEP_FOR_STATE, overdue_by, sweep
from vidgo_stems.pipeline.stages.context import TaskName
from vidgo_stems.pipeline.states import JobState
from vidgo_stems.vidgo.failures import is_permanent_failure
from vidgo_stems.vidgo.gate import VidgoGate

S = JobState


def test_cooldown_is_shared_and_only_ever_extended(fake_redis):
    one, other = VidgoGate(fake_redis, prefix="p"), VidgoGate(fake_redis, prefix="p")
    assert one.cooldown() is None
    assert one.cool_down(10, "429 Retry-After 10")
    assert not other.cool_down(2, "shorter 429")
    hold = other.cooldown()
    assert 9 < hold.remaining_s <= 10 and hold.reason == "429 Retry-After 10"
    assert other.cool_down(30, "longer")
    assert one.cooldown().remaining_s > 29


def test_submit_pause_and_resume(fake_redis):
    gate = VidgoGate(fake_redis, prefix="p")
    gate.pause_submits(300, "Insufficient credits")
    assert gate.submit_pause().reason == "Insufficient credits"
    assert gate.cooldown() is None
    gate.resume_submits()
    assert gate.submit_pause() is None


@pytest.mark.parametrize(
    "message",
    [
        "The prompt violates our content policy",
        "Content-policy violation",
        "Unsupported audio format",
        "Audio file is unreadable",
        "Could not decode the audio",
        "Invalid audio file",
        "File format not supported",
        "Audio is too long",
        "Input exceeds the maximum duration",
        "Failed to download audio_url",
        "corrupted file",
    ],
)
def test_failures_about_the_input_are_permanent(message):
    assert is_permanent_failure(message)


@pytest.mark.parametrize(
    "message",
    [
        "Audio separation failed, please try again",
        "Internal error",
        "GPU out of memory",
        "timeout",
        "worker crashed",
        "",
        None,
    ],
)
def test_other_failures_are_transient(message):
    assert not is_permanent_failure(message)


@pytest.fixture
def setup(make_fake_ledger, make_settings):
    clock = ManualClock(1000.0)
    ledger = make_fake_ledger(prefix="p", clock=clock)
    settings = make_settings(sweep_grace_s=30, task_soft_time_limit_s=90, task_time_limit_s=100)
    return ledger, clock, settings


def queued_job(ledger, name):
    request = parse_request({"audio_url": f"https://cdn.example/{name}.mp3"})
    create_job(ledger, name, request, token="t0")


def test_sweep_leaves_jobs_alone_until_they_are_overdue(setup):
    ledger, clock, settings = setup
    queued_job(ledger, "a")
    move_to(ledger, "a", S.SUBMITTED, new_token="t1", fields={"next_due_at": clock.now + 20})
    sent = StepLog(ledger.redis, "p")
    clock.now += 40
    assert sweep(ledger, settings, now=clock.now) == []
    assert overdue_by(ledger.get("a"), clock.now, settings) < 0
    clock.now += 20
    assert sweep(ledger, settings, now=clock.now) == ["a"]
    job = ledger.get("a")
    assert [(s.task, s.token) for s in sent] == [(TaskName.POLL, job.token)]
    assert job.token != "t1" and job.state is S.SUBMITTED
    assert ledger.counters()["recoveries"] == 1
    assert ledger.history("a")[-1]["event"] == "recovered"


def test_with_durable_writes_the_sweep_also_waits_out_a_hand_off_waiting_for_replicas(
    setup, make_settings
):
    """A durable hand-off sends its message only once the replicas hold the move; the sweep
    must not take that wait for a lost message."""
    ledger, clock, _ = setup
    durable = make_settings(
        sweep_grace_s=30,
        task_soft_time_limit_s=90,
        task_time_limit_s=100,
        redis_durable_replicas=1,
        redis_durable_timeout_s=40,
    )
    queued_job(ledger, "d")
    move_to(ledger, "d", S.SUBMITTED, new_token="t1", fields={"next_due_at": clock.now})
    clock.now += 60
    assert sweep(ledger, durable, now=clock.now) == []
    clock.now += 20
    assert sweep(ledger, durable, now=clock.now) == ["d"]


def test_a_message_from_before_the_kick_is_stale(setup):
    ledger, clock, settings = setup
    queued_job(ledger, "b")
    clock.now += 1000
    sweep(ledger, settings, now=clock.now)
    assert not ledger.advance("b", expect=S.QUEUED, token="t0", to=S.SUBMITTING, event="late")


def test_working_states_get_the_task_time_limit_before_a_kick(setup):
    ledger, clock, settings = setup
    queued_job(ledger, "c")
    move_to(ledger, "c", S.SUBMITTING)
    clock.now += 100
    assert sweep(ledger, settings, now=clock.now) == []
    clock.now += 100
    assert sweep(ledger, settings, now=clock.now) == ["c"]


def test_every_active_state_has_a_step_to_redo():
    assert set(STEP_FOR_STATE) == {s for s in JobState if not s.is_terminal}
