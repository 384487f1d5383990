"""The schedule's scripts on fakeredis: a waiting hand-off goes into the schedule in the same
step as the move, the promoter pushes it when due (once, oldest first, never past the queue
depth), one entry per job, and one promoter at a time."""

from __future__ import annotations

import json

import pytest

from tests.jobs import ManualClock, create_job, move_to
from tests.steps import StepLog
from vidgo_stems.pipeline.schedule import Promoter, Schedule
from vidgo_stems.pipeline.states import ACTIVE_STATES, JobState, Step, TaskName


@pytest.fixture
def world(fake_redis, make_fake_ledger):
    clock = ManualClock(1_000_000.0)
    log = StepLog(fake_redis, "s")
    ledger = make_fake_ledger(prefix="s", clock=clock, encode=log)
    return fake_redis, ledger, Schedule(fake_redis, "s"), clock, log


def poll_in(ledger, job_id, token, new_token, seconds):
    """A guarded hand-off that keeps the state, carrying a poll due in ``seconds``."""
    return ledger.advance(
        job_id,
        expect=ACTIVE_STATES,
        token=token,
        new_token=new_token,
        event="e",
        step=Step(TaskName.POLL, job_id, new_token, seconds),
    )


def queued(client, log):
    return [json.loads(m) for m in reversed(client.lrange(log.queue, 0, -1))]


def test_a_waiting_step_goes_into_the_schedule_and_is_pushed_once_when_due(world):
    client, ledger, schedule, clock, log = world
    create_job(ledger, "j", token="t0")
    assert poll_in(ledger, "j", "t0", "t1", 30)
    assert queued(client, log) == []
    assert schedule.due_at(ledger.keys.job("j")) == clock.now + 30
    before = schedule.promote(clock.now + 29.9)
    assert (before.pushed, before.next_due) == (0, clock.now + 30)
    done = schedule.promote(clock.now + 30)
    assert (done.pushed, done.held, done.next_due) == (1, 0, None)
    ((message),) = queued(client, log)
    assert (message["task"], message["token"]) == ("vidgo.poll", "t1")
    assert schedule.promote(clock.now + 99).pushed == 0  # gone from the schedule
    assert client.hlen("s:schedule:messages") == 0


def test_a_step_due_now_is_pushed_in_the_same_step_as_the_move(world):
    client, ledger, schedule, _clock, log = world
    create_job(ledger, "j", token="t0")
    assert poll_in(ledger, "j", "t0", "t1", 0)
    assert [m["token"] for m in queued(client, log)] == ["t1"]
    assert schedule.size() == 0


def test_a_refused_move_schedules_nothing(world):
    client, ledger, schedule, _clock, log = world
    create_job(ledger, "j", token="t0")
    assert not poll_in(ledger, "j", "stale", "t1", 0)
    assert not poll_in(ledger, "j", "stale", "t1", 30)
    assert queued(client, log) == [] and schedule.size() == 0


def test_one_entry_per_job_the_next_hand_off_replaces_it_and_an_end_removes_it(world):
    client, ledger, schedule, clock, log = world
    create_job(ledger, "j", token="t0")
    assert poll_in(ledger, "j", "t0", "t1", 30)
    assert poll_in(ledger, "j", "t1", "t2", 60)
    assert schedule.size() == 1 and schedule.due_at(ledger.keys.job("j")) == clock.now + 60
    assert [s.token for s in log] == ["t2"]
    move_to(ledger, "j", JobState.CANCELLED, event="x")
    assert schedule.size() == 0 and client.hlen("s:schedule:messages") == 0


def test_promotion_goes_oldest_first_and_stops_at_the_queue_depth(world):
    client, ledger, schedule, clock, log = world
    for n in range(5):
        create_job(ledger, f"j{n}", token="t0")
        assert poll_in(ledger, f"j{n}", "t0", f"t{n}", 10 - n)  # j4 is due first
    first = schedule.promote(clock.now + 100, max_depth=3)
    assert (first.pushed, first.held) == (3, 2)
    assert [m["job_id"] for m in queued(client, log)] == ["j4", "j3", "j2"]
    client.rpop(log.queue)  # a worker takes one
    second = schedule.promote(clock.now + 100, max_depth=3)
    assert (second.pushed, second.held) == (1, 1)
    assert [m["job_id"] for m in queued(client, log)] == ["j3", "j2", "j1"]


def test_an_earlier_entry_wakes_the_promoter_and_a_later_one_does_not(world):
    client, ledger, _schedule, _clock, _log = world
    for n, seconds in enumerate((30, 60, 10)):
        create_job(ledger, f"j{n}", token="t0")
        client.delete("s:schedule:wake")
        poll_in(ledger, f"j{n}", "t0", f"t{n}", seconds)
        woken = client.llen("s:schedule:wake") == 1
        assert woken is (seconds != 60), seconds


def test_one_promoter_holds_the_lease_and_another_takes_over_when_it_lapses(world):
    client, _ledger, schedule, _clock, _log = world
    assert schedule.hold_lease("a", 0.2)
    assert not schedule.hold_lease("b", 0.2)
    assert schedule.hold_lease("a", 0.2)  # renewed
    client.delete("s:schedule:lease")  # the holder died and its lease ran out
    assert schedule.hold_lease("b", 0.2)
    assert not schedule.hold_lease("a", 0.2)


def test_only_the_lease_holder_promotes(world):
    client, ledger, _schedule, clock, log = world
    create_job(ledger, "j", token="t0")
    poll_in(ledger, "j", "t0", "t1", 5)
    clock.now += 10
    holder = Promoter(client, "s", max_depth=10, hostname="a", clock=clock)
    other = Promoter(client, "s", max_depth=10, hostname="b", clock=clock)
    assert holder.step() >= 0 and holder.pushed == 1
    assert other.step() < 0 and other.pushed == 0
    assert len(queued(client, log)) == 1
