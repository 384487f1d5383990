"""Every caller of a shared job is a subscription of its own; ended jobs are retried from the
first step that still needs doing (fakeredis ledger, file storage, dispatch captured)."""

from __future__ import annotations

import base64
import hashlib

import pytest

from tests.jobs import ManualClock, move_to
from tests.steps import StepLog
from vidgo_stems import producer as api
from vidgo_stems.celery_app import Producer
from vidgo_stems.errors import InvalidRequest, JobConflict
from vidgo_stems.files.storage import FileStorage
from vidgo_stems.pipeline.outbox import Outbox
from vidgo_stems.pipeline.retry import plan_retry
from vidgo_stems.pipeline.states import JobState, TaskName

SECRET = "whsec_" + base64.b64encode(b"s" * 32).decode()
URL = "https://cdn.example/shared.mp3"
NOW = 2_000_000_000.0


@pytest.fixture
def p(make_settings, tmp_path, fake_redis, make_fake_ledger):
    client = fake_redis
    steps = []
    producer = Producer(
        make_settings(webhook_secret=SECRET, max_subscribers_per_job=3),
        client,
        make_fake_ledger(clock=ManualClock(NOW)),
        dispatch_webhook=lambda job_id, delay: steps.append(("webhook", job_id)),
        record_end=lambda *a, **k: None,
        forget_result=lambda job_id: steps.append(("forget", job_id)),
        _storage=FileStorage(tmp_path / "stored"),
    )
    producer.steps = steps
    producer.sent = StepLog(client, "t")  # the steps the ledger sent itself (retries)
    return producer


def subscribe(p, n: int) -> list[api.Enqueued]:
    return [
        api.enqueue_request(
            api.parse_request({"audio_url": URL}),
            webhook_url=f"https://hooks{i}.example.com/done",
            metadata={"user": i},
            producer=p,
        )
        for i in range(n)
    ]


def end(p, job_id, state, **fields):
    if state is JobState.DONE:
        move_to(p.ledger, job_id, JobState.POSTPROCESSING)
    move_to(
        p.ledger,
        job_id,
        state,
        fields={"error_code": "boom", "error_message": "it broke", **fields},
        event="end",
    )


def test_three_callers_of_one_track_share_one_job_each_with_their_own_subscription(p):
    first, second, third = subscribe(p, 3)
    assert first.job_id == second.job_id == third.job_id and first.created and not second.created
    assert len({first.subscription_id, second.subscription_id, third.subscription_id}) == 3
    assert [s.task for s in p.sent] == [TaskName.SUBMIT]  # one job, one submit, one payment
    view = api.get_job(first.job_id, subscription_id=second.subscription_id, producer=p)
    assert view.subscribers == 3
    assert view.subscription.metadata == {"user": 1} and view.metadata == {"user": 1}
    assert view.subscription.webhook.url == "https://hooks1.example.com/done"


def test_an_ended_job_owes_each_subscriber_its_webhook(p):
    enqueued = subscribe(p, 3)
    end(p, enqueued[0].job_id, JobState.DONE)
    due = Outbox(p.ledger).due_for(enqueued[0].job_id)
    assert set(due) == {e.subscription_id for e in enqueued}


def test_a_late_caller_of_a_done_job_is_told_at_once(p):
    (first,) = subscribe(p, 1)
    end(p, first.job_id, JobState.DONE)
    Outbox(p.ledger).clear(first.job_id, first.subscription_id)  # delivered earlier
    late = api.enqueue_request(
        api.parse_request({"audio_url": URL}),
        webhook_url="https://late.example.com/hook",
        producer=p,
    )
    assert late.state is JobState.DONE
    assert set(Outbox(p.ledger).due_for(first.job_id)) == {late.subscription_id}
    assert ("webhook", first.job_id) in p.steps


def test_repeating_an_enqueue_with_the_same_subscription_id_is_one_subscription(p):
    for _ in range(3):
        api.enqueue(URL, subscription_id="order-17", metadata={"v": 1}, producer=p)
    job_id = api.enqueue(URL, subscription_id="order-17", metadata={"v": 2}, producer=p)
    subs = Outbox(p.ledger).subscriptions(job_id)
    assert list(subs) == ["order-17"] and subs["order-17"].metadata == {"v": 2}


def test_subscribers_per_job_are_capped(p):
    subscribe(p, 3)
    with pytest.raises(JobConflict, match="VIDGO_STEMS_MAX_SUBSCRIBERS_PER_JOB"):
        subscribe(p, 1)


def test_cancelling_as_one_subscriber_leaves_the_job_to_the_others(p):
    first, second = subscribe(p, 2)
    view = api.cancel(first.job_id, subscription_id=first.subscription_id, producer=p)
    assert view.state is JobState.QUEUED and view.subscribers == 1
    view = api.cancel(first.job_id, subscription_id=second.subscription_id, producer=p)
    assert view.state is JobState.CANCELLED and view.subscribers == 0


def test_cancelling_without_a_subscription_when_others_wait_says_how(p):
    first, _ = subscribe(p, 2)
    with pytest.raises(JobConflict, match=r"2 callers waiting.*subscription_id.*force"):
        api.cancel(first.job_id, producer=p)
    assert api.cancel(first.job_id, force=True, producer=p).state is JobState.CANCELLED


