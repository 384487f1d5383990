"""Whole jobs through a real worker process, a private Redis and the emulator over HTTP."""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from celery.result import AsyncResult

from tests.manifests import assert_valid_manifest
from tests.support import fetch
from vidgo_stems.celery_app import app
from vidgo_stems.emulator.audio import MODEL_GAIN
from vidgo_stems.errors import InvalidRequest
from vidgo_stems.models import ALL_STEMS
from vidgo_stems.pipeline.recovery import active_job_ids
from vidgo_stems.pipeline.states import JobState

pytestmark = pytest.mark.integration


def submissions_for(stack, audio_url):
    return [e for e in stack.emulator.record("submit") if e.get("audio_url") == audio_url]


def assert_done_and_verified(stack, job_id, expected_stems):
    view = stack.wait_terminal(job_id)
    assert view.state is JobState.DONE, view.error
    task = stack.emulator.tasks()[view.vidgo_task_id]
    manifest = json.loads(fetch(view.manifest_url))
    assert set(manifest["stems"]) == set(expected_stems) == set(task["sha256"])
    assert_valid_manifest(manifest)
    assert manifest["source"]["checked"] and manifest["source"]["duration_s"] == pytest.approx(2.0)
    for stem, entry in manifest["stems"].items():
        delivered = hashlib.sha256(fetch(view.stems[stem].url)).hexdigest()
        assert delivered == entry["sha256"]  # the delivered file
        assert entry["original"]["sha256"] == task["sha256"][stem]  # what Vidgo served
        assert entry["sample_rate"] == 22050 and entry["channels"] == 2
        # MP3 stems start late by LAME's delay (576 + 529 samples): reported within a frame.
        assert abs(entry["offset_vs_source_s"] - 1105 / 22050) <= 1152 / 22050, entry
        assert entry["problems"] == [], entry
    if len(expected_stems) == 6:
        # The emulator's models scale the mix by a gain: with gain 1 only MP3's coding noise
        # is left unexplained; other gains leave more, still far below the mix.
        residual = manifest["remix_residual_db"]
        assert residual < (-25 if MODEL_GAIN[view.request["model_name"]] == 1.0 else -10), residual
    assert manifest["job_id"] == job_id
    assert manifest["vidgo_task_id"] == view.vidgo_task_id
    assert manifest["request"] == view.request
    assert task["stem_source"] == "input"
    assert AsyncResult(job_id, app=app).get(timeout=10) == manifest
    served = view.manifest.model_dump(mode="json")  # the same, with fresh links added
    for name, stem in served["stems"].items():
        assert stem.pop("url") == view.stems[name].url
        assert stem["peaks"].pop("json_url") and stem["peaks"].pop("dat_url")
    assert served == manifest
    return view, manifest


@pytest.mark.parametrize(
    "output_type", ["general", "bass", "drums", "other", "piano", "guitar", "vocals"]
)
def test_pipeline_completes_each_output_type(stack, output_type):
    url = stack.track_url()
    job_id = stack.enqueue(url, output_type=output_type, title=f"t {output_type}")
    expected = ALL_STEMS if output_type == "general" else (output_type,)
    _, manifest = assert_done_and_verified(stack, job_id, expected)
    assert manifest["request"]["output_type"] == output_type
    [submitted] = submissions_for(stack, url)
    assert submitted["output_type"] == output_type


def test_a_general_job_missing_a_stem_reports_a_high_remix_residual(stack):
    url = stack.track_url("groove")
    with stack.emulator.configured(faults={"lost_stems": ["bass"]}):
        job_id = stack.enqueue(url, title="lost bass")
        view = stack.wait_terminal(job_id)
    assert view.state is JobState.DONE, view.error  # reported, not failed (the default)
    manifest = json.loads(fetch(view.manifest_url))
    assert_valid_manifest(manifest)
    assert manifest["remix_residual_db"] > -6, manifest["remix_residual_db"]
    assert manifest["silent_stems"] == ["bass"] and manifest["stems"]["bass"]["silent"]
    assert all(not manifest["stems"][n]["silent"] for n in ALL_STEMS if n != "bass")


@pytest.mark.parametrize("model_name", ["base", "enhanced", "instrumental"])
def test_pipeline_completes_each_model_name(stack, model_name):
    url = stack.track_url("ballad")
    job_id = stack.enqueue(url, model_name=model_name)
    assert_done_and_verified(stack, job_id, ALL_STEMS)
    [submitted] = submissions_for(stack, url)
    assert submitted["model_name"] == model_name


