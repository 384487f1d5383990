"""Tracing on a real prefork worker: every stage run is its own trace, linked to the message
that started it, and carries the job id."""

from __future__ import annotations

import json

import pytest

from tests.support import Stack
from vidgo_stems.devstack.local import wait_for
from vidgo_stems.pipeline.states import JobState

pytestmark = pytest.mark.integration


def spans_in(text: str) -> list[dict]:
    spans = []
    for line in text.splitlines():
        if line.startswith('{"name"'):
            spans.append(json.loads(line))
    return spans


def test_each_stage_run_is_a_linked_trace_tagged_with_the_job(
    redis_server, redis_client, emulator, tracks_url, tmp_path
):
    stack = Stack(
        redis_client,
        redis_server.url,
        emulator,
        tracks_url,
        tmp_path,
        VIDGO_STEMS_TRACING="true",
        OTEL_TRACES_EXPORTER="console",
        OTEL_BSP_SCHEDULE_DELAY="100",
    )
    try:
        stack.start_worker(concurrency=2, name="traced")
        job_id = stack.enqueue(stack.track_url(), output_type="vocals")
        view = stack.wait_terminal(job_id, timeout_s=60)
        assert view.state is JobState.DONE, view.error
        log = stack.folder / "worker-0.log"

        def runs() -> list[dict]:
            found = [
                s
                for s in spans_in(log.read_text())
                if s["name"].startswith("run/") and s["attributes"].get("vidgo.job_id") == job_id
            ]
            stages = {s["attributes"]["vidgo.stage"] for s in found}
            return found if {"submit", "poll", "download", "postprocess"} <= stages else []

        found = wait_for(runs, timeout_s=20, what="the job's run spans to be exported")
    finally:
        stack.stop()
    traces = {s["context"]["trace_id"] for s in found}
    assert len(traces) == len(found)  # one trace per run: nothing nested 40 deep
    for span in found:
        assert span["parent_id"] is None
        assert span["attributes"]["vidgo.stage"] == span["name"].rpartition(".")[2]
    # Every run after the first is linked to the publish span of the message that started it,
    # which sits in the trace of the run before.
    publish = {
        s["context"]["span_id"]: s["context"]["trace_id"]
        for s in spans_in(log.read_text())
        if s["name"].startswith("apply_async/")
    }
    linked = [s for s in found if s["links"]]
    assert len(linked) >= len(found) - 1
    for span in linked:
        (link,) = span["links"]
        assert publish.get(link["context"]["span_id"]) in traces
