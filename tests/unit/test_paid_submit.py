"""The moves around a paid submit: the claim, the send, and what a lost reply or a stopped
worker leaves behind. fakeredis ledger and a scripted Vidgo (see test_stages); the replica
confirmations themselves are in test_durable.py and, against real servers, in the
integration and chaos suites."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.jobs import move_to
from tests.unit.test_stages import Harness, submitted
from vidgo_stems import errors
from vidgo_stems.pipeline.recovery import kick
from vidgo_stems.pipeline.stages import Outcome, run_submit
from vidgo_stems.pipeline.states import JobState

S = JobState


@pytest.fixture
def h(make_settings, tmp_path):
    # The default policy: an ambiguous submit stops the job for review.
    harness = Harness(make_settings(ambiguous_submit_policy="fail"), tmp_path)
    yield harness
    for close in harness.closers:
        close()


def lose_the_reply_of(h, event: str) -> list[str]:
    """Make the ledger's first move recorded as ``event`` apply, then answer as a client
    retry of it would after its reply was lost: the same move sent again, and refused."""
    real = h.ledger._advance
    seen: list[str] = []

    def advance(*, keys, args, rest, client=None):
        result = real(keys=keys, args=args, rest=rest, client=client)
        if json.loads(args["entry"])["event"] == event and not seen:
            seen.append(event)
            result = real(keys=keys, args=args, rest=rest, client=client)  # the re-send
            assert not result[0], "the re-sent move should be refused"
        return result

    h.ledger._advance = advance
    return seen


def test_a_lost_reply_on_the_claim_is_known_as_ours_and_the_job_is_sent_once(h):
    job_id = h.enqueue()
    lost = lose_the_reply_of(h, "submitting")
    h.vidgo.submit_answers.append(submitted("v1"))
    assert run_submit(h.ctx, job_id, "t0") is Outcome.HANDED_OFF
    assert lost == ["submitting"]
    job = h.ledger.get(job_id)
    assert (job.state, job.vidgo_task_ids, job.ambiguous_submits) == (S.SUBMITTED, ("v1",), 0)
    assert h.vidgo.count("submit") == 1


def test_a_lost_reply_on_the_send_is_known_as_ours_too(h):
    job_id = h.enqueue()
    lost = lose_the_reply_of(h, "submit_sent")
    h.vidgo.submit_answers.append(submitted("v1"))
    assert run_submit(h.ctx, job_id, "t0") is Outcome.HANDED_OFF
    assert lost == ["submit_sent"] and h.ledger.get(job_id).vidgo_task_ids == ("v1",)


def test_a_job_claimed_but_never_sent_is_claimed_again_not_called_ambiguous(h):
    """A worker stopped between the claim and the send: the recovery sweep kicks the job, and
    with the ``fail`` policy it is still submitted (once), not stopped for review."""
    job_id = h.enqueue()
    move_to(h.ledger, job_id, S.SUBMITTING, fields={"submit_sent": False}, event="submitting")
    job = h.ledger.get(job_id)
    assert kick(h.ledger, job, now=job.updated_at + 1000, event="recovered")
    h.vidgo.submit_answers.append(submitted("v1"))
    assert run_submit(h.ctx, job_id, h.last_token()) is Outcome.HANDED_OFF
    job = h.ledger.get(job_id)
    assert (job.state, job.ambiguous_submits, h.vidgo.count("submit")) == (S.SUBMITTED, 0, 1)
    assert "submit_ambiguous" not in [e["event"] for e in h.ledger.history(job_id)]


def test_a_job_found_submitting_after_its_send_is_ambiguous(h):
    job_id = h.enqueue()
    move_to(h.ledger, job_id, S.SUBMITTING, fields={"submit_sent": True}, event="submit_sent")
    job = h.ledger.get(job_id)
    assert kick(h.ledger, job, now=job.updated_at + 1000, event="recovered")
    with pytest.raises(errors.SubmitAmbiguous):
        run_submit(h.ctx, job_id, h.last_token())
    assert h.vidgo.count("submit") == 0


def test_the_send_is_recorded_before_vidgo_is_called(h):
    job_id = h.enqueue()
    seen = []

    def answer(request):
        job = h.ledger.get(job_id)
        seen.append((job.state, job.submit_sent))
        return submitted("v1")

    h.vidgo.submit_answers.append(answer)
    assert run_submit(h.ctx, job_id, "t0") is Outcome.HANDED_OFF
    assert seen == [(S.SUBMITTING, True)]
    events = [e["event"] for e in h.ledger.history(job_id)]
    assert events[-3:] == ["submitting", "submit_sent", "submitted"]


def test_a_submit_to_try_again_goes_back_queued_under_its_message_token(h):
    """The retry of a submit that surely never left carries the message's token, so the job
    must hold it again (else the retry would find a stale token and the job would wait for the
    sweep)."""
    job_id = h.enqueue()
    h.vidgo.submit_answers.append(httpx.ConnectError("refused"))
    with pytest.raises(errors.VidgoTransportError):
        run_submit(h.ctx, job_id, "t0")
    job = h.ledger.get(job_id)
    assert (job.state, job.token, job.submit_sent) == (S.QUEUED, "t0", False)
    h.vidgo.submit_answers.append(submitted("v1"))
    assert run_submit(h.ctx, job_id, "t0") is Outcome.HANDED_OFF  # the retry goes through


def test_an_ambiguous_submit_stopped_for_review_keeps_its_message_token(h):
    """The task then fails the job under the message's token: the job must hold it."""
    job_id = h.enqueue()
    h.vidgo.submit_answers.append(httpx.ReadTimeout("lost"))
    with pytest.raises(errors.SubmitAmbiguous):
        run_submit(h.ctx, job_id, "t0")
    job = h.ledger.get(job_id)
    assert (job.state, job.token, job.submit_sent) == (S.SUBMITTING, "t0", True)


def test_a_submit_refused_for_good_leaves_the_job_to_fail_under_its_message_token(h):
    h.vidgo.submit_answers.append(
        httpx.Response(401, json={"code": 401, "error": {"message": "Invalid API key"}})
    )
    job_id = h.enqueue()
    with pytest.raises(errors.VidgoAuthError):
        run_submit(h.ctx, job_id, "t0")
    job = h.ledger.get(job_id)
    assert (job.state, job.token) == (S.SUBMITTING, "t0")  # the task's fail_job holds "t0"
