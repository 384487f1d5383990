"""Post-processing in parts: the fan-out sends each missing part once per token, each part is
recorded once while its token is current, and the last one sends the join exactly once."""

from __future__ import annotations

import fakeredis
import pytest

from tests.steps import StepLog, create_job
from vidgo_stems.models import parse_request
from vidgo_stems.pipeline.ledger import Ledger
from vidgo_stems.pipeline.parts import SOURCE, PartOutcome, Parts
from vidgo_stems.pipeline.recovery import kick
from vidgo_stems.pipeline.states import JobState, TaskName

PARTS = ["bass", "vocals", SOURCE]


@pytest.fixture
def setup():
    client = fakeredis.FakeRedis()
    sent = StepLog(client, "t")
    ledger = Ledger(client, prefix="t", encode=sent)
    request = parse_request({"audio_url": "https://cdn.example/a.mp3"})
    create_job(ledger, "j", request, token="t0")
    for was, to in [
        (JobState.QUEUED, JobState.SUBMITTING),
        (JobState.SUBMITTING, JobState.SUBMITTED),
        (JobState.SUBMITTED, JobState.DOWNLOADING),
        (JobState.DOWNLOADING, JobState.POSTPROCESSING),
    ]:
        assert ledger.advance("j", expect=was, token="t0", to=to, event="test")
    yield ledger, Parts(ledger), sent
    client.close()


def part_steps(sent, token):
    return sorted(s.part for s in sent if s.task is TaskName.POSTPROCESS_STEM and s.token == token)


def test_the_fan_out_sends_each_part_once_per_token(setup):
    _, parts, sent = setup
    first = parts.fan_out("j", "t0", PARTS)
    assert sorted(first.sent) == sorted(PARTS) and not first.join and not first.stale
    again = parts.fan_out("j", "t0", PARTS)  # a duplicate of the message
    assert again.sent == [] and not again.join
    assert part_steps(sent, "t0") == sorted(PARTS)
    assert parts.fan_out("j", "stale", PARTS).stale


def test_a_kick_sends_again_only_the_parts_still_missing(setup):
    ledger, parts, _ = setup
    parts.fan_out("j", "t0", PARTS)
    assert parts.record("j", "t0", "bass", {"n": 1}, count=3, worker="w") is PartOutcome.RECORDED
    assert kick(ledger, ledger.get("j"), now=0.0, event="recovered")
    token = ledger.get("j").token
    assert sorted(parts.fan_out("j", token, PARTS).sent) == ["source", "vocals"]
    # The old token's late parts no longer count.
    assert parts.record("j", "t0", "vocals", {}, count=3, worker="w") is PartOutcome.STALE


def test_each_part_is_recorded_once_and_the_last_sends_the_join_once(setup):
    ledger, parts, sent = setup
    parts.fan_out("j", "t0", PARTS)
    assert parts.record("j", "t0", "bass", {"n": 1}, count=3, worker="w1") is PartOutcome.RECORDED
    assert parts.record("j", "t0", "bass", {"n": 2}, count=3, worker="w2") is PartOutcome.DUPLICATE
    assert parts.record("j", "t0", SOURCE, {}, count=3, worker="w1") is PartOutcome.RECORDED
    assert parts.record("j", "t0", "vocals", {}, count=3, worker="w2") is PartOutcome.JOINED
    joins = [s for s in sent if s.task is TaskName.POSTPROCESS]
    job = ledger.get("j")
    assert len(joins) == 1 and joins[0].token == job.token != "t0"
    assert job.state is JobState.POSTPROCESSING
    assert parts.results("j") == {"bass": {"n": 1}, SOURCE: {}, "vocals": {}}
    # After the join was sent, a duplicate of any part holds a stale token.
    assert parts.record("j", "t0", "vocals", {}, count=3, worker="w3") is PartOutcome.STALE
    assert len([s for s in sent if s.task is TaskName.POSTPROCESS]) == 1
    # The join's own fan-out finds every part done.
    assert parts.fan_out("j", job.token, PARTS).join
    history = [e for e in ledger.history("j") if e["event"] == "part_done"]
    assert [(e["part"], e["worker"]) for e in history] == [
        ("bass", "w1"),
        (SOURCE, "w1"),
        ("vocals", "w2"),
    ]


def test_no_part_is_recorded_for_a_job_in_another_state(setup):
    ledger, parts, _ = setup
    assert ledger.advance(
        "j", expect=JobState.POSTPROCESSING, token="t0", to=JobState.DOWNLOADING, event="lost"
    )
    assert parts.record("j", "t0", "bass", {}, count=3, worker="w") is PartOutcome.STALE
    assert parts.fan_out("j", "t0", PARTS).stale
    assert parts.results("j") == {}
