"""Web backends, second pass, with a real Redis, real worker processes and the emulator:
every caller of a shared job is told, ended jobs are retried, results stay one per job."""

from __future__ import annotations

import base64
import secrets
import time

import pytest
from celery.result import AsyncResult

from tests.support import Receiver, Stack
from vidgo_stems import producer as api
from vidgo_stems.celery_app import app
from vidgo_stems.devstack.local import wait_for
from vidgo_stems.errors import JobCancelled, JobFailed
from vidgo_stems.pipeline.states import JobState
from vidgo_stems.webhooks import verify

pytestmark = pytest.mark.integration

SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@pytest.fixture
def stack(redis_client, redis_server, emulator, tracks_url, tmp_path):
    stack = Stack(
        redis_client,
        redis_server.url,
        emulator,
        tracks_url,
        tmp_path,
        VIDGO_STEMS_WEBHOOK_SECRET=SECRET,
        VIDGO_STEMS_ALLOW_PRIVATE_WEBHOOK_HOSTS="true",
        VIDGO_STEMS_WEBHOOK_BACKOFF_BASE_S="0.3",
        VIDGO_STEMS_POSTPROCESS_QUEUE=f"post-{secrets.token_hex(4)}",
    )
    yield stack
    stack.stop()


def outcome(job_id: str):
    """What AsyncResult(job_id).get() gives: the manifest, or the exception it raises (made
    afresh, so no traceback keeps the AsyncResult alive past its Redis)."""
    try:
        return AsyncResult(job_id, app=app).get(timeout=10)
    except JobFailed as exc:
        return type(exc)(exc.code, exc.message)


def submits(stack: Stack, audio_url: str) -> int:
    return sum(1 for e in stack.emulator.record("submit") if e.get("audio_url") == audio_url)


def test_three_callers_of_one_track_each_get_one_verified_webhook_and_vidgo_is_paid_once(stack):
    receivers = [Receiver() for _ in range(3)]
    try:
        stack.start_worker(name="w", args=("--queues", f"{stack.queue},{stack.post_queue}"))
        url = stack.track_url()
        enqueued = [
            api.enqueue_request(
                api.parse_request({"audio_url": url, "output_type": "vocals"}),
                webhook_url=f"{r.url}/hook",
                metadata={"caller": i},
                producer=stack.producer,
            )
            for i, r in enumerate(receivers)
        ]
        job_id = enqueued[0].job_id
        assert {e.job_id for e in enqueued} == {job_id} and [e.created for e in enqueued] == [
            True,
            False,
            False,
        ]
        assert stack.wait_terminal(job_id, timeout_s=60).state is JobState.DONE
        for i, (receiver, mine) in enumerate(zip(receivers, enqueued, strict=True)):
            (request,) = wait_for(lambda r=receiver: r.for_job(job_id), timeout_s=30, what="hook")
            event = verify(SECRET, request["body"], request["headers"])
            assert event["type"] == "job.done" and event["data"]["metadata"] == {"caller": i}
            assert event["data"]["subscription_id"] == mine.subscription_id
            assert event["data"]["stems"]["vocals"]["url"]
        time.sleep(1.0)  # room for a duplicate delivery to show up, if there were one
        assert [len(r.for_job(job_id)) for r in receivers] == [1, 1, 1]
        assert submits(stack, url) == 1
        mine = api.get_job(
            job_id, subscription_id=enqueued[1].subscription_id, producer=stack.producer
        )
        assert mine.subscription.metadata == {"caller": 1} and mine.subscribers == 3
        assert mine.subscription.webhook.status == "delivered"
    finally:
        for receiver in receivers:
            receiver.close()