def test_original_format_delivers_the_bytes_vidgo_served(stack):
    job_id = stack.enqueue(stack.track_url(), format="original", title="as served")
    view = stack.wait_terminal(job_id)
    assert view.state is JobState.DONE, view.error
    served = {
        e["stem"]: e["sha256"]
        for e in stack.emulator.record("download")
        if e["task_id"] == view.vidgo_task_id and e["status"] == 200
    }
    assert set(served) == set(ALL_STEMS)
    for stem in ALL_STEMS:
        assert hashlib.sha256(fetch(view.stems[stem].url)).hexdigest() == served[stem], stem
        assert view.manifest.stems[stem].tags == {}


def test_same_request_enqueued_many_times_is_one_job_and_one_submission(stack):
    url = stack.track_url()
    with ThreadPoolExecutor(8) as pool:
        job_ids = set(pool.map(lambda _: stack.enqueue(url, output_type="vocals"), range(8)))
    assert len(job_ids) == 1
    job_id = job_ids.pop()
    assert_done_and_verified(stack, job_id, ("vocals",))
    assert stack.enqueue(url, output_type="vocals") == job_id
    assert len(submissions_for(stack, url)) == 1


def test_many_polls_lead_to_one_download_and_one_postprocess(stack):
    with stack.emulator.configured(run_s=3.0):
        url = stack.track_url()
        job_id = stack.enqueue(url)
        view, _ = assert_done_and_verified(stack, job_id, ALL_STEMS)
    polls = [e for e in stack.emulator.record("detail") if e["task_id"] == view.vidgo_task_id]
    assert len(polls) >= 6
    assert view.polls == len(polls)
    downloads = [e for e in stack.emulator.record("download") if e["task_id"] == view.vidgo_task_id]
    assert sorted(e["stem"] for e in downloads) == sorted(ALL_STEMS)
    events = [h["event"] for h in view.history]
    assert events.count("finished") == 1
    assert events.count("downloaded") == 1
    assert events.count("done") == 1


def test_wrong_api_key_fails_the_job_and_points_at_the_key(stack):
    with stack.emulator.configured(api_key="a-different-key"):
        url = stack.track_url()
        view = stack.wait_terminal(stack.enqueue(url))
    assert view.state is JobState.FAILED
    assert view.error.code == "vidgo_auth_failed"
    assert "VIDGO_API_KEY" in view.error.message
    assert view.submit_attempts == 1
    assert submissions_for(stack, url) == []


def test_malformed_vocal_removal_fails_with_a_stable_code_and_no_retry_loop(stack):
    retries_before = stack.ledger.counters().get("retries", 0)
    with stack.emulator.configured(faults={"rate_malformed_stems": 1.0}):
        url = stack.track_url()
        view = stack.wait_terminal(stack.enqueue(url))
    assert view.state is JobState.FAILED
    assert view.error.code == "vidgo_malformed_stems"
    assert "not valid JSON" in view.error.message
    assert stack.ledger.counters().get("retries", 0) == retries_before
    assert [h["event"] for h in view.history].count("failed") == 1
    assert not [e for e in stack.emulator.record("download") if e["task_id"] == view.vidgo_task_id]
    assert len(submissions_for(stack, url)) == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"audio_url": "ftp://example.com/a.mp3"}, "http:// or https://"),
        ({"audio_url": "not a url"}, "audio_url"),
        (
            {"audio_url": "https://example.com/a.mp3", "model_name": "turbo"},
            "base, enhanced, instrumental",
        ),
        (
            {"audio_url": "https://example.com/a.mp3", "output_type": "choir"},
            "general, bass, drums",
        ),
    ],
)
def test_bad_input_is_refused_at_enqueue_and_nothing_is_queued(stack, kwargs, message):
    active_before = active_job_ids(stack.ledger)
    submits_before = len(stack.emulator.record("submit"))
    audio_url = kwargs.pop("audio_url")
    with pytest.raises(InvalidRequest, match=message):
        stack.enqueue(audio_url, **kwargs)
    assert active_job_ids(stack.ledger) == active_before
    assert len(stack.emulator.record("submit")) == submits_before


def test_status_command_shows_history_and_error(stack):
    with stack.emulator.configured(api_key="a-different-key"):
        job_id = stack.enqueue(stack.track_url())
        stack.wait_terminal(job_id)
    out = stack.cli("status", job_id)
    assert out.returncode == 0, out.stderr
    assert f"job {job_id}: FAILED" in out.stdout
    assert "error [vidgo_auth_failed]" in out.stdout
    assert "enqueued" in out.stdout and "submitting" in out.stdout
