"""Stage functions without Celery: fakeredis ledger, MockTransport Vidgo and storage."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import random
import time

import fakeredis
import httpx
import numpy as np
import pytest
import soundfile as sf

from tests.jobs import create_job, move_to
from tests.manifests import assert_valid_manifest
from tests.steps import StepLog
from vidgo_stems import errors
from vidgo_stems.files.scratch import StemStore
from vidgo_stems.files.storage import FileStorage
from vidgo_stems.models import parse_request
from vidgo_stems.pipeline.ledger import Ledger
from vidgo_stems.pipeline.retention import remove_originals
from vidgo_stems.pipeline.schedule import Schedule
from vidgo_stems.pipeline.stages import (
    Outcome,
    StageContext,
    TaskName,
    poll_countdown,
    run_download,
    run_part,
    run_poll,
    run_postprocess,
    run_submit,
)
from vidgo_stems.pipeline.states import JobState
from vidgo_stems.sound.deliver import read_tags
from vidgo_stems.vidgo import VidgoClient
from vidgo_stems.vidgo.gate import VidgoGate

S = JobState


def wav_bytes(freq=220.0, seconds=0.5, rate=8000, amplitude=0.5):
    t = np.arange(int(seconds * rate)) / rate
    buffer = io.BytesIO()
    sf.write(buffer, amplitude * np.sin(2 * np.pi * freq * t), rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


class FakeVidgo:
    """Scripted Vidgo: answers (a response, an exception to raise, or a function of the
    request) are queued per endpoint; calls are recorded."""

    def __init__(self):
        self.submit_answers = []
        self.detail_answers = []
        self.calls = []

    def __call__(self, request):
        self.calls.append((request.method, request.url.path))
        queue = self.submit_answers if request.url.path.endswith("submit") else self.detail_answers
        answer = queue.pop(0)
        if isinstance(answer, Exception):
            raise answer
        if callable(answer):  # answers from what it sees at the time of the call
            return answer(request)
        return answer

    def count(self, suffix):
        return sum(1 for _, path in self.calls if path.endswith(suffix))


class Harness:
    def __init__(self, settings, tmp_path):
        self.redis = fakeredis.FakeRedis()
        self.sent = StepLog(self.redis, "t")
        self.ledger = Ledger(self.redis, prefix="t", encode=self.sent)
        self.vidgo = FakeVidgo()
        self.stems = {}
        self.stem_status = 200
        self.stem_requests = []
        self.failing_stems = set()
        client = VidgoClient(settings, transport=httpx.MockTransport(self.vidgo))
        http = httpx.Client(transport=httpx.MockTransport(self.serve_stem))
        self.closers = [client.close, http.close, self.redis.close]
        self.gate = VidgoGate(self.redis, prefix="t")
        self.ctx = StageContext(
            settings=settings,
            ledger=self.ledger,
            gate=self.gate,
            storage=FileStorage(tmp_path / "stems"),
            scratch=StemStore(tmp_path / "scratch"),
            vidgo_factory=lambda: client,
            http_factory=lambda: http,
            rng=random.Random(1),
        )

    def serve_stem(self, request):
        name = request.url.path.rsplit("/", 1)[-1]
        self.stem_requests.append(name)
        if name in self.failing_stems:
            return httpx.Response(503)
        if self.stem_status != 200:
            return httpx.Response(self.stem_status)
        body = self.stems[name]
        return httpx.Response(200, content=body, headers={"content-length": str(len(body))})

    def enqueue(self, output_type="general"):
        request = parse_request(
            {"audio_url": "https://cdn.example/a.mp3", "output_type": output_type}
        )
        create_job(self.ledger, "job1", request, token="t0")
        return "job1"

    def last_token(self):
        return self.sent[-1].token


@pytest.fixture
def h(make_settings, tmp_path):
    harness = Harness(make_settings(poll_initial_s=3, poll_min_interval_s=2), tmp_path)
    yield harness
    for close in harness.closers:
        close()


def submitted(task_id="v1"):
    return httpx.Response(
        200, json={"code": 200, "data": {"task_id": task_id, "status": "not_started"}}
    )


def detail(status, files=(), error_message=None):
    return httpx.Response(
        200,
        json={
            "code": 200,
            "data": {
                "task_id": "v1",
                "status": status,
                "files": list(files),
                "created_time": "2025-11-12T10:30:00",
                "error_message": error_message,
            },
        },
    )


def stems_file(names, host="storage.vidgo.ai"):
    return {"vocal_removal": json.dumps({n: f"https://{host}/audio/v1/{n}.wav" for n in names})}


def test_submit_persists_the_task_id_and_hands_off_to_poll(h):
    h.vidgo.submit_answers.append(submitted("v1"))
    assert run_submit(h.ctx, h.enqueue(), "t0") is Outcome.HANDED_OFF
    job = h.ledger.get("job1")
    assert (job.state, job.vidgo_task_id, job.submit_attempts) == (S.SUBMITTED, "v1", 1)
    assert [(s.task, s.token, s.countdown_s) for s in h.sent] == [(TaskName.POLL, job.token, 3)]


def test_a_duplicate_submit_delivery_submits_nothing(h):
    h.vidgo.submit_answers.append(submitted())
    job_id = h.enqueue()
    run_submit(h.ctx, job_id, "t0")
    assert run_submit(h.ctx, job_id, "t0") is Outcome.STALE
    assert h.vidgo.count("submit") == 1


def test_submit_that_never_left_goes_back_to_queued_for_a_retry(h):
    h.vidgo.submit_answers.append(httpx.ConnectError("refused"))
    job_id = h.enqueue()
    with pytest.raises(errors.VidgoTransportError):
        run_submit(h.ctx, job_id, "t0")
    assert h.ledger.get(job_id).state is S.QUEUED
    h.vidgo.submit_answers.append(submitted())
    assert run_submit(h.ctx, job_id, "t0") is Outcome.HANDED_OFF
    assert h.ledger.get(job_id).submit_attempts == 2


def test_ambiguous_submit_stops_for_review_by_default(h):
    h.vidgo.submit_answers.append(httpx.ReadTimeout("lost"))
    job_id = h.enqueue()
    with pytest.raises(errors.SubmitAmbiguous, match="AMBIGUOUS_SUBMIT_POLICY"):
        run_submit(h.ctx, job_id, "t0")
    assert h.ledger.counters()["ambiguous_submits"] == 1
    assert "submit_ambiguous" in [e["event"] for e in h.ledger.history(job_id)]


def test_ambiguous_submit_retries_within_the_configured_bound(make_settings, tmp_path):
    h = Harness(
        make_settings(ambiguous_submit_policy="retry", ambiguous_submit_retries=1), tmp_path
    )
    h.vidgo.submit_answers += [httpx.Response(502, json={}), httpx.ReadTimeout("lost again")]
    job_id = h.enqueue()
    with pytest.raises(errors.VidgoUnavailable):
        run_submit(h.ctx, job_id, "t0")
    assert h.ledger.get(job_id).state is S.QUEUED
    with pytest.raises(errors.SubmitAmbiguous):
        run_submit(h.ctx, job_id, "t0")
    assert h.vidgo.count("submit") == 2
    assert h.ledger.get(job_id).ambiguous_submits == 2
    assert h.ledger.counters()["ambiguous_submits"] == 2


def test_a_delivery_that_finds_its_own_submit_in_flight_is_ambiguous(h):
    job_id = h.enqueue()
    move_to(h.ledger, job_id, S.SUBMITTING, event="submitting")
    with pytest.raises(errors.SubmitAmbiguous):
        run_submit(h.ctx, job_id, "t0")
    assert h.vidgo.count("submit") == 0


def test_permanent_submit_errors_propagate_without_retrying(h):
    h.vidgo.submit_answers.append(
        httpx.Response(401, json={"code": 401, "error": {"message": "Invalid API key"}})
    )
    with pytest.raises(errors.VidgoAuthError, match="VIDGO_API_KEY"):
        run_submit(h.ctx, h.enqueue(), "t0")


def to_polling(h, output_type="general"):
    h.vidgo.submit_answers.append(submitted())
    job_id = h.enqueue(output_type)
    run_submit(h.ctx, job_id, "t0")
    return job_id


def test_poll_requeues_with_a_growing_countdown_until_finished(h):
    job_id = to_polling(h)
    steps = []
    for status in ("not_started", "running", "running", "running"):
        h.vidgo.detail_answers.append(detail(status))
        assert run_poll(h.ctx, job_id, h.last_token()) is Outcome.HANDED_OFF
        steps.append(h.sent[-1])
    countdowns = [s.countdown_s for s in steps]
    assert all(s.task is TaskName.POLL for s in steps)
    assert countdowns[-1] > countdowns[0] >= 2.0
    assert len(h.sent) == 1, "each poll's entry replaces the one before in the schedule"
    job = h.ledger.get(job_id)
    assert (job.state, job.polls, job.vidgo_status) == (S.RUNNING, 4, "running")


def test_each_poll_records_how_late_it_started(make_settings, tmp_path):
    clock = [1000.0]
    harness = Harness(make_settings(poll_initial_s=3, poll_min_interval_s=2), tmp_path)
    harness.ctx.clock = lambda: clock[0]
    harness.ledger._clock = lambda: clock[0]
    try:
        job_id = to_polling(harness)
        clock[0] += 3.0 + 1.25  # the countdown was 3 s; the poll comes 1.25 s late
        harness.vidgo.detail_answers.append(detail("running"))
        run_poll(harness.ctx, job_id, harness.last_token())
        polled = [e for e in harness.ledger.history(job_id) if e["event"] == "polled"]
        assert polled[-1]["late_s"] == 1.25
    finally:
        for close in harness.closers:
            close()


def test_poll_hands_off_to_download_exactly_once(h):
    job_id = to_polling(h)
    token = h.last_token()
    h.vidgo.detail_answers += [
        detail("finished", [stems_file(["bass", "drums", "piano", "guitar", "vocals", "other"])])
    ] * 2
    assert run_poll(h.ctx, job_id, token) is Outcome.HANDED_OFF
    assert run_poll(h.ctx, job_id, token) is Outcome.STALE
    assert [s.task for s in h.sent].count(TaskName.DOWNLOAD) == 1
    assert h.ledger.get(job_id).state is S.DOWNLOADING


def test_poll_raises_on_a_malformed_vocal_removal(h):
    job_id = to_polling(h)
    h.vidgo.detail_answers.append(detail("finished", [{"vocal_removal": "{oops"}]))
    with pytest.raises(errors.VidgoOutputError) as caught:
        run_poll(h.ctx, job_id, h.last_token())
    assert caught.value.code == "vidgo_malformed_stems"


def poll_once(h, job_id, *answers):
    h.vidgo.detail_answers += list(answers)
    return run_poll(h.ctx, job_id, h.last_token())


def test_poll_repolls_finished_without_files_then_gives_up_at_the_bound(make_settings, tmp_path):
    h = Harness(make_settings(max_vidgo_tasks=1, empty_finished_repolls=2), tmp_path)
    job_id = to_polling(h)
    poll_once(h, job_id, detail("finished"))
    poll_once(h, job_id, detail("finished"))
    with pytest.raises(errors.VidgoOutputError, match="MAX_VIDGO_TASKS=1") as caught:
        poll_once(h, job_id, detail("finished"))
    assert caught.value.code == "vidgo_finished_without_output"


def test_finished_without_files_is_resubmitted_within_the_bound(h):
    job_id = to_polling(h)
    for _ in range(3):
        poll_once(h, job_id, detail("finished"))
    job = h.ledger.get(job_id)
    assert job.state is S.QUEUED
    assert h.sent[-1].task is TaskName.SUBMIT and h.sent[-1].countdown_s >= 15
    assert job.live_task_ids == ()
    assert h.ledger.counters()["resubmissions"] == 1


@pytest.mark.parametrize(
    "message",
    [
        "The audio violates our content policy",
        "Unsupported audio format",
        "The audio could not be decoded",
    ],
)
def test_a_task_failed_for_its_input_fails_the_job_without_resubmitting(h, message):
    job_id = to_polling(h)
    with pytest.raises(errors.VidgoTaskFailed, match=message) as caught:
        poll_once(h, job_id, detail("failed", error_message=message))
    assert caught.value.code == "vidgo_task_rejected"
    assert h.vidgo.count("submit") == 1


def test_a_task_failed_for_another_reason_is_resubmitted(h):
    job_id = to_polling(h)
    assert (
        poll_once(h, job_id, detail("failed", error_message="GPU worker crashed"))
        is Outcome.HANDED_OFF
    )
    job = h.ledger.get(job_id)
    assert job.state is S.QUEUED and job.resubmits == 1
    resubmit = next(e for e in h.ledger.history(job_id) if e["event"] == "resubmit")
    assert "GPU worker crashed" in resubmit["reason"]


def test_resubmission_stops_at_max_vidgo_tasks(make_settings, tmp_path):
    h = Harness(make_settings(max_vidgo_tasks=2), tmp_path)
    job_id = to_polling(h)
    poll_once(h, job_id, detail("failed", error_message="transient glitch"))
    h.vidgo.submit_answers.append(submitted("v2"))
    run_submit(h.ctx, job_id, h.last_token())
    with pytest.raises(errors.PermanentError, match="gave up after 2 Vidgo task") as caught:
        poll_once(h, job_id, detail("failed", error_message="transient glitch"))
    assert caught.value.code == "vidgo_task_failed"
    assert h.vidgo.count("submit") == 2


def test_a_stalled_task_is_resubmitted_and_still_polled(make_settings, tmp_path):
    h = Harness(make_settings(stall_timeout_s=10), tmp_path)
    job_id = to_polling(h)
    start = h.ledger.get(job_id).submitted_at
    h.ctx.clock = lambda: start + 11
    poll_once(h, job_id, detail("running"))
    job = h.ledger.get(job_id)
    assert job.state is S.QUEUED and job.live_task_ids == ("v1",)
    assert h.ledger.counters()["stalls"] == 1
    h.vidgo.submit_answers.append(submitted("v2"))
    run_submit(h.ctx, job_id, h.last_token())
    assert h.ledger.get(job_id).live_task_ids == ("v1", "v2")


def test_the_attempt_that_finishes_first_wins(make_settings, tmp_path):
    h = Harness(make_settings(stall_timeout_s=10), tmp_path)
    job_id = to_polling(h)
    start = h.ledger.get(job_id).submitted_at
    h.ctx.clock = lambda: start + 11
    poll_once(h, job_id, detail("running"))
    h.vidgo.submit_answers.append(submitted("v2"))
    run_submit(h.ctx, job_id, h.last_token())
    finished_v1 = detail(
        "finished", [stems_file(["vocals", "bass", "drums", "piano", "guitar", "other"])]
    )
    assert poll_once(h, job_id, finished_v1) is Outcome.HANDED_OFF
    job = h.ledger.get(job_id)
    assert (job.state, job.vidgo_task_id, job.vidgo_task_ids) == (S.DOWNLOADING, "v1", ("v1", "v2"))


def test_a_stall_at_the_bound_fails_the_job(make_settings, tmp_path):
    h = Harness(make_settings(stall_timeout_s=10, max_vidgo_tasks=1), tmp_path)
    job_id = to_polling(h)
    start = h.ledger.get(job_id).submitted_at
    h.ctx.clock = lambda: start + 11
    with pytest.raises(errors.PermanentError, match="STALL_TIMEOUT_S") as caught:
        poll_once(h, job_id, detail("running"))
    assert caught.value.code == "vidgo_task_stalled"


def test_poll_waits_out_a_shared_cooldown_without_calling_vidgo(h):
    job_id = to_polling(h)
    h.gate.cool_down(7, "429 elsewhere")
    assert run_poll(h.ctx, job_id, h.last_token()) is Outcome.HANDED_OFF
    assert h.vidgo.count("detail/music") == 0
    assert 6 < h.sent[-1].countdown_s <= 7
    assert h.ledger.get(job_id).polls == 0


def test_submit_is_deferred_during_a_credits_pause(h):
    h.gate.pause_submits(60, "Insufficient credits")
    job_id = h.enqueue()
    assert run_submit(h.ctx, job_id, "t0") is Outcome.HANDED_OFF
    assert h.vidgo.count("submit") == 0
    assert h.ledger.get(job_id).state is S.QUEUED
    assert h.sent[-1].task is TaskName.SUBMIT and h.sent[-1].countdown_s >= 59


def test_402_pauses_every_submit_and_keeps_the_job_queued(h):
    h.vidgo.submit_answers.append(
        httpx.Response(402, json={"code": 402, "error": {"message": "Insufficient credits"}})
    )
    job_id = h.enqueue()
    assert run_submit(h.ctx, job_id, "t0") is Outcome.HANDED_OFF
    assert h.ledger.get(job_id).state is S.QUEUED
    hold = h.gate.submit_pause()
    assert hold is not None and "Insufficient credits" in hold.reason
    assert h.ledger.counters()["credit_pauses"] == 1


def test_poll_countdown_respects_floor_and_cap(make_settings):
    settings = make_settings(
        poll_initial_s=1,
        poll_max_s=20,
        poll_backoff_factor=2,
        poll_jitter_ratio=0.2,
        poll_min_interval_s=2,
    )
    rng = random.Random(0)
    values = [poll_countdown(n, settings, rng) for n in range(12)]
    assert min(values) >= 2.0
    assert max(values) <= 24.0
    assert values[-1] >= 16.0


def to_downloading(h, names=("vocals",), host="storage.vidgo.ai"):
    job_id = to_polling(h, "vocals" if names == ("vocals",) else "general")
    h.vidgo.detail_answers.append(detail("finished", [stems_file(names, host)]))
    run_poll(h.ctx, job_id, h.last_token())
    return job_id


def test_download_streams_verifies_and_hands_off(h):
    h.stems["vocals.wav"] = wav_bytes()
    job_id = to_downloading(h)
    assert run_download(h.ctx, job_id, h.last_token()) is Outcome.HANDED_OFF
    path = h.ctx.storage.root / job_id / "original" / "vocals.wav"
    assert path.read_bytes() == h.stems["vocals.wav"]
    stem = h.ledger.get(job_id).stems["vocals"]
    assert stem.sha256 == hashlib.sha256(h.stems["vocals.wav"]).hexdigest()
    assert h.sent[-1].task is TaskName.POSTPROCESS
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".part")]


def test_download_refuses_hosts_outside_the_allow_list(h):
    job_id = to_downloading(h, host="evil.example")
    with pytest.raises(errors.StemHostNotAllowed, match=r"evil\.example"):
        run_download(h.ctx, job_id, h.last_token())


def test_download_cut_short_is_retryable_and_keeps_only_a_hidden_part(h):
    job_id = to_downloading(h)
    h.ctx.http_factory = lambda: httpx.Client(
        transport=httpx.MockTransport(
            lambda r: httpx.Response(200, content=b"RIFF", headers={"content-length": "1000"})
        )
    )
    with pytest.raises(errors.StemDownloadError, match="4 of 1000"):
        run_download(h.ctx, job_id, h.last_token())
    assert [p.name for p in (h.ctx.scratch.root / job_id).iterdir()] == [".vocals.wav.part"]
    assert not (h.ctx.storage.root / job_id).exists()  # nothing half-done is stored


def test_an_expired_url_is_refreshed_from_vidgo_then_downloaded(h):
    h.stems["vocals.wav"] = wav_bytes()
    job_id = to_downloading(h)
    h.stem_status = 410
    fresh = {"vocal_removal": json.dumps({"vocals": "https://storage.vidgo.ai/fresh/vocals.wav"})}
    h.vidgo.detail_answers.append(detail("finished", [fresh]))
    with pytest.raises(errors.RetryableError, match="fresh URLs"):
        run_download(h.ctx, job_id, h.last_token())
    job = h.ledger.get(job_id)
    assert job.stem_urls == {"vocals": "https://storage.vidgo.ai/fresh/vocals.wav"}
    h.stem_status = 200
    assert run_download(h.ctx, job_id, h.last_token()) is Outcome.HANDED_OFF


@pytest.mark.parametrize("status", [403, 404, 410])
def test_an_expired_url_fails_once_refreshes_are_spent(make_settings, tmp_path, status):
    h = Harness(make_settings(max_url_refreshes=0), tmp_path)
    job_id = to_downloading(h)
    h.stem_status = status
    with pytest.raises(errors.StemUrlExpired, match="MAX_URL_REFRESHES=0"):
        run_download(h.ctx, job_id, h.last_token())


def test_download_on_a_full_disk_fails_clearly_and_leaves_nothing(h, monkeypatch):
    h.stems["vocals.wav"] = wav_bytes()
    job_id = to_downloading(h)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(errors.StorageError, match="disk is full"):
        run_download(h.ctx, job_id, h.last_token())
    assert list((h.ctx.scratch.root / job_id).iterdir()) == []
    assert not (h.ctx.storage.root / job_id).exists()


def test_postprocess_tags_originals_only_when_asked(make_settings, tmp_path):
    h = Harness(make_settings(tag_originals=True), tmp_path)
    h.stems["vocals.wav"] = wav_bytes()
    job_id = to_downloading(h)
    run_download(h.ctx, job_id, h.last_token())
    manifest = postprocess(h, job_id)
    delivered = h.ctx.storage.root / job_id / "vocals.wav"
    assert read_tags(delivered)["stem"] == "vocals" == manifest["stems"]["vocals"]["tags"]["stem"]
    assert delivered.read_bytes() != h.stems["vocals.wav"]
    for close in h.closers:
        close()


def postprocess(h, job_id):
    """Run a job's post-processing as workers would: the fan-out, every part it sent, and the
    join the last part sent. The manifest, or None when a part sent the job back."""
    token = h.last_token()
    manifest = run_postprocess(h.ctx, job_id, token)
    if manifest is not None:
        return manifest
    for step in [s for s in h.sent if s.task is TaskName.POSTPROCESS_STEM and s.token == token]:
        run_part(h.ctx, job_id, token, step.part)
    if h.sent[-1].task is not TaskName.POSTPROCESS:
        return None
    return run_postprocess(h.ctx, job_id, h.last_token())


def test_postprocess_measures_stems_and_writes_the_manifest(h):
    h.stems.update(
        {
            f"{n}.wav": wav_bytes(freq=110 * (i + 1), amplitude=0 if n == "other" else 0.5)
            for i, n in enumerate(["bass", "drums", "piano", "guitar", "vocals", "other"])
        }
    )
    job_id = to_downloading(h, names=("bass", "drums", "piano", "guitar", "vocals", "other"))
    run_download(h.ctx, job_id, h.last_token())
    manifest = postprocess(h, job_id)
    root = h.ctx.storage.root / job_id
    on_disk = json.loads((root / "manifest.json").read_text())
    assert manifest == on_disk
    assert_valid_manifest(manifest)
    assert manifest["manifest_version"] == 2 and manifest["vidgo_task_id"] == "v1"
    assert set(manifest["stems"]) == {"bass", "drums", "piano", "guitar", "vocals", "other"}
    vocals = manifest["stems"]["vocals"]
    assert vocals["sample_rate"] == 8000 and vocals["channels"] == 1
    assert vocals["duration_s"] == pytest.approx(0.5)
    assert vocals["peak_dbfs"] == pytest.approx(-6.0, abs=0.1)
    assert vocals["true_peak_dbtp"] == pytest.approx(-6.0, abs=0.3)
    assert vocals["loudness_lufs"] is not None and not vocals["silent"]
    assert manifest["silent_stems"] == ["other"]
    assert manifest["source"] == {"checked": False, "reason": vocals_reason(manifest)}
    timings = manifest["timings"]
    assert timings["queued_at"] <= timings["first_submitted_at"] == timings["submitted_at"]
    assert timings["done_at"].endswith("Z")
    job = h.ledger.get(job_id)
    assert job.state is S.DONE and job.manifest == manifest
    # Delivered as Vidgo's bytes (``original``, untagged) beside the manifest; waveforms beside
    # them; Vidgo's files stay until every link to them has expired, then go.
    assert (root / "vocals.wav").read_bytes() == h.stems["vocals.wav"]
    assert read_tags(root / "vocals.wav") == {} and vocals["tags"] == {}
    assert (root / "peaks" / "vocals.json").is_file() and (root / "peaks" / "vocals.dat").is_file()
    assert set(job.outputs) == set(manifest["stems"])
    assert (root / "original" / "vocals.wav").is_file() and not (root / "work").exists()
    removal = h.sent[-1]
    assert (removal.task, removal.job_id, removal.part) == (TaskName.PURGE, job_id, "original")
    due = Schedule(h.redis, "t").due_at(f"t:job:{job_id}#original")
    assert due == pytest.approx(time.time() + h.ctx.settings.url_ttl_s, abs=30)
    assert remove_originals(h.ledger, h.ctx.storage, job_id) == 6
    assert not list((root / "original").glob("*")) and (root / "vocals.wav").is_file()


def vocals_reason(manifest):
    return manifest["source"]["reason"]


@pytest.mark.parametrize("damage", ["changed", "deleted"])
def test_a_stored_stem_changed_or_deleted_before_postprocess_is_downloaded_again(h, damage):
    h.stems["vocals.wav"] = wav_bytes()
    job_id = to_downloading(h)
    run_download(h.ctx, job_id, h.last_token())
    stored = h.ctx.storage.root / job_id / "original" / "vocals.wav"
    if damage == "changed":
        stored.write_bytes(b"tampered")
    else:
        stored.unlink()
    h.ctx.scratch.remove_job(job_id)  # post-processing runs on another host
    assert postprocess(h, job_id) is None
    job = h.ledger.get(job_id)
    assert job.state is S.DOWNLOADING and "vocals" not in job.stems
    assert h.sent[-1].task is TaskName.DOWNLOAD
    h.stem_requests = []
    assert run_download(h.ctx, job_id, h.last_token()) is Outcome.HANDED_OFF
    assert h.stem_requests == ["vocals.wav"]
    manifest = postprocess(h, job_id)
    assert h.ledger.get(job_id).state is S.DONE
    served = hashlib.sha256(h.stems["vocals.wav"]).hexdigest()
    assert manifest["stems"]["vocals"]["original"]["sha256"] == served


def test_postprocess_on_another_host_reads_the_stems_from_storage(h):
    h.stems["vocals.wav"] = wav_bytes()
    job_id = to_downloading(h)
    run_download(h.ctx, job_id, h.last_token())
    h.ctx.scratch.remove_job(job_id)
    h.stem_requests = []
    manifest = postprocess(h, job_id)
    assert manifest["stems"]["vocals"]["sample_rate"] == 8000
    assert h.stem_requests == []  # nothing fetched from Vidgo again
    assert not (h.ctx.scratch.root / job_id).exists()  # scratch is cleaned once DONE


def capture_submit_bodies(h):
    """Route the harness's Vidgo through a recorder of submitted JSON bodies."""
    bodies = []
    scripted = h.vidgo

    def capture(request):
        bodies.append(json.loads(request.content))
        return scripted(request)

    h.ctx.vidgo_factory = lambda: VidgoClient(
        h.ctx.settings, transport=httpx.MockTransport(capture)
    )
    h.vidgo.submit_answers.append(submitted())
    return bodies