def test_enqueueing_a_failed_job_again_says_how_to_retry_and_retry_failed_does_it(p):
    (first,) = subscribe(p, 1)
    end(p, first.job_id, JobState.FAILED)
    with pytest.raises(JobConflict, match=r"FAILED \[boom\].*vidgo-stems retry .*retry_failed"):
        api.enqueue(URL, producer=p)
    again = api.enqueue_request(
        api.parse_request({"audio_url": URL}), retry_failed=True, producer=p
    )
    assert again.retried and again.state is JobState.QUEUED
    job = p.ledger.get(first.job_id)
    assert job.state is JobState.QUEUED and job.error_code is None and job.retry_count == 1
    assert p.sent[-1].task is TaskName.SUBMIT and p.sent[-1].token == job.token
    assert ("forget", first.job_id) in p.steps
    events = [e["event"] for e in p.ledger.history(first.job_id)]
    assert events == ["enqueued", "end", "retried"]  # the history is kept


def stem(p, job_id, name, body=b"audio"):
    stored = p.storage.put_bytes(f"{job_id}/{name}.mp3", body, content_type="audio/mpeg")
    return {"file": f"{name}.mp3", "key": stored.key, "sha256": stored.sha256, "bytes": len(body)}


def test_a_retry_post_processes_again_when_every_stem_is_still_stored(p):
    job_id = api.enqueue(URL, output_type="vocals", producer=p)
    end(p, job_id, JobState.FAILED, stems={"vocals": stem(p, job_id, "vocals")})
    plan = plan_retry(p.ledger.get(job_id), p.storage, now=NOW)
    assert plan.to is JobState.POSTPROCESSING and not plan.may_pay
    view = api.retry(job_id, producer=p)
    assert view.state is JobState.POSTPROCESSING and p.sent[-1].task is TaskName.POSTPROCESS


def test_a_retry_downloads_again_while_vidgo_still_serves_the_stems(p):
    job_id = api.enqueue(URL, producer=p)
    kept = stem(p, job_id, "bass")
    lost = {**stem(p, job_id, "drums", b"x"), "sha256": hashlib.sha256(b"other").hexdigest()}
    end(
        p,
        job_id,
        JobState.CANCELLED,
        stem_urls={"bass": "https://storage.vidgo.ai/b.mp3"},
        finished_at=NOW - 3600,
        stems={"bass": kept, "drums": lost},
    )
    plan = plan_retry(p.ledger.get(job_id), p.storage, now=NOW)
    assert plan.to is JobState.DOWNLOADING and set(plan.fields["stems"]) == {"bass"}


def test_a_retry_polls_paid_tasks_of_the_last_day_before_any_new_submit(p):
    job_id = api.enqueue(URL, producer=p)
    end(
        p,
        job_id,
        JobState.CANCELLED,
        error_code="cancelled",
        vidgo_task_ids=["t1", "t2"],
        submitted_at=NOW - 600,
    )
    plan = plan_retry(p.ledger.get(job_id), p.storage, now=NOW)
    assert plan.to is JobState.SUBMITTED and plan.fields["live_task_ids"] == ["t1", "t2"]
    api.retry(job_id, producer=p)
    job = p.ledger.get(job_id)
    assert job.tasks_at_retry == 2 and job.live_task_ids == ("t1", "t2")
    assert p.sent[-1].task is TaskName.POLL


def test_a_retry_of_a_job_whose_tasks_failed_at_vidgo_submits_again(p):
    job_id = api.enqueue(URL, producer=p)
    end(
        p,
        job_id,
        JobState.FAILED,
        error_code="vidgo_task_rejected",
        vidgo_task_ids=["t1"],
        submitted_at=NOW - 60,
    )
    plan = plan_retry(p.ledger.get(job_id), p.storage, now=NOW)
    assert plan.to is JobState.QUEUED and plan.may_pay


def test_a_retry_submits_again_when_nothing_can_be_reused(p):
    job_id = api.enqueue(URL, producer=p)
    end(p, job_id, JobState.FAILED, vidgo_task_ids=["t1"], submitted_at=NOW - 2 * 86400)
    plan = plan_retry(p.ledger.get(job_id), p.storage, now=NOW)
    assert plan.to is JobState.QUEUED and plan.may_pay


def test_only_failed_or_cancelled_jobs_are_retried(p):
    job_id = api.enqueue(URL, producer=p)
    with pytest.raises(JobConflict, match="is QUEUED: only FAILED or CANCELLED"):
        api.retry(job_id, producer=p)
    with pytest.raises(InvalidRequest, match="no job"):
        api.retry("nope", producer=p)


def test_retry_candidates_list_what_a_bulk_retry_would_do(p):
    a = api.enqueue("https://cdn.example/a.mp3", producer=p)
    b = api.enqueue("https://cdn.example/b.mp3", producer=p)
    end(p, a, JobState.FAILED, error_code="submit_ambiguous")
    end(p, b, JobState.FAILED)
    plans = api.retry_candidates(codes={"submit_ambiguous"}, producer=p)
    assert [(plan.job_id, plan.to, plan.may_pay) for plan in plans] == [(a, JobState.QUEUED, True)]
