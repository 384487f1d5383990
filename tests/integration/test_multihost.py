"""Two worker "hosts" that share no disk: each has its own scratch folder, and they meet only in
Redis and the storage layer.

With S3 storage (moto's standalone server over HTTP) every job ends DONE, with downloads on
one worker and post-processing on the other (post-processing runs on its own queue, consumed
by the second worker only, so the split is forced and read back from the ledger's history),
and every link a caller gets serves the recorded bytes. With ``file://`` storage on separate
folders, the second worker refuses to start and no job fails.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from tests.manifests import assert_valid_manifest
from tests.support import Stack, fetch, host
from vidgo_stems.devstack.local import wait_for
from vidgo_stems.pipeline.states import JobState

pytestmark = pytest.mark.integration


def worker_of(view, event: str) -> str:
    (entry,) = [e for e in view.history if e["event"] == event]
    return entry["worker"]


def test_two_hosts_on_s3_split_download_and_postprocess_and_every_link_serves_the_bytes(
    s3_stack,
):
    stack = s3_stack
    post_queue = stack.env["VIDGO_STEMS_POSTPROCESS_QUEUE"]
    a = stack.start_worker(name="host-a", env=host(stack, "a"), args=("--queues", stack.queue))
    b = stack.start_worker(name="host-b", env=host(stack, "b"), args=("--queues", post_queue))
    job_ids = [stack.enqueue(stack.track_url(), output_type="general") for _ in range(4)]
    job_ids += [stack.enqueue(stack.track_url("ballad"), output_type="vocals") for _ in range(2)]
    views = stack.wait_all(job_ids, timeout_s=120)
    for view in views:
        assert view.state is JobState.DONE, view.error
        assert worker_of(view, "downloaded").startswith(a.hostname)
        assert worker_of(view, "done").startswith(b.hostname)
        task = stack.emulator.tasks()[view.vidgo_task_id]
        assert set(view.stems) == set(task["sha256"])
        for stem in view.stems.values():
            assert stem.url.startswith(stack.env["AWS_ENDPOINT_URL"])
            body = fetch(stem.url)  # a pre-signed URL: no credentials needed
            assert hashlib.sha256(body).hexdigest() == stem.sha256
            assert len(body) == stem.bytes
        manifest = json.loads(fetch(view.manifest_url))
        assert manifest["job_id"] == view.job_id and set(manifest["stems"]) == set(view.stems)
        assert_valid_manifest(manifest)
        for name, entry in manifest["stems"].items():
            assert entry["original"]["sha256"] == task["sha256"][name]  # what Vidgo served
    # Neither host kept the other's work on its own disk: scratch is emptied once a job is done
    # on host b, and host a's scratch only ever held downloads.
    assert not list((stack.folder / "host-b" / "scratch").glob("*/*.wav"))


def test_a_stem_lost_from_storage_before_postprocess_is_downloaded_again(s3_stack, s3_server):
    import obstore
    from obstore.store import S3Store

    stack = s3_stack
    post_queue = stack.env["VIDGO_STEMS_POSTPROCESS_QUEUE"]
    stack.start_worker(name="host-a", env=host(stack, "a"), args=("--queues", stack.queue))
    job_id = stack.enqueue(stack.track_url(), output_type="vocals")
    wait_for(
        lambda: stack.ledger.get(job_id).state is JobState.POSTPROCESSING,
        timeout_s=60,
        what="the download to finish on host a",
    )
    key = stack.ledger.get(job_id).stems["vocals"].key
    bucket_prefix = stack.env["VIDGO_STEMS_STORAGE_URL"].split("/", 3)[3]
    store = S3Store(
        s3_server.bucket,
        endpoint=s3_server.endpoint_url,
        access_key_id="testing",
        secret_access_key="testing",
        region=s3_server.region,
        client_options={"allow_http": True},
    )
    obstore.delete(store, f"{bucket_prefix}/{key}")
    stack.start_worker(name="host-b", env=host(stack, "b"), args=("--queues", post_queue))
    view = stack.wait_terminal(job_id, timeout_s=90)
    assert view.state is JobState.DONE, view.error
    events = [e["event"] for e in view.history]
    assert events.count("stems_lost") == 1 and events.count("downloaded") == 2
    task = stack.emulator.tasks()[view.vidgo_task_id]
    manifest = json.loads(fetch(view.manifest_url))
    assert manifest["stems"]["vocals"]["original"]["sha256"] == task["sha256"]["vocals"]
    assert (
        hashlib.sha256(fetch(view.stems["vocals"].url)).hexdigest() == view.stems["vocals"].sha256
    )
    url = view.request["audio_url"]
    paid = [e for e in stack.emulator.record("submit") if e.get("audio_url") == url]
    assert len(view.vidgo_task_ids) == 1 and len(paid) == 1  # fetched again, not paid again


def test_file_storage_on_separate_folders_refuses_the_second_worker_and_fails_no_job(
    redis_client, redis_server, emulator, tracks_url, tmp_path
):
    stack = Stack(redis_client, redis_server.url, emulator, tracks_url, tmp_path)
    try:
        stack.start_worker(name="host-a", env={"STEMS_DIR": str(tmp_path / "a" / "stems")})
        refused = stack.cli_worker(env={"STEMS_DIR": str(tmp_path / "b" / "stems")})
        assert refused.returncode == 2, refused.stdout + refused.stderr
        (line,) = refused.stderr.strip().splitlines()
        assert line.startswith("error: refusing to start: the storage at file://")
        assert "VIDGO_STEMS_STORAGE_URL=s3://" in line and "Traceback" not in refused.stderr
        job_ids = [stack.enqueue(stack.track_url(), output_type="vocals") for _ in range(3)]
        for view in stack.wait_all(job_ids, timeout_s=60):
            assert view.state is JobState.DONE, view.error
    finally:
        stack.stop()


def part_spans(view) -> list[tuple[str, str, float, float]]:
    """(part, worker, started, finished) of every post-processing part in a job's history."""
    return [
        (e["part"], e["worker"], e["started_at"], e["at"])
        for e in view.history
        if e["event"] == "part_done"
    ]


def test_a_general_splits_stems_are_post_processed_in_parallel_on_two_hosts_and_joined_once(
    s3_stack,
):
    stack = s3_stack
    post_queue = stack.env["VIDGO_STEMS_POSTPROCESS_QUEUE"]
    stack.start_worker(name="host-a", env=host(stack, "a"), args=("--queues", stack.queue))
    b = stack.start_worker(name="host-b", env=host(stack, "b"), args=("--queues", post_queue))
    c = stack.start_worker(name="host-c", env=host(stack, "c"), args=("--queues", post_queue))
    job_id = stack.enqueue(stack.track_url("long"), output_type="general")
    (view,) = stack.wait_all([job_id], timeout_s=180)
    assert view.state is JobState.DONE, view.error
    spans = part_spans(view)
    names = sorted(p for p, *_ in spans)
    assert names == sorted([*view.stems, "source"])  # each part recorded once
    hosts = {worker.split("@")[0] for _, worker, _, _ in spans}
    assert hosts == {b.hostname.split("@")[0], c.hostname.split("@")[0]}
    overlapping = [
        (p, q)
        for i, (p, _, start_p, end_p) in enumerate(spans)
        for (q, _, start_q, end_q) in spans[i + 1 :]
        if start_p < end_q and start_q < end_p
    ]
    assert overlapping, spans
    assert [e["event"] for e in view.history].count("done") == 1
    done = next(e for e in view.history if e["event"] == "done")
    assert done["at"] >= max(end for *_, end in spans)