def test_submit_sends_no_callback_url_without_a_public_base(h):
    bodies = capture_submit_bodies(h)
    run_submit(h.ctx, h.enqueue(), "t0")
    assert "callback_url" not in bodies[0]


def test_submit_sends_a_tokened_callback_url_under_the_public_base(make_settings, tmp_path):
    h = Harness(make_settings(public_callback_base_url="https://hooks.example.com/"), tmp_path)
    bodies = capture_submit_bodies(h)
    job_id = h.enqueue()
    run_submit(h.ctx, job_id, "t0")
    token = h.ledger.get(job_id).callback_token
    assert len(token) >= 32
    assert (
        bodies[0]["callback_url"]
        == f"https://hooks.example.com/v1/vidgo/callback/{job_id}?token={token}"
    )


def test_with_callbacks_on_polling_becomes_a_slower_safety_net(make_settings, tmp_path):
    settings = make_settings(
        public_callback_base_url="https://hooks.example.com",
        callback_poll_initial_s=20,
        callback_poll_max_s=120,
        poll_jitter_ratio=0,
    )
    h = Harness(settings, tmp_path)
    try:
        h.vidgo.submit_answers.append(submitted())
        run_submit(h.ctx, h.enqueue(), "t0")
        assert h.sent[-1].countdown_s == 20
        assert poll_countdown(30, settings, random.Random(1)) == 120
        plain = make_settings(poll_initial_s=3, poll_max_s=30, poll_jitter_ratio=0)
        assert poll_countdown(0, plain, random.Random(1)) == 3
        assert poll_countdown(30, plain, random.Random(1)) == 30
    finally:
        for close in h.closers:
            close()


