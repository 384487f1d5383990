"""Retention: purge removes an old ended job's stored files and ledger entry together, leaves
every other job alone, and a dry run removes nothing."""

from __future__ import annotations

import pytest

from tests.jobs import ManualClock, create_job, move_to
from vidgo_stems.errors import InvalidRequest
from vidgo_stems.files.storage import FileStorage
from vidgo_stems.models import parse_request
from vidgo_stems.pipeline.retention import ended_before, parse_duration, purge, remove_originals
from vidgo_stems.pipeline.states import JobState

DAY = 86400.0


@pytest.fixture
def world(tmp_path, make_fake_ledger):
    clock = ManualClock(1_000_000_000.0)
    ledger = make_fake_ledger(clock=clock)
    storage = FileStorage(tmp_path / "stored")
    return ledger, storage, clock


def make_job(ledger, storage, job_id, *, end: JobState | None):
    request = parse_request({"audio_url": f"https://cdn.example/{job_id}.mp3"})
    create_job(ledger, job_id, request, token="t")
    storage.put_bytes(
        f"{job_id}/vocals.mp3", b"audio " + job_id.encode(), content_type="audio/mpeg"
    )
    storage.put_bytes(f"{job_id}/manifest.json", b"{}", content_type="application/json")
    if end is not None:
        move_to(ledger, job_id, end, event="end")


def test_purge_removes_old_ended_jobs_files_and_entries_and_nothing_else(world):
    ledger, storage, clock = world
    make_job(ledger, storage, "old-done", end=JobState.FAILED)
    clock.now += 35 * DAY
    make_job(ledger, storage, "recent", end=JobState.CANCELLED)
    make_job(ledger, storage, "running", end=None)
    clock.now += DAY
    forgotten = []
    gone = purge(
        ledger,
        storage,
        older_than_s=30 * DAY,
        now=clock.now,
        forget_result=forgotten.append,
    )
    assert [(g.job_id, g.files) for g in gone] == [("old-done", 2)]
    assert forgotten == ["old-done"]
    assert ledger.get("old-done") is None and ledger.history("old-done") == []
    assert storage.stat("old-done/vocals.mp3") is None
    assert not (storage.root / "old-done").exists() or not list(
        (storage.root / "old-done").iterdir()
    )
    for job_id in ("recent", "running"):
        assert ledger.get(job_id) is not None
        assert storage.read_bytes(f"{job_id}/vocals.mp3") == b"audio " + job_id.encode()
    assert purge(ledger, storage, older_than_s=30 * DAY, now=clock.now) == []  # idempotent


def test_purge_dry_run_lists_and_removes_nothing(world):
    ledger, storage, clock = world
    make_job(ledger, storage, "old", end=JobState.FAILED)
    clock.now += 40 * DAY
    listed = purge(ledger, storage, older_than_s=30 * DAY, now=clock.now, dry_run=True)
    assert [g.job_id for g in listed] == ["old"]
    assert ledger.get("old") is not None
    assert storage.stat("old/vocals.mp3") is not None


def test_a_job_retried_after_it_ended_leaves_the_purge_index(world):
    ledger, storage, clock = world
    make_job(ledger, storage, "j", end=None)
    move_to(ledger, "j", JobState.FAILED, event="end")
    assert [j for j, _ in ended_before(ledger, clock.now + 1)] == ["j"]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30d", 30 * DAY), ("12h", 43200), ("90m", 5400), ("45", 45), ("2w", 14 * DAY)],
)
def test_durations_read_as_operators_write_them(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "30 days", "-1d", "1y"])
def test_a_bad_duration_says_how_to_write_one(text):
    with pytest.raises(InvalidRequest, match=r"e\.g\. 30d"):
        parse_duration(text)


def test_scratch_folders_left_by_jobs_finished_elsewhere_are_removed_after_their_ttl(tmp_path):
    import os

    from vidgo_stems.files.scratch import StemStore

    scratch = StemStore(tmp_path / "scratch")
    old, fresh = scratch.job_dir("old-job"), scratch.job_dir("fresh-job")
    (old / "vocals.wav").write_bytes(b"x")
    (fresh / "vocals.wav").write_bytes(b"y")
    now = 2_000_000_000.0
    for path in (old, old / "vocals.wav"):
        os.utime(path, (now - 7 * 3600, now - 7 * 3600))
    for path in (fresh, fresh / "vocals.wav"):
        os.utime(path, (now - 60, now - 60))
    assert scratch.remove_older_than(6 * 3600, now=now) == ["old-job"]
    assert not old.exists() and (fresh / "vocals.wav").read_bytes() == b"y"


def test_removing_originals_spares_a_job_that_is_active_again_and_the_delivered_stems(world):
    ledger, storage, _ = world
    make_job(ledger, storage, "done", end=JobState.FAILED)  # ended; retried below
    storage.put_bytes("done/original/vocals.mp3", b"vidgo's", content_type="audio/mpeg")
    assert ledger.advance(
        "done", expect=JobState.FAILED, token=None, to=JobState.POSTPROCESSING, event="retried"
    )
    assert remove_originals(ledger, storage, "done") == 0  # a retry may need them
    assert storage.stat("done/original/vocals.mp3") is not None
    assert ledger.advance(
        "done", expect=JobState.POSTPROCESSING, token=None, to=JobState.DONE, event="done"
    )
    assert remove_originals(ledger, storage, "done") == 1
    assert storage.stat("done/original/vocals.mp3") is None
    assert storage.stat("done/vocals.mp3") is not None
