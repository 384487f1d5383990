"""Log formatting, secret scrubbing and the cluster snapshot, as units (fakeredis for Redis)."""

from __future__ import annotations

import io
import json
import logging
import time

import pytest

from tests.jobs import create_job, job_in
from vidgo_stems.keys import Keys
from vidgo_stems.monitor.cluster import OVERDUE_AFTER_S, take_snapshot
from vidgo_stems.observe import logs
from vidgo_stems.pipeline.states import JobState, new_token

SECRET_KEY = "sk-live-" + "q" * 24
HOOK_SECRET = "whsec_" + "A/b+" * 10  # '/' and '+' survive JSON; the quote below does not
QUOTED = 'pw"with\\quote-0123'


@pytest.fixture
def settings(make_settings, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", QUOTED)
    return make_settings(
        vidgo_api_key=SECRET_KEY,
        webhook_secret=HOOK_SECRET,
        redis_url="redis://:redis-pass-99@cache:6379/0",
    )


def emit(settings, fmt: str, message: str, *args, exc: BaseException | None = None, **extra):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.formatter_for(settings.model_copy(update={"log_format": fmt})))
    logger = logging.getLogger(f"test-observe-{fmt}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    exc_info = (type(exc), exc, exc.__traceback__) if exc else None
    logger.info(message, *args, exc_info=exc_info, extra=extra)
    return stream.getvalue()


@pytest.mark.parametrize("fmt", ["json", "plain"])
def test_every_configured_secret_is_scrubbed_from_message_args_fields_and_tracebacks(settings, fmt):
    try:
        raise RuntimeError(f"boom with {SECRET_KEY}")
    except RuntimeError as err:
        out = emit(
            settings,
            fmt,
            "calling with %s and %s then %s",
            SECRET_KEY,
            HOOK_SECRET,
            "redis-pass-99",
            exc=err,
            job_id="j1",
            event=QUOTED,
        )
    assert out.count(logs.MASK) >= 5
    for secret in (SECRET_KEY, HOOK_SECRET, "redis-pass-99", QUOTED, json.dumps(QUOTED)[1:-1]):
        assert secret not in out


def test_json_lines_carry_the_transition_fields(settings):
    token = logs.stage_started("poll", 3)
    try:
        extra = logs.transition_fields(
            "job-1", "task-9", from_state="RUNNING", to_state="DOWNLOADING", event="finished"
        )
    finally:
        logs.stage_finished(token)
    line = emit(settings, "json", "job %s moved", "job-1", **extra)
    record = json.loads(line)
    assert record["message"] == "job job-1 moved"
    assert record["level"] == "INFO" and record["logger"] == "test-observe-json"
    assert record["time"].endswith("+00:00")  # ISO 8601, UTC
    assert record["vidgo_task_id"] == "task-9" and record["stage"] == "poll"
    assert record["attempt"] == 3 and record["duration_s"] >= 0
    assert (record["from_state"], record["to_state"]) == ("RUNNING", "DOWNLOADING")


def test_plain_lines_append_the_fields_as_pairs_before_a_traceback(settings):
    try:
        raise ValueError("bad")
    except ValueError as err:
        out = emit(settings, "plain", "job moved", exc=err, job_id="job-2", attempt=1)
    first, *rest = out.splitlines()
    assert first.endswith("job moved job_id=job-2 attempt=1")
    assert any("ValueError: bad" in line for line in rest)


def test_outside_a_task_the_stage_fields_are_empty():
    extra = logs.transition_fields("j", None, from_state="A", to_state="B", event="e")
    assert extra["stage"] is None and extra["attempt"] is None and extra["duration_s"] is None


def test_a_short_secret_is_not_used_to_mask_everything(make_settings):
    found = logs.secrets_of(make_settings(vidgo_api_key="abc"))
    assert "abc" not in found


def test_the_snapshot_counts_states_slots_overdue_polls_and_buckets(
    make_settings, fake_redis, make_fake_ledger
):
    client = fake_redis
    settings = make_settings(max_in_flight=7, redis_key_prefix="snap")
    ledger = make_fake_ledger(prefix="snap")
    keys = Keys("snap")
    now = time.time()
    create_job(ledger, "j0", token="t")
    for n, due_in in enumerate([-60, 30, -1], start=1):
        job_in(
            ledger,
            JobState.SUBMITTED,
            f"j{n}",
            token="t",
            new_token=new_token(),
            fields={"next_due_at": now + due_in, "vidgo_task_id": f"task-{n}"},
        )
    client.zadd(keys.in_flight, {"a": now, "b": now})
    client.rpush("vidgo", "m1", "m2", "m3")
    client.hset(keys.rate_bucket("query"), mapping={"tokens": "-2", "ts": str(now), "rate": "5"})
    ledger.bump_counter("stalls")

    snap = take_snapshot(client, ledger, settings, ["vidgo"])

    assert snap.jobs["QUEUED"] == 1 and snap.jobs["SUBMITTED"] == 3 and snap.jobs["DONE"] == 0
    assert snap.queues == {"vidgo": 3}
    assert (snap.in_flight, snap.in_flight_cap) == (2, 7)
    assert snap.polls_pending == 3
    assert snap.polls_overdue == 1  # one second late is not overdue yet
    assert 60 - 2 < snap.oldest_overdue_s < 60 + 2 and OVERDUE_AFTER_S < 60
    assert snap.buckets["query"].rate_per_s == 5 and snap.buckets["query"].tokens < 0
    assert snap.buckets["submit"].tokens == settings.vidgo_submit_burst
    assert snap.counters == {"stalls": 1}
    assert json.loads(json.dumps(snap.to_json()))["jobs"]["SUBMITTED"] == 3


def test_one_worker_reads_the_balance_once_per_period_and_a_failure_is_logged(
    make_settings, fake_redis, make_fake_ledger, caplog
):
    from vidgo_stems.errors import VidgoUnavailable
    from vidgo_stems.pipeline.recovery import SweepThread
    from vidgo_stems.vidgo.gate import VidgoGate

    client = fake_redis
    settings = make_settings(redis_key_prefix="bal", balance_check_s=300)
    reads: list[int] = []

    def read() -> int:
        reads.append(1)
        return 1234

    def sweeper(reader):
        return SweepThread(client, make_fake_ledger(prefix="bal"), settings, read_balance=reader)

    assert sweeper(read).check_balance() == 1234
    assert sweeper(read).check_balance() is None  # another worker, within the period
    assert len(reads) == 1
    gate = VidgoGate(client, prefix="bal")
    assert gate.balance()[0] == 1234
    gate.record_balance(1234, at=time.time() - 301)
    assert sweeper(read).check_balance() == 1234 and len(reads) == 2

    def broken() -> int:
        raise VidgoUnavailable("Vidgo answered 503")

    gate.record_balance(1234, at=time.time() - 301)
    assert sweeper(broken).check_balance() is None
    assert "could not read the Vidgo balance: Vidgo answered 503" in caplog.text


def test_the_metrics_folder_is_one_per_port_and_left_alone_when_the_port_is_served(
    monkeypatch, tmp_path
):
    import socket

    from vidgo_stems.observe import multiproc

    monkeypatch.setenv(multiproc.ENV, "set-here")  # so the variable is restored afterwards
    monkeypatch.delenv(multiproc.ENV)
    monkeypatch.setattr(multiproc.tempfile, "tempdir", str(tmp_path))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    folder = multiproc.prepare_multiproc_dir(port)
    assert folder == tmp_path / f"vidgo-stems-metrics-{port}"
    (folder / "counter_123.db").write_bytes(b"old")
    monkeypatch.delenv(multiproc.ENV)
    assert multiproc.prepare_multiproc_dir(port) == folder  # a restart reuses and empties it
    assert not list(folder.glob("*.db"))
    (folder / "counter_456.db").write_bytes(b"live")
    monkeypatch.delenv(multiproc.ENV)
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", port))
        busy.listen()
        other = multiproc.prepare_multiproc_dir(port)  # another worker serves that port
    assert other != folder and (folder / "counter_456.db").exists()
    assert multiproc.os.environ[multiproc.ENV] == str(other)


def test_a_metrics_folder_name_taken_by_a_link_is_not_used(monkeypatch, tmp_path):
    import socket

    from vidgo_stems.observe import multiproc

    monkeypatch.setenv(multiproc.ENV, "set-here")
    monkeypatch.delenv(multiproc.ENV)
    monkeypatch.setattr(multiproc.tempfile, "tempdir", str(tmp_path))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.db").write_bytes(b"not ours")
    (tmp_path / f"vidgo-stems-metrics-{port}").symlink_to(elsewhere)
    folder = multiproc.prepare_multiproc_dir(port)
    assert folder.parent == tmp_path and not folder.is_symlink()
    assert (elsewhere / "keep.db").exists()
