"""Batch runs under faults: interrupted with SIGINT mid-run, resumed, audited."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from tests.chaos.audit import audit
from tests.chaos.deadlines import reach_s, redis_call_s, wait_progress
from tests.sentinel import MARGIN
from vidgo_stems.pipeline.states import TERMINAL_STATES

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(900)]

FAULTS = {
    "rate_429": 0.03,
    "retry_after_s": 0.2,
    "rate_5xx": 0.05,
    "rate_cut": 0.02,
    "task_fail_rate": 0.02,
    "task_reject_rate": 0.02,
    "download_cut_rate": 0.03,
    "download_expire_rate": 0.02,
}


@pytest.fixture
def batches():
    """Start the batch command; whatever a failed test leaves running is stopped afterwards."""
    started = []

    def start(stack, catalog, *args):
        process, log = start_batch(stack, catalog, *args)
        started.append((process, log))
        return process, log

    yield start
    for process, log in started:
        if process.poll() is None:
            process.kill()
        process.wait()
        log.close()


def start_batch(stack, catalog, *args):
    log = open(catalog.with_suffix(".log"), "a")  # noqa: SIM115 - closed by the fixture
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vidgo_stems.cli",
            "batch",
            str(catalog),
            "--bad-rows",
            "skip",
            *args,
        ],
        env={**stack.env, "PATH": os.environ["PATH"]},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return process, log


def jobs_ended(stack) -> int:
    """Jobs of this stack in a terminal state, wherever their rows stand in the manifest."""
    pipe = stack.ledger.redis.pipeline(transaction=False)
    for state in TERMINAL_STATES:
        pipe.zcard(stack.ledger.keys.state_index(state.value))
    return sum(pipe.execute())


def manifest_lines(path):
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def test_a_2000_row_catalog_interrupted_and_resumed_ends_once_per_row_and_pays_once(
    chaos, batches, tmp_path
):
    stack = chaos(emulator={"faults": FAULTS}, VIDGO_STEMS_MAX_VIDGO_TASKS="4")
    stack.start_worker(concurrency=4, name="a")
    stack.start_worker(concurrency=4, name="b")
    rows = ["audio_url,id,output_type,album"]
    for i in range(2000):
        track = i % 1700  # 300 rows list a track a second time, under their own id
        rows.append(f"{stack.tracks_url}/missing/cat-{track}.wav,row-{i},vocals,album-{i % 7}")
    rows[500] = "not a url,row-499,vocals,x"  # a bad row, skipped
    catalog = tmp_path / "catalog.csv"
    catalog.write_text("\n".join(rows) + "\n")
    manifest = tmp_path / "catalog.csv.manifest.jsonl"

    # Deadlines from the stack under test. A run is stuck when no job has ended for one job's
    # longest way, every Vidgo task it may start (a slow run on a busy machine keeps ending
    # jobs). The manifest cannot tell: it is written in row order, so one row on its third
    # task holds back every line after it. Ctrl-C stops the driver at its next row boundary,
    # at worst after the ledger call it is making.
    stall_s = reach_s(stack, attempts=stack.settings.max_vidgo_tasks)

    first, _ = batches(stack, catalog, "--window", "150")
    ended = wait_progress(
        lambda: jobs_ended(stack),
        lambda: len(manifest_lines(manifest)) >= 400 or first.poll() is not None,
        stall_s=stall_s,
        what="400 rows to end (jobs ended)",
    )
    assert first.poll() is None, catalog.with_suffix(".log").read_text()[-3000:]
    assert ended >= 399  # the progress counted is the rows' jobs ending (one row is bad)
    first.send_signal(signal.SIGINT)
    assert first.wait(timeout=MARGIN * (0.5 + redis_call_s(stack))) == 130
    interrupted = manifest_lines(manifest)
    assert 400 <= len(interrupted) < 2000
    assert len({e["line"] for e in interrupted}) == len(interrupted)

    second, _ = batches(stack, catalog, "--window", "150")
    wait_progress(
        lambda: jobs_ended(stack),
        lambda: second.poll() is not None,
        stall_s=stall_s,
        what="the resumed run to end (jobs ended)",
    )
    code = second.wait()
    output = catalog.with_suffix(".log").read_text()
    assert code in (0, 1), output[-3000:]

    final = manifest_lines(manifest)
    assert [e["line"] for e in final] == list(range(2, 2002))  # one result per row, in order
    assert {e["state"] for e in final} <= {"DONE", "FAILED", "INVALID"}
    assert final[499]["state"] == "INVALID"
    assert {json.dumps(e, sort_keys=True) for e in interrupted} <= {
        json.dumps(e, sort_keys=True) for e in final
    }  # what was written before the interrupt stays as it was
    for entry in final:
        if entry["state"] == "FAILED":
            assert entry["error_code"] in ("vidgo_task_rejected", "vidgo_task_failed"), entry

    job_ids = sorted({e["job_id"] for e in final if e["job_id"]})
    assert len(job_ids) == 1699  # 1700 tracks, but the only row of track 499 is the bad one
    views = [stack.job(j) for j in job_ids]
    totals = audit(stack, views)
    ours = {v.request["audio_url"] for v in views}
    paid_elsewhere = [
        e for e in stack.emulator.record("submit") if "task_id" in e and e["audio_url"] not in ours
    ]
    assert paid_elsewhere == []
    assert totals["paid"] >= len(job_ids)
    report = json.loads((tmp_path / "catalog.csv.manifest.failures.json").read_text())
    assert report["failed_rows"] == sum(e["state"] != "DONE" for e in final)
