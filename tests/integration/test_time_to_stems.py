"""Time to stems, with real workers, the emulator and S3 storage (moto's server over HTTP):
stems are linkable as soon as they are stored, a subscriber that asked hears so before the
job is DONE, and a link handed out keeps serving Vidgo's bytes after the job is DONE."""

from __future__ import annotations

import base64
import hashlib
import secrets

import pytest

from tests.support import Receiver, fetch
from vidgo_stems import producer as api
from vidgo_stems.devstack.local import wait_for
from vidgo_stems.pipeline.states import JobState
from vidgo_stems.webhooks import verify

pytestmark = pytest.mark.integration

SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
EVERY = ["job.stems_stored", "job.done", "job.failed", "job.cancelled"]


@pytest.fixture
def hooked(s3_stack, monkeypatch):
    for name, value in {
        "VIDGO_STEMS_WEBHOOK_SECRET": SECRET,
        "VIDGO_STEMS_ALLOW_PRIVATE_WEBHOOK_HOSTS": "true",
    }.items():
        s3_stack.env[name] = value
        monkeypatch.setenv(name, value)
    s3_stack.producer.settings = s3_stack.producer.settings.model_copy(
        update={"webhook_secret": SECRET, "allow_private_webhook_hosts": True}
    )
    return s3_stack


def test_stems_stored_comes_before_done_with_links_that_serve_vidgos_bytes(hooked):
    stack = hooked
    asked, plain = Receiver(), Receiver()
    try:
        stack.start_worker(name="w", args=("--queues", f"{stack.queue},{stack.post_queue}"))
        url = stack.track_url()
        job_id = api.enqueue(
            url,
            output_type="general",
            webhook_url=f"{asked.url}/hook",
            webhook_events=EVERY,
            producer=stack.producer,
        )
        api.enqueue(
            url, output_type="general", webhook_url=f"{plain.url}/h", producer=stack.producer
        )
        assert stack.wait_terminal(job_id, timeout_s=90).state is JobState.DONE
        events = wait_for(
            lambda: len(asked.for_job(job_id)) == 2 and asked.for_job(job_id),
            timeout_s=30,
            what="two events",
        )
        first, second = (verify(SECRET, e["body"], e["headers"]) for e in events)
        assert [first["type"], second["type"]] == ["job.stems_stored", "job.done"]
        task = stack.emulator.tasks()[first["data"]["vidgo_task_ids"][-1]]
        assert set(first["data"]["stems"]) == set(task["sha256"])
        # The links handed out before DONE still serve Vidgo's bytes after it.
        for name, stem in first["data"]["stems"].items():
            body = fetch(stem["url"])
            assert hashlib.sha256(body).hexdigest() == stem["sha256"] == task["sha256"][name]
        (only,) = wait_for(lambda: plain.for_job(job_id), timeout_s=30, what="the end event")
        assert verify(SECRET, only["body"], only["headers"])["type"] == "job.done"
        assert len(plain.for_job(job_id)) == 1
    finally:
        asked.close()
        plain.close()


def test_a_stem_is_linkable_in_the_job_view_as_soon_as_it_is_stored(hooked):
    stack = hooked
    post = stack.post_queue
    stack.start_worker(name="dl", args=("--queues", stack.queue))
    job_id = stack.enqueue(stack.track_url(), output_type="general")
    # No worker takes post-processing yet: the job waits there with its stems stored.
    wait_for(
        lambda: stack.job(job_id).state is JobState.POSTPROCESSING,
        timeout_s=60,
        what="the stems to be stored",
    )
    view = stack.job(job_id)
    task = stack.emulator.tasks()[view.vidgo_task_id]
    assert set(view.stems) == set(task["sha256"])
    links = {name: stem.url for name, stem in view.stems.items()}
    for name, link in links.items():
        assert hashlib.sha256(fetch(link)).hexdigest() == task["sha256"][name]
    stack.start_worker(name="post", args=("--queues", post))
    assert stack.wait_terminal(job_id, timeout_s=90).state is JobState.DONE
    for name, link in links.items():  # each link still works for its lifetime
        assert hashlib.sha256(fetch(link)).hexdigest() == task["sha256"][name]


def test_an_unknown_webhook_event_is_refused_with_the_known_ones(hooked):
    from vidgo_stems.errors import InvalidRequest

    with pytest.raises(InvalidRequest, match=r"job\.stems_stored, job\.done"):
        api.enqueue(
            hooked.track_url(),
            webhook_url="http://127.0.0.1:9/h",
            webhook_events=["job.started"],
            producer=hooked.producer,
        )