def test_a_retried_download_keeps_the_stems_it_already_saved(h):
    names = ("bass", "drums", "piano", "guitar", "vocals", "other")
    h.stems.update({f"{n}.wav": wav_bytes(freq=100 + i) for i, n in enumerate(names)})
    job_id = to_downloading(h, names=names)
    h.failing_stems = {"vocals.wav"}
    with pytest.raises(errors.StemDownloadError, match="503"):
        run_download(h.ctx, job_id, h.last_token())
    assert set(h.ledger.get(job_id).stems) == {"bass", "drums", "guitar", "other", "piano"}
    h.failing_stems, h.stem_requests = set(), []
    assert run_download(h.ctx, job_id, h.last_token()) is Outcome.HANDED_OFF
    assert h.stem_requests == ["vocals.wav"]
    assert set(h.ledger.get(job_id).stems) == set(names)


def test_with_callbacks_on_a_finished_answer_without_files_is_repolled_on_the_fast_schedule(
    make_settings, tmp_path
):
    settings = make_settings(
        public_callback_base_url="https://hooks.example.com",
        callback_poll_initial_s=20,
        callback_poll_max_s=120,
        poll_initial_s=3,
        poll_min_interval_s=2,
        poll_jitter_ratio=0,
        empty_finished_repolls=2,
    )
    h = Harness(settings, tmp_path)
    try:
        h.vidgo.submit_answers.append(submitted())
        run_submit(h.ctx, h.enqueue(), "t0")
        h.vidgo.detail_answers.append(detail("running"))
        run_poll(h.ctx, "job1", h.last_token())
        assert h.sent[-1].countdown_s >= 20  # still running: the slow safety net
        h.vidgo.detail_answers.append(detail("finished"))
        assert run_poll(h.ctx, "job1", h.last_token()) is Outcome.HANDED_OFF
        assert h.sent[-1].task is TaskName.POLL and h.sent[-1].countdown_s == 3
    finally:
        for close in h.closers:
            close()
