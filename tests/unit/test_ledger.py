"""The ledger's compare-and-set state machine, on fakeredis with Lua."""

from __future__ import annotations

import pytest

from tests.jobs import REQUEST, job_in
from tests.steps import create_job
from vidgo_stems.errors import IllegalTransition
from vidgo_stems.pipeline.recovery import active_job_ids
from vidgo_stems.pipeline.states import ACTIVE_STATES, TRANSITIONS, JobState

S = JobState


@pytest.fixture
def ledger(fake_ledger):
    return fake_ledger


def test_create_is_idempotent(ledger):
    job, created = create_job(ledger, "j1", REQUEST, token="t0")
    again, created_again = create_job(ledger, "j1", REQUEST, token="t1")
    assert (created, created_again) == (True, False)
    assert again.token == "t0"
    assert job.state is S.QUEUED


def test_advance_needs_the_expected_state_and_token(ledger):
    create_job(ledger, "j1", REQUEST, token="t0")
    assert not ledger.advance("j1", expect=S.QUEUED, token="wrong", to=S.SUBMITTING, event="e")
    assert not ledger.advance("j1", expect=S.SUBMITTING, token="t0", to=S.SUBMITTED, event="e")
    assert ledger.advance("j1", expect=S.QUEUED, token="t0", to=S.SUBMITTING, event="e")
    assert ledger.get("j1").state is S.SUBMITTING


def test_a_duplicate_cannot_move_the_job_twice(ledger):
    create_job(ledger, "j1", REQUEST, token="t0")
    moves = [
        ledger.advance(
            "j1",
            expect=S.QUEUED,
            token="t0",
            to=S.SUBMITTING,
            incr={"submit_attempts": 1},
            event="e",
        )
        for _ in range(3)
    ]
    assert moves == [True, False, False]
    assert ledger.get("j1").submit_attempts == 1


def test_handing_off_installs_the_new_token(ledger):
    job_in(ledger, S.SUBMITTED, new_token="t1", fields={"vidgo_task_id": "v1"})
    job = ledger.get("j1")
    assert (job.token, job.vidgo_task_id) == ("t1", "v1")
    assert not ledger.advance("j1", expect=S.SUBMITTED, token="t0", to=S.RUNNING, event="late")


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        (S.QUEUED, S.DONE),
        (S.DONE, S.QUEUED),
        (S.FAILED, S.SUBMITTING),
        (S.DOWNLOADING, S.RUNNING),
        (S.POSTPROCESSING, S.SUBMITTED),
        (S.QUEUED, S.DOWNLOADING),
    ],
)
def test_illegal_transitions_raise(ledger, src, dst):
    with pytest.raises(IllegalTransition):
        ledger.advance("j1", expect=src, token="t", to=dst, event="e")


def test_state_machine_leaves_an_ended_state_only_by_a_retry_and_never_leaves_done():
    from_ended = {(src, dst) for src, dst in TRANSITIONS if src.is_terminal}
    assert {src for src, _ in from_ended} == {S.FAILED, S.CANCELLED}
    assert {dst for _, dst in from_ended} == {
        S.QUEUED,
        S.SUBMITTED,
        S.DOWNLOADING,
        S.POSTPROCESSING,
    }
    assert all((s, S.FAILED) in TRANSITIONS for s in ACTIVE_STATES)


def test_history_records_every_move_in_order(ledger):
    create_job(ledger, "j1", REQUEST, token="t0")
    ledger.advance("j1", expect=S.QUEUED, token="t0", to=S.SUBMITTING, event="submitting")
    ledger.advance(
        "j1",
        expect=S.SUBMITTING,
        token="t0",
        to=S.FAILED,
        event="failed",
        fields={"error_code": "x", "error_message": "y"},
        detail={"error": "x"},
    )
    history = ledger.history("j1")
    assert [(h["from"], h["to"], h["event"]) for h in history] == [
        (None, "QUEUED", "enqueued"),
        ("QUEUED", "SUBMITTING", "submitting"),
        ("SUBMITTING", "FAILED", "failed"),
    ]
    assert history[-1]["error"] == "x"
    assert all(h["at"] > 0 for h in history)


def test_terminal_jobs_expire_and_leave_the_active_index(ledger):
    create_job(ledger, "j1", REQUEST, token="t0")
    assert active_job_ids(ledger) == ["j1"]
    ledger.advance("j1", expect=S.QUEUED, token="t0", to=S.FAILED, event="failed")
    assert active_job_ids(ledger) == []
    assert 0 < ledger._redis.ttl(ledger.keys.job("j1")) <= 100
    assert 0 < ledger._redis.ttl(ledger.keys.history("j1")) <= 100


def test_update_without_state_change_keeps_the_state(ledger):
    create_job(ledger, "j1", REQUEST, token="t0")
    assert ledger.advance("j1", expect=S.QUEUED, token="t0", incr={"polls": 2}, event="note")
    job = ledger.get("j1")
    assert job.state is S.QUEUED and job.polls == 2


def test_missing_job_is_not_advanced(ledger):
    assert not ledger.advance("nope", expect=S.QUEUED, token="t", to=S.SUBMITTING, event="e")
    assert ledger.get("nope") is None


def test_counters(ledger):
    ledger.bump_counter("retries")
    ledger.bump_counter("retries", 2)
    assert ledger.counters() == {"retries": 3}


def test_a_field_the_job_record_does_not_have_is_refused_not_kept_as_an_extra(ledger):
    create_job(ledger, "j1", REQUEST, token="t0")
    for change in ({"fields": {"polls_typo": 1}}, {"incr": {"x": 2}}):
        with pytest.raises(ValueError, match="not fields of a job record"):
            ledger.advance("j1", expect=S.QUEUED, token="t0", event="note", **change)
    job = ledger.get("j1")
    assert job.extra == {} and len(ledger.history("j1")) == 1
