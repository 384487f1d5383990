"""Vidgo callbacks: only the job's token counts, the body is never trusted, repeats do nothing."""

from __future__ import annotations

import json

import pytest

from tests.jobs import job_in
from vidgo_stems.pipeline.states import JobState, TaskName
from vidgo_stems.web.callbacks import CallbackOutcome, callback_hint, handle_callback

EVIL = json.dumps(
    {
        "task_id": "T1",
        "status": "finished",
        "files": [{"vocal_removal": json.dumps({"vocals": "http://169.254.169.254/x"})}],
    }
).encode()


@pytest.fixture
def world(fake_ledger, step_log):
    job_in(fake_ledger, JobState.SUBMITTED, new_token="t1", fields={"vidgo_task_id": "T1"})
    return fake_ledger, step_log


def call(ledger, sent, token, body=EVIL, job_id="j1", **kwargs):
    return handle_callback(ledger, job_id, token, body, **kwargs)


def test_the_right_token_wakes_the_poll_under_a_fresh_step_token(world):
    ledger, sent = world
    job = ledger.get("j1")
    assert call(ledger, sent, job.callback_token) is CallbackOutcome.WOKEN
    (step,) = sent
    after = ledger.get("j1")
    assert step.task is TaskName.POLL and step.token == after.token != "t1"
    assert after.state is JobState.SUBMITTED
    assert after.stem_urls == {}  # nothing from the body is stored
    assert ledger.history("j1")[-1]["hint"] == {"task_id": "T1", "status": "finished"}


@pytest.mark.parametrize("token", ["", "wrong", "x" * 200, "ünïcode"])
def test_a_wrong_token_changes_nothing(world, token):
    ledger, sent = world
    before = ledger.get("j1")
    history = ledger.history("j1")
    assert call(ledger, sent, token) is CallbackOutcome.REFUSED
    assert sent == [] and ledger.get("j1") == before and ledger.history("j1") == history


@pytest.mark.parametrize("job_id", ["nope", "../../etc/passwd", "", "j1\x00"])
def test_unknown_or_malformed_job_ids_are_refused(world, job_id):
    ledger, sent = world
    token = ledger.get("j1").callback_token
    assert call(ledger, sent, token, job_id=job_id) is CallbackOutcome.REFUSED
    assert sent == []


def test_repeats_within_the_debounce_wake_once(world):
    ledger, sent = world
    token = ledger.get("j1").callback_token
    outcomes = [call(ledger, sent, token, debounce_s=30) for _ in range(5)]
    assert outcomes == [CallbackOutcome.WOKEN] + [CallbackOutcome.DUPLICATE] * 4
    assert len(sent) == 1


def test_a_job_past_polling_is_left_alone(world):
    ledger, sent = world
    job = ledger.get("j1")
    ledger.advance(
        "j1", expect=JobState.SUBMITTED, token=job.token, to=JobState.DOWNLOADING, event="e"
    )
    assert call(ledger, sent, job.callback_token) is CallbackOutcome.IGNORED
    assert sent == []


@pytest.mark.parametrize(
    ("body", "hint"),
    [
        (b'{"task_id":"T","status":"failed"}', {"task_id": "T", "status": "failed"}),
        (
            b'{"code":200,"data":{"task_id":"T","status":"finished"}}',
            {"task_id": "T", "status": "finished"},
        ),
        (b"\xff\xfe not json", {"body": "unparsable"}),
        (b"[1,2]", {"body": "not an object"}),
        (b'{"task_id": 5, "status": ["x"]}', {}),
    ],
)
def test_the_hint_reads_flat_and_wrapped_bodies_and_survives_garbage(body, hint):
    assert callback_hint(body) == hint