def test_a_job_failed_by_a_permanent_vidgo_fault_is_retried_after_the_fault_is_gone(stack):
    stack.start_worker(name="w", args=("--queues", f"{stack.queue},{stack.post_queue}"))
    url = stack.track_url()
    with stack.emulator.configured(faults={"task_reject_rate": 1.0}):
        job_id = stack.enqueue(url, output_type="vocals")
        failed = stack.wait_terminal(job_id, timeout_s=60)
    assert failed.state is JobState.FAILED and failed.error.code == "vidgo_task_rejected"
    raised = outcome(job_id)
    assert type(raised) is JobFailed and raised.code == "vidgo_task_rejected"
    view = api.retry(job_id, producer=stack.producer)
    assert view.state is JobState.QUEUED and view.retries == 1
    done = stack.wait_terminal(job_id, timeout_s=60)
    assert done.state is JobState.DONE, done.error
    assert outcome(job_id)["job_id"] == job_id
    assert submits(stack, url) == 2  # the rejected task, then the retry's
    events = [e["event"] for e in done.history]
    assert events.index("failed") < events.index("retried") < events.index("done")


def test_a_retry_reuses_stored_stems_and_polls_paid_tasks_instead_of_paying_again(stack):
    # Post-processing has its own queue and no worker reads it yet: jobs wait POSTPROCESSING
    # with every stem stored.
    stack.start_worker(name="downloads", args=("--queues", stack.queue))
    url = stack.track_url()
    job_id = stack.enqueue(url)
    wait_for(
        lambda: stack.ledger.get(job_id).state is JobState.POSTPROCESSING,
        timeout_s=60,
        what="the download",
    )
    served = len(stack.emulator.record("download"))
    cancelled = api.cancel(job_id, producer=stack.producer)
    assert cancelled.state is JobState.CANCELLED
    assert type(outcome(job_id)) is JobCancelled
    assert api.retry(job_id, producer=stack.producer).state is JobState.POSTPROCESSING
    stack.start_worker(name="post", args=("--queues", stack.post_queue))
    assert stack.wait_terminal(job_id, timeout_s=60).state is JobState.DONE
    assert len(stack.emulator.record("download")) == served  # nothing downloaded again
    assert submits(stack, url) == 1

    # Cancelled while the Vidgo task runs: a retry polls the paid task, it does not pay again.
    slow = stack.track_url("ballad")
    with stack.emulator.configured(run_s=4.0):
        second = stack.enqueue(slow, output_type="vocals")
        wait_for(
            lambda: stack.ledger.get(second).vidgo_task_ids,
            timeout_s=30,
            what="the submit",
        )
        api.cancel(second, producer=stack.producer)
        assert api.retry(second, producer=stack.producer).state is JobState.SUBMITTED
        assert stack.wait_terminal(second, timeout_s=60).state is JobState.DONE
    assert submits(stack, slow) == 1


def test_only_the_final_result_is_stored_one_key_per_job_for_every_ending(stack, redis_client):
    stack.start_worker(name="w", args=("--queues", f"{stack.queue},{stack.post_queue}"))
    before = set(redis_client.scan_iter("celery-task-meta-*"))
    done = [stack.enqueue(stack.track_url(), output_type="vocals") for _ in range(4)]
    assert all(v.state is JobState.DONE for v in stack.wait_all(done, timeout_s=90))
    with stack.emulator.configured(faults={"task_reject_rate": 1.0}):
        failed = stack.enqueue(stack.track_url(), output_type="vocals")
        stack.wait_terminal(failed, timeout_s=60)
    with stack.emulator.configured(run_s=30.0):
        running = stack.enqueue(stack.track_url(), output_type="vocals")
        wait_for(lambda: stack.ledger.get(running).vidgo_task_ids, timeout_s=30, what="submit")
        api.cancel(running, producer=stack.producer)
    new = set(redis_client.scan_iter("celery-task-meta-*")) - before
    jobs = [*done, failed, running]
    assert len(new) <= len(jobs)
    assert {key.decode().removeprefix("celery-task-meta-") for key in new} == set(jobs)
    for job_id in done:
        assert outcome(job_id)["job_id"] == job_id
    raised = outcome(failed)
    assert type(raised) is JobFailed and raised.code == "vidgo_task_rejected"
    assert "rejected" in raised.message
    raised = outcome(running)
    assert type(raised) is JobCancelled and raised.code == "cancelled"
