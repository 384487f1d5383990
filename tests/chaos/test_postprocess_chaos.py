"""Chaos in post-processing: the worker running a stem step is SIGKILLed, and then the worker
holding the join. The parts recorded stay recorded, the missing ones and the join are sent
again by the recovery sweep, and the emulator's record shows nothing paid or downloaded twice.
"""

from __future__ import annotations

from collections import Counter

import pytest

from tests.chaos.audit import audit
from tests.chaos.deadlines import reach_s, settle_s
from vidgo_stems.devstack.local import wait_for
from vidgo_stems.pipeline.parts import SOURCE, Parts
from vidgo_stems.pipeline.states import JobState

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(600)]


def scratch_of(stack, name):
    return stack.folder / f"scratch-{name}"


def test_a_worker_killed_mid_stem_step_and_another_mid_join_leave_one_done_job(chaos):
    stack = chaos(VIDGO_STEMS_STALL_TIMEOUT_S="600")
    # Each kill costs the job one recovery by the sweep, on top of its own way through.
    after_a_kill = settle_s(stack, jobs=1, slots=1, recoveries=1)
    first = stack.start_worker(
        name="first", env={"VIDGO_STEMS_SCRATCH_DIR": str(scratch_of(stack, "first"))}
    )
    job_id = stack.enqueue(stack.track_url("long"), output_type="general")
    parts = Parts(stack.ledger)

    def mid_stem_step() -> str | None:
        job = stack.ledger.get(job_id)
        if job.state is not JobState.POSTPROCESSING:
            return None
        working = scratch_of(stack, "first") / job_id / "delivered"
        busy = [p.name for p in working.glob("*") if not parts.is_done(job_id, p.name)]
        return busy[0] if busy else None

    stem = wait_for(
        mid_stem_step, timeout_s=reach_s(stack), interval_s=0.01, what="a stem step to start"
    )
    first.kill()
    assert not parts.is_done(job_id, stem), f"{stem} finished before the kill"
    second = stack.start_worker(
        name="second", env={"VIDGO_STEMS_SCRATCH_DIR": str(scratch_of(stack, "second"))}
    )
    count = len(stack.ledger.get(job_id).stems) + 1

    def joining() -> bool:
        job = stack.ledger.get(job_id)
        assert job.state is JobState.POSTPROCESSING, f"the join finished first: {job.state}"
        return len(parts.results(job_id)) == count

    wait_for(joining, timeout_s=after_a_kill, interval_s=0.005, what="every part done")
    second.kill()
    assert stack.ledger.get(job_id).state is JobState.POSTPROCESSING
    stack.start_worker(name="third")
    (view,) = stack.wait_all([job_id], timeout_s=after_a_kill)
    assert view.state is JobState.DONE, (view.state, view.error)
    # Every part recorded once, each by one step; the join ran once. The stem step killed
    # while running is sent again by the sweep; the join killed with its worker may be too,
    # or, when the worker had not taken it yet, run from the queue (as happened on a busy
    # machine): only the first recovery is certain.
    events = Counter(e["event"] for e in view.history)
    recorded = Counter(e["part"] for e in view.history if e["event"] == "part_done")
    assert recorded == Counter([*view.stems, SOURCE]), recorded
    assert events["done"] == 1 and events["recovered"] >= 1, events
    # Nothing paid twice, every stem downloaded once, and the manifest has every stem with
    # the bytes Vidgo served (audit reads the manifest and every delivered stem).
    totals = audit(stack, [view])
    assert totals["paid"] == 1
    downloads = Counter(
        e["stem"]
        for e in stack.emulator.record("download")
        if e["task_id"] == view.vidgo_task_id and e["status"] in (200, 206)
    )
    assert downloads == Counter(list(view.stems)), downloads
