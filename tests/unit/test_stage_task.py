"""StageTask, the base of the pipeline tasks: which errors it retries, with what countdown, and
how it fails a job for permanent, exhausted and internal errors.

The task body is replaced by one that raises; the ledger and gate run on fakeredis, and the
retry StageTask puts into the schedule is read back from it.
"""

from __future__ import annotations

import itertools

import pytest
import redis.exceptions
from celery.exceptions import Ignore, Retry, SoftTimeLimitExceeded

import vidgo_stems.tasks.pipeline as pipeline
from tests.jobs import create_job
from vidgo_stems import errors
from vidgo_stems.pipeline.states import JobState, TaskName
from vidgo_stems.vidgo.gate import VidgoGate


class FakeRuntime:
    def __init__(self, settings, ledger, sent) -> None:
        self.settings = settings
        self.client = ledger.redis
        self.sent = sent
        self.ledger = ledger
        self.gate = VidgoGate(self.client, prefix="t")


@pytest.fixture
def rt(monkeypatch, make_settings, fake_ledger, step_log):
    runtime = FakeRuntime(
        make_settings(retry_backoff_base_s=2.0, retry_backoff_max_s=60.0, task_max_retries=5),
        fake_ledger,
        step_log,
    )
    monkeypatch.setattr(pipeline, "runtime", lambda: runtime)
    monkeypatch.setattr(pipeline, "dispatch_webhook", lambda job_id, delay: None)
    runtime.ends = []
    monkeypatch.setattr(
        pipeline, "record_end", lambda job_id, code, message: runtime.ends.append((job_id, code))
    )
    return runtime


@pytest.fixture
def job(rt):
    create_job(rt.ledger, "j1", token="tok")
    return "j1"


def _run_raising(monkeypatch, exc: BaseException, *, retries: int, token: str = "tok"):
    """Call vidgo.poll's StageTask with a body that raises ``exc``; returns the step it put into
    the schedule (None when it scheduled none)."""

    def body(ctx, job_id, token):
        raise exc

    monkeypatch.setattr(pipeline, "run_poll", body)
    monkeypatch.setattr(pipeline.runtime(), "stage_context", lambda *a: None, raising=False)
    pipeline.poll.push_request(retries=retries)
    try:
        pipeline.poll(job_id="j1", token=token)
    finally:
        pipeline.poll.pop_request()
    steps = list(pipeline.runtime().sent)
    return steps[-1] if steps else None


RETRYABLE = [
    errors.VidgoUnavailable("503 from Vidgo", status_code=503),
    errors.VidgoTransportError("reset", maybe_processed=False),
    errors.VidgoTaskNotFound("404 for t1"),
    errors.StemDownloadError("cut short"),
    errors.StemUrlsRefreshed("fresh URLs"),
    errors.StemMissing("stem gone"),
    errors.StorageUnavailable("bucket does not answer"),
    redis.exceptions.ConnectionError("redis went away"),
    redis.exceptions.TimeoutError("redis slow"),
    SoftTimeLimitExceeded(),
]


