"""Batch runs end to end: the CLI against a real worker, Redis and the emulator."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from tests.support import Stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def batch_stack(redis_server, redis_client, emulator, tracks_url, tmp_path_factory):
    stack = Stack(
        redis_client, redis_server.url, emulator, tracks_url, tmp_path_factory.mktemp("batch")
    )
    stack.start_worker(concurrency=3, name="batch")
    yield stack
    stack.stop()


def run_batch(stack, *args, timeout=300, env=None):
    return subprocess.run(
        [sys.executable, "-m", "vidgo_stems.cli", "batch", *args],
        env={**stack.env, "PATH": os.environ["PATH"], **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def read_manifest(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def catalog_rows(stack, n, *, prefix="t"):
    return [
        f"{stack.tracks_url}/missing/{prefix}-{i}.wav,{prefix}-{i},Song {i},base,vocals"
        for i in range(n)
    ]


def test_a_small_catalog_runs_to_a_complete_manifest_and_report(batch_stack, tmp_path):
    rows = catalog_rows(batch_stack, 12)
    rows.append(rows[0].replace(",t-0,", ",t-0-again,"))  # the same track again: one job
    rows.append(f"{batch_stack.tracks_url}/x.wav,bad,Bad,turbo,vocals")  # bad enum
    rows.append(",no-url,No URL,base,vocals")
    catalog = tmp_path / "tracks.csv"
    catalog.write_text("audio_url,id,title,model_name,output_type\n" + "\n".join(rows) + "\n")

    stopped = run_batch(batch_stack, str(catalog))
    assert stopped.returncode == 2, stopped.stderr
    assert f"{catalog}:15" in stopped.stderr and "turbo" in stopped.stderr
    assert f"{catalog}:16" in stopped.stderr and "audio_url is missing" in stopped.stderr
    assert "--bad-rows skip" in stopped.stderr
    assert batch_stack.emulator.record("submit") == [] or all(
        "missing/t-" not in e.get("audio_url", "") for e in batch_stack.emulator.record("submit")
    )

    done = run_batch(batch_stack, str(catalog), "--bad-rows", "skip")
    assert done.returncode == 1, done.stderr  # complete, with two invalid rows
    # Not a terminal: the live view is plain summary lines, the last one complete; none says
    # "final" of rows that are only ended so far.
    summaries = [line for line in done.stderr.splitlines() if " rows ended · " in line]
    assert summaries and summaries[-1].startswith("15/15 rows ended")
    assert "rows final" not in done.stderr
    assert "failures 2" in summaries[-1] and "DONE 13" in summaries[-1]
    manifest = read_manifest(tmp_path / "tracks.csv.manifest.jsonl")
    assert [e["line"] for e in manifest] == list(range(2, 17))
    by_line = {e["line"]: e for e in manifest}
    assert by_line[2]["job_id"] == by_line[14]["job_id"] and by_line[14]["row_id"] == "t-0-again"
    assert {by_line[n]["state"] for n in range(2, 15)} == {"DONE"}
    assert by_line[15]["state"] == by_line[16]["state"] == "INVALID"
    assert len(by_line[3]["stems"]["vocals"]["sha256"]) == 64
    report = json.loads((tmp_path / "tracks.csv.manifest.failures.json").read_text())
    assert report["failed_rows"] == 2 and report["by_reason"]["invalid_row"]["count"] == 2

    paid = [
        e for e in batch_stack.emulator.record("submit") if "missing/t-" in e.get("audio_url", "")
    ]
    assert len(paid) == 12  # 13 good rows, 12 distinct tracks

    again = run_batch(batch_stack, str(catalog), "--bad-rows", "skip")
    assert again.returncode == 1
    assert read_manifest(tmp_path / "tracks.csv.manifest.jsonl") == manifest
    assert (
        len(
            [
                e
                for e in batch_stack.emulator.record("submit")
                if "missing/t-" in e.get("audio_url", "")
            ]
        )
        == 12
    )

    # A run that finds every job already ended (a resume after the manifest was lost) did no
    # work of its own: no rate, no ETA, however fast it records the rows.
    resumed = run_batch(
        batch_stack, str(catalog), "--bad-rows", "skip", "--manifest", str(tmp_path / "m.jsonl")
    )
    assert resumed.returncode == 1, resumed.stderr
    summaries = [line for line in resumed.stderr.splitlines() if " rows ended · " in line]
    assert summaries and all(" · 0.0 rows/s · ETA - · " in line for line in summaries), summaries
    assert summaries[-1].startswith("15/15 rows ended")

    batch_id = done.stderr.split()[1].rstrip(":")
    status = batch_stack.cli("batch-status", batch_id, "--json")
    assert status.returncode == 0, status.stderr
    view = json.loads(status.stdout)
    assert view["jobs_by_state"] == {"DONE": 12} and view["info"]["status"] == "complete"


def test_dry_run_estimates_and_submits_nothing(batch_stack, tmp_path):
    catalog = tmp_path / "c.jsonl"
    catalog.write_text(
        "\n".join(
            json.dumps({"audio_url": f"{batch_stack.tracks_url}/missing/d-{i}.wav"})
            for i in range(5)
        )
    )
    before = len(batch_stack.emulator.record("submit"))
    result = run_batch(
        batch_stack, str(catalog), "--dry-run", env={"VIDGO_STEMS_CREDITS_PER_TASK": "400000"}
    )
    assert result.returncode == 0, result.stderr
    assert "5 new Vidgo tasks x 400,000 credits = 2,000,000 credits" in result.stderr
    assert re.search(r"balance: \d{1,3}(,\d{3})*\n", result.stderr)  # read from the emulator
    assert len(batch_stack.emulator.record("submit")) == before
    assert not (tmp_path / "c.jsonl.manifest.jsonl").exists()


def test_a_balance_that_cannot_cover_the_batch_stops_it_before_any_submit(batch_stack, tmp_path):
    catalog = tmp_path / "c.csv"
    catalog.write_text(
        "audio_url\n" + "\n".join(f"{batch_stack.tracks_url}/missing/p-{i}.wav" for i in range(4))
    )
    before = len(batch_stack.emulator.record("submit"))
    result = run_batch(batch_stack, str(catalog), env={"VIDGO_STEMS_CREDITS_PER_TASK": "1000000"})
    assert result.returncode == 2
    assert "does not cover the estimate" in result.stderr and "--ignore-balance" in result.stderr
    assert len(batch_stack.emulator.record("submit")) == before


def test_the_batch_never_has_more_jobs_in_flight_than_its_window(batch_stack, tmp_path):
    catalog = tmp_path / "window.csv"
    rows = catalog_rows(batch_stack, 12, prefix="w")
    catalog.write_text("audio_url,id,title,model_name,output_type\n" + "\n".join(rows) + "\n")
    result = run_batch(batch_stack, str(catalog), "--window", "3")
    assert result.returncode == 0, result.stderr
    edges = []
    for entry in read_manifest(tmp_path / "window.csv.manifest.jsonl"):
        history = batch_stack.ledger.history(entry["job_id"])
        edges += [(history[0]["at"], 1), (history[-1]["at"], -1)]  # enqueued .. ended
    level = peak = 0
    for _, step in sorted(edges, key=lambda e: (e[0], e[1])):
        level += step
        peak = max(peak, level)
    assert peak == 3  # the window, and nothing else, held the rest back


def test_retry_failed_brings_a_batch_with_failed_rows_to_all_done_paying_only_for_those(
    batch_stack, tmp_path
):
    rows = catalog_rows(batch_stack, 12, prefix="rf")
    catalog = tmp_path / "retry.csv"
    catalog.write_text("audio_url,id,title,model_name,output_type\n" + "\n".join(rows) + "\n")
    manifest = tmp_path / "retry.manifest.jsonl"
    with batch_stack.emulator.configured(faults={"task_reject_rate": 0.5}):
        first = run_batch(
            batch_stack, str(catalog), "--ignore-balance", "--manifest", str(manifest)
        )
    assert first.returncode == 1, first.stderr  # some rows failed
    states = {e["row_id"]: e["state"] for e in read_manifest(manifest)}
    failed = {row for row, state in states.items() if state == "FAILED"}
    assert failed and len(failed) < 12, states

    plain = run_batch(batch_stack, str(catalog), "--ignore-balance", "--manifest", str(manifest))
    assert plain.returncode == 1  # without --retry-failed, failed rows stay failed
    again = run_batch(
        batch_stack,
        str(catalog),
        "--ignore-balance",
        "--retry-failed",
        "--manifest",
        str(manifest),
    )
    assert again.returncode == 0, again.stderr
    entries = read_manifest(manifest)
    assert len(entries) == 12 and {e["state"] for e in entries} == {"DONE"}
    assert [e["line"] for e in entries] == sorted(e["line"] for e in entries)
    record = batch_stack.emulator.record("submit")
    for i, row in enumerate(rows):
        url = row.split(",", 1)[0]
        paid = sum(1 for e in record if e.get("audio_url") == url)
        assert paid == (2 if f"rf-{i}" in failed else 1), (row, paid)
