"""A hostile Vidgo over real HTTP, against a real worker: no answer or stem fails a paid job as
internal_error, nothing Vidgo sends reaches a log or a terminal raw, no callback token is
logged."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.support import API_KEY
from vidgo_stems.devstack.local import wait_for
from vidgo_stems.models import parse_request
from vidgo_stems.pipeline.states import JobState
from vidgo_stems.producer import enqueue_request

pytestmark = pytest.mark.integration

HOSTILE = {
    "deep": "vidgo_malformed_response",
    "huge_progress": "vidgo_malformed_response",
    "huge_in_stems": "vidgo_malformed_stems",
    "surrogate_status": "vidgo_malformed_response",
}
HOSTILE_MESSAGE = (
    "\x1b]0;pwned\x07\x1b[2JThe audio violates our content policy\r\n"
    "[2026-01-01 00:00:00,000: ERROR/MainProcess] forged line" + "A" * 100_000
)


def billed(stack, job_id) -> int:
    """How many submits of this job the emulator accepted (and charged)."""
    task_ids = stack.ledger.get(job_id).vidgo_task_ids
    return sum(1 for task_id in task_ids if task_id in stack.emulator.tasks())


@pytest.mark.parametrize(("kind", "code"), HOSTILE.items(), ids=HOSTILE.keys())
def test_a_hostile_detail_answer_fails_the_paid_job_with_a_stable_code(stack, kind, code):
    with stack.emulator.configured(faults={"hostile_detail": kind}):
        job_id = stack.enqueue(stack.track_url())
        view = stack.wait_terminal(job_id)
    assert view.state is JobState.FAILED
    assert view.error.code == code, view.error
    assert billed(stack, job_id) == 1  # Vidgo was paid, and the job says why it failed


def test_a_wav_url_serving_mp3_is_delivered(stack):
    with stack.emulator.configured(stem_format="mp3", faults={"stem_url_suffix": "wav"}):
        job_id = stack.enqueue(stack.track_url(), output_type="vocals")
        view = stack.wait_terminal(job_id)
    assert view.state is JobState.DONE, view.error
    stored = stack.ledger.get(job_id).stems["vocals"]
    assert stored.file == "vocals.mp3"


def test_a_hostile_error_message_is_stored_bounded_and_status_shows_no_escape(stack):
    faults = {"task_reject_rate": 1.0, "task_reject_message": HOSTILE_MESSAGE}
    with stack.emulator.configured(faults=faults):
        job_id = stack.enqueue(stack.track_url())
        view = stack.wait_terminal(job_id)
    assert view.state is JobState.FAILED and view.error.code == "vidgo_task_rejected"
    stored = stack.ledger.get(job_id).error_message
    assert len(stored) < 1000 and "[cut: " in stored
    assert not any(ch in stored for ch in "\x1b\x07\r\n")
    shown = stack.cli("status", job_id)
    assert shown.returncode == 0, shown.stderr
    assert "\\x1b]0;pwned" in shown.stdout
    assert "\x1b" not in shown.stdout + shown.stderr
    logs = "".join(p.read_text() for p in stack.folder.glob("worker-*.log"))
    assert "\x1b" not in logs and "\x07" not in logs
    assert not any(line.startswith("[2026-01-01 00:00:00,000") for line in logs.splitlines())


def test_the_emulator_fails_a_task_whose_audio_url_has_a_port_out_of_range(emulator):
    auth = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=emulator.url, headers=auth, timeout=10) as client:
        body = {
            "model": "upload-and-separate-vocals",
            "input": {"audio_url": "http://127.0.0.1:65536/a.wav"},
        }
        task_id = client.post("/api/generate/submit", json=body).json()["data"]["task_id"]

        def ended():
            params = {"task_id": task_id}
            data = client.get("/api/generate/detail/music", params=params).json()["data"]
            return data if data["status"] in ("finished", "failed") else None

        data = wait_for(ended, timeout_s=20, interval_s=0.1, what="the task to end")
    assert data["status"] == "failed"
    assert "Failed to fetch" in data["error_message"] and "port" in data["error_message"].lower()


@pytest.fixture
def json_stack(make_stack):
    return make_stack(
        worker="hostile",
        VIDGO_STEMS_PUBLIC_CALLBACK_BASE_URL="http://127.0.0.1:9",
        VIDGO_STEMS_LOG_FORMAT="json",
    )


def test_a_job_an_older_version_stored_with_a_surrogate_is_done_and_logs_no_token(json_stack):
    # A version without the entry checks could store a lone surrogate; read back, it is U+FFFD,
    # so the submit's body encodes and the job runs, on a worker logging JSON with callbacks on.
    request = parse_request({"audio_url": json_stack.track_url()})
    hostile = request.model_copy(update={"title": "A\udfffB"})  # past the entry check
    job_id = enqueue_request(hostile, producer=json_stack.producer).job_id
    view = json_stack.wait_terminal(job_id)
    token = json_stack.ledger.get(job_id).callback_token
    assert token
    assert view.state is JobState.DONE, view.error
    assert view.request["title"] == "A\ufffdB"

    def done_logged() -> str | None:
        text = "".join(p.read_text() for p in json_stack.folder.glob("worker-*.log"))
        return text if job_id in text and "DONE" in text else None

    logs = wait_for(done_logged, timeout_s=20, interval_s=0.1, what="the job's log lines")
    lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    assert any(line.get("job_id") == job_id for line in lines)
    assert token not in logs