@pytest.mark.parametrize("exc", RETRYABLE, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("retries", [0, 3])
def test_stage_task_retries_each_retryable_error_with_a_capped_jittered_countdown(
    monkeypatch, rt, job, exc, retries
):
    with pytest.raises(Retry) as raised:
        _run_raising(monkeypatch, exc, retries=retries)
    step = list(rt.sent)[-1]
    ceiling = min(60.0, 2.0 * 2**retries)
    floor = max(getattr(exc, "retry_after_s", None) or 0.0, 2.0 * 2**retries / 2)
    assert floor <= step.countdown_s <= max(ceiling, floor)
    assert (step.task, step.token, step.retries) == (TaskName.POLL, "tok", retries + 1)
    assert str(raised.value.exc) == str(exc) and raised.value.when == step.countdown_s
    assert rt.ledger.counters()["retries"] == 1
    assert rt.ledger.get(job).state is JobState.QUEUED  # a retry never fails the job
    assert rt.client.zscore("t:schedule", "t:job:j1") is not None  # it waits in Redis


def test_a_retry_never_comes_sooner_than_the_poll_floor(monkeypatch, make_settings, rt, job):
    rt.settings = make_settings(
        retry_backoff_base_s=0.1, retry_backoff_max_s=60.0, poll_min_interval_s=1.5
    )
    with pytest.raises(Retry):
        _run_raising(monkeypatch, errors.VidgoUnavailable("502", status_code=502), retries=0)
    assert list(rt.sent)[-1].countdown_s >= 1.5


def test_retries_run_out_into_the_error_itself(monkeypatch, rt, job):
    exc = errors.VidgoUnavailable("503 from Vidgo", status_code=503)
    with pytest.raises(errors.VidgoUnavailable):
        _run_raising(monkeypatch, exc, retries=5)
    assert list(rt.sent) == []


def test_a_retry_of_a_step_that_moved_on_schedules_nothing(monkeypatch, rt, job):
    exc = errors.VidgoUnavailable("503 from Vidgo", status_code=503)
    assert _run_raising(monkeypatch, exc, retries=0, token="stale") is None


def test_stage_task_honours_retry_after_and_cools_every_worker_down_on_429(monkeypatch, rt, job):
    exc = errors.VidgoRateLimited("429", retry_after_s=40.0)
    with pytest.raises(Retry):
        _run_raising(monkeypatch, exc, retries=0)
    # above the 2 s ceiling of a first retry: Retry-After wins
    assert list(rt.sent)[-1].countdown_s == 40.0
    hold = rt.gate.cooldown()
    assert hold is not None and 39 < hold.remaining_s <= 40
    assert rt.ledger.counters()["rate_limit_cooldowns"] == 1


def test_stage_task_caps_retry_after_at_the_backoff_cap(monkeypatch, rt, job):
    with pytest.raises(Retry):
        _run_raising(monkeypatch, errors.VidgoRateLimited("429", retry_after_s=3600), retries=0)
    assert list(rt.sent)[-1].countdown_s == 60.0


def test_stage_task_does_not_retry_a_permanent_error(monkeypatch, rt, job):
    monkeypatch.setattr(
        pipeline, "run_poll", lambda *a: (_ for _ in ()).throw(errors.VidgoAuthError("401"))
    )
    monkeypatch.setattr(pipeline.runtime(), "stage_context", lambda *a: None, raising=False)
    with pytest.raises(errors.VidgoAuthError):
        pipeline.poll(job_id="j1", token="tok")
    assert "retries" not in rt.ledger.counters()


def _fail(exc: BaseException, *, retries: int = 0, token: str = "tok") -> None:
    pipeline.poll.push_request(retries=retries)
    try:
        pipeline.poll.on_failure(exc, "task-id", (), {"job_id": "j1", "token": token}, None)
    finally:
        pipeline.poll.pop_request()


def test_on_failure_fails_the_job_with_a_permanent_errors_code_and_message(rt, job):
    _fail(errors.VidgoTaskFailed("Vidgo rejected the input: not audio", code="vidgo_task_rejected"))
    failed = rt.ledger.get(job)
    assert failed.state is JobState.FAILED
    assert failed.error_code == "vidgo_task_rejected"
    assert failed.error_message == "Vidgo rejected the input: not audio"
    assert rt.ends == [("j1", "vidgo_task_rejected")]  # the result under the job id says so


def test_on_failure_after_exhausted_retries_says_how_many(rt, job):
    _fail(errors.VidgoUnavailable("503 from Vidgo", status_code=503), retries=5)
    failed = rt.ledger.get(job)
    assert failed.state is JobState.FAILED
    assert failed.error_code == "vidgo_unavailable"
    assert failed.error_message == "503 from Vidgo (gave up after 5 retries)"


def test_on_failure_for_an_infrastructure_error_uses_a_transient_code(rt, job):
    _fail(redis.exceptions.ConnectionError("redis went away"), retries=5)
    assert rt.ledger.get(job).error_code == "transient_error"


def test_on_failure_for_a_bug_records_an_internal_error(rt, job):
    _fail(KeyError("stems"))
    failed = rt.ledger.get(job)
    assert failed.state is JobState.FAILED
    assert failed.error_code == "internal_error"
    assert failed.error_message == "KeyError: 'stems'"


def test_on_failure_with_a_stale_token_leaves_the_job_alone(rt, job):
    _fail(errors.VidgoAuthError("401"), token="old-token")
    assert rt.ledger.get(job).state is JobState.QUEUED
    assert rt.ends == []


def test_on_failure_of_an_enqueue_by_name_touches_no_job(rt, job):
    pipeline.enqueue.push_request(retries=0)
    try:
        pipeline.enqueue.on_failure(
            errors.InvalidTaskInput("bad"), "id", (), {"job_id": "j1"}, None
        )
    finally:
        pipeline.enqueue.pop_request()
    assert rt.ledger.get(job).state is JobState.QUEUED


def test_a_retry_that_cannot_be_scheduled_leaves_the_job_for_the_sweep(monkeypatch, rt, job):
    def redis_down(*args, **kwargs):
        raise redis.exceptions.ConnectionError("redis restarting")

    monkeypatch.setattr(pipeline, "schedule_retry", redis_down)
    with pytest.raises(Ignore):
        _run_raising(monkeypatch, redis.exceptions.ConnectionError("redis went away"), retries=0)
    stays = rt.ledger.get(job)
    assert (stays.state, stays.token) == (JobState.QUEUED, "tok")  # not failed: work not lost
    assert rt.ends == []


def test_a_part_retry_carries_its_part_in_an_entry_beside_its_siblings(monkeypatch, rt, job):
    def body(ctx, job_id, token, part):
        raise errors.StorageUnavailable(f"bucket does not answer for {part}")

    monkeypatch.setattr(pipeline, "run_part", body)
    monkeypatch.setattr(pipeline.runtime(), "stage_context", lambda *a: None, raising=False)
    for part in ("bass", "drums"):
        pipeline.postprocess_stem.push_request(retries=0)
        try:
            with pytest.raises(Retry):
                pipeline.postprocess_stem(job_id="j1", token="tok", part=part)
        finally:
            pipeline.postprocess_stem.pop_request()
    steps = [s for s in rt.sent if s.task is TaskName.POSTPROCESS_STEM]
    assert sorted((s.part, s.token, s.retries) for s in steps) == [
        ("bass", "tok", 1),
        ("drums", "tok", 1),
    ]
    scheduled = rt.client.zrange("t:schedule", 0, -1)
    assert sorted(scheduled) == [b"t:job:j1#part:bass", b"t:job:j1#part:drums"]
    pipeline.postprocess_stem.push_request(retries=0)
    try:  # a part of a job that moved on schedules nothing
        assert pipeline.postprocess_stem(job_id="j1", token="old", part="bass") == "stale"
    finally:
        pipeline.postprocess_stem.pop_request()


def test_the_purge_message_of_one_job_removes_only_its_files_as_vidgo_served_them(
    monkeypatch, rt, job, tmp_path
):
    from vidgo_stems.files.storage import FileStorage

    rt.storage = FileStorage(tmp_path / "stored")
    rt.storage.put_bytes("j1/original/vocals.mp3", b"vidgo's", content_type="audio/mpeg")
    rt.storage.put_bytes("j1/vocals.flac", b"ours", content_type="audio/flac")
    path = [JobState.QUEUED, JobState.SUBMITTING, JobState.SUBMITTED, JobState.DOWNLOADING]
    path += [JobState.POSTPROCESSING, JobState.DONE]
    for was, to in itertools.pairwise(path):
        assert rt.ledger.advance("j1", expect=was, token=None, to=to, event="test")
    assert pipeline.purge_expired(job_id="j1", part="original") == 1
    assert rt.storage.stat("j1/original/vocals.mp3") is None
    assert rt.storage.stat("j1/vocals.flac") is not None
    assert pipeline.purge_expired(job_id="j1", part="something-else") == 0
