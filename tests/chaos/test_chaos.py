"""Chaos: real worker processes killed, Redis restarted, the emulator failing in every way.

Each test ends with :func:`tests.chaos.audit.audit`: the emulator's own record of submissions
and stems decides whether anything was lost or paid twice.
"""

from __future__ import annotations

import itertools

import pytest
import redis

from tests.chaos.audit import audit
from tests.chaos.deadlines import reach_s, settle_s
from tests.waiting import wait_until
from vidgo_stems.devstack.redis_server import RedisServer
from vidgo_stems.pipeline.states import JobState

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(600)]

OUTPUTS = ["vocals", "bass", "general", "drums", "piano"]
API_KINDS = ("submit", "detail", "status", "balance")


def states(stack, job_ids) -> list[tuple[str, str]]:
    """Each job and its state, for a wait that gives up to print."""
    return [(j, stack.job(j).state.value) for j in job_ids]


def enqueue_many(stack, count, name="groove"):
    outputs = itertools.cycle(OUTPUTS)
    return [stack.enqueue(stack.track_url(name), output_type=next(outputs)) for _ in range(count)]


def api_failure_ratio(stack) -> float:
    record = stack.emulator.record()
    faults = [e for e in record if e["kind"] == "fault" and e["endpoint"] != "storage"]
    refused = [e for e in faults if e["fault"] in ("429", "5xx")]
    answered = [e for e in record if e["kind"] in API_KINDS]
    return len(faults) / (len(answered) + len(refused))


MIXED = {
    "rate_429": 0.07,
    "retry_after_s": 0.2,
    "rate_5xx": 0.12,
    "status_5xx": [500, 502, 503, 504],
    "rate_slow": 0.04,
    "slow_s": 1.5,
    "rate_cut": 0.06,
    "task_fail_rate": 0.04,
    "task_reject_rate": 0.04,
    "never_finish_rate": 0.02,
    "rate_empty_files": 0.03,
    "download_cut_rate": 0.08,
    "download_expire_rate": 0.04,
}


def test_two_hundred_jobs_through_mixed_faults(chaos):
    stack = chaos(
        emulator={"faults": MIXED},
        VIDGO_STEMS_MAX_VIDGO_TASKS="6",
        VIDGO_STEMS_EMPTY_FINISHED_REPOLLS="1",
        VIDGO_STEMS_SWEEP_GRACE_S="20",
    )
    stack.start_worker(concurrency=4, name="a")
    stack.start_worker(concurrency=4, name="b")
    job_ids = enqueue_many(stack, 200)
    # Each job may take up to MAX_VIDGO_TASKS attempts through the faults.
    views = stack.wait_all(job_ids, timeout_s=settle_s(stack, jobs=200, slots=8, attempts=6))
    ratio = api_failure_ratio(stack)
    print(f"API failure ratio: {ratio:.3f}")
    assert ratio >= 0.20
    tasks = stack.emulator.tasks()
    reject = "The audio violates our content policy"
    for view in views:
        rejected = any(tasks[t]["error_message"] == reject for t in view.vidgo_task_ids)
        if view.state is JobState.FAILED:
            assert view.error.code == "vidgo_task_rejected", (view.job_id, view.error)
            assert rejected
        else:
            assert view.state is JobState.DONE
    totals = audit(stack, views)
    assert totals["resubmits"] > 0 and totals["refreshed"] > 0
    counters = stack.ledger.counters()
    assert counters["retries"] > 0 and counters["rate_limit_cooldowns"] > 0
    assert counters.get("ambiguous_submits", 0) == totals["ambiguous"] > 0


def test_jobs_survive_workers_killed_mid_download_and_mid_poll(chaos):
    stack = chaos(emulator={"storage_chunk_delay_s": 0.15}, VIDGO_STEMS_STALL_TIMEOUT_S="600")
    first = stack.start_worker(concurrency=2, name="first")
    downloads = [stack.enqueue(stack.track_url(), output_type="general") for _ in range(4)]
    wait_until(
        lambda: any(stack.job(j).state is JobState.DOWNLOADING for j in downloads),
        timeout_s=reach_s(stack),
        what="a job to be mid-download",
        seen=lambda: states(stack, downloads),
    )
    first.kill()
    second = stack.start_worker(concurrency=2, name="second")
    with stack.emulator.configured(run_s=60):
        polls = enqueue_many(stack, 4, "ballad")
        wait_until(
            lambda: all(stack.job(j).polls >= 2 for j in polls),
            timeout_s=reach_s(stack),
            what="jobs to be mid-poll",
            seen=lambda: states(stack, polls),
        )
        second.kill()
    stack.start_worker(concurrency=2, name="third")
    views = stack.wait_all(downloads + polls, timeout_s=settle_s(stack, jobs=8, slots=2))
    not_done = [(v.job_id, v.state.value, v.error) for v in views if v.state is not JobState.DONE]
    assert not not_done, not_done
    recovered = {v.job_id for v in views if any(h["event"] == "recovered" for h in v.history)}
    # A download cut by the kill is sent again by the sweep. A poll waiting in the Redis
    # schedule survives the kill by itself; one the worker had taken (running or prefetched)
    # is sent again by the sweep, so either may happen to the polling jobs.
    assert recovered & set(downloads)
    totals = audit(stack, views)
    assert totals["paid"] == len(views)


def test_a_redis_restart_mid_run_loses_nothing(chaos):
    with RedisServer(appendonly=True) as own:
        client = redis.Redis.from_url(own.url)
        try:
            stack = chaos(redis=(client, own.url), emulator={"run_s": 1.5})
            stack.start_worker(concurrency=2, name="r")
            job_ids = enqueue_many(stack, 16)
            wait_until(
                lambda: any(stack.job(j).state is JobState.DONE for j in job_ids),
                timeout_s=reach_s(stack),
                what="the first job to finish",
                seen=lambda: states(stack, job_ids),
            )
            unfinished = [j for j in job_ids if not stack.job(j).state.is_terminal]
            own.restart()
            views = stack.wait_all(job_ids, timeout_s=settle_s(stack, jobs=16, slots=2))
        finally:
            client.close()
    assert unfinished
    not_done = [(v.job_id, v.state.value, v.error) for v in views if v.state is not JobState.DONE]
    assert not not_done, not_done
    totals = audit(stack, views)
    assert totals["paid"] == len(views)


@pytest.mark.parametrize(
    ("fault", "code", "paid"),
    [
        ("never_finish_rate", "vidgo_task_stalled", 3),
        ("task_fail_rate", "vidgo_task_failed", 3),
        ("rate_empty_files", "vidgo_finished_without_output", 3),
        ("task_reject_rate", "vidgo_task_rejected", 1),
    ],
)
def test_failed_and_stalled_tasks_are_resubmitted_within_bounds_and_no_further(
    chaos, fault, code, paid
):
    stack = chaos(
        emulator={"faults": {fault: 1.0}},
        VIDGO_STEMS_MAX_VIDGO_TASKS="3",
        VIDGO_STEMS_STALL_TIMEOUT_S="1.5",
        VIDGO_STEMS_EMPTY_FINISHED_REPOLLS="1",
    )
    stack.start_worker(concurrency=2, name="bounds")
    job_ids = enqueue_many(stack, 3)
    views = stack.wait_all(job_ids, timeout_s=settle_s(stack, jobs=3, slots=2, attempts=3))
    for view in views:
        assert view.state is JobState.FAILED
        assert view.error.code == code, view.error
        assert len(view.vidgo_task_ids) == paid
        assert [h["event"] for h in view.history].count("resubmit") == paid - 1
    audit(stack, views)
    submitted = {e["audio_url"] for e in stack.emulator.record("submit") if "task_id" in e}
    assert (
        len(stack.emulator.record("submit"))
        == paid * len(views)
        == sum(1 for e in stack.emulator.record("submit") if e["audio_url"] in submitted)
    )


def test_running_out_of_credits_pauses_submits_for_everyone_and_fails_nothing(chaos):
    stack = chaos(emulator={"credits": 4, "price_per_task": 2}, VIDGO_STEMS_CREDITS_PAUSE_S="600")
    stack.start_worker(concurrency=2, name="credits")
    job_ids = enqueue_many(stack, 5)
    wait_until(
        lambda: [e for e in stack.emulator.record("submit") if e.get("rejected") == 402],
        timeout_s=reach_s(stack),
        what="Vidgo to refuse a submit for want of credits",
        seen=lambda: states(stack, job_ids),
    )
    wait_until(
        lambda: sum(stack.job(j).state is JobState.DONE for j in job_ids) == 2,
        timeout_s=reach_s(stack),
        what="the two paid jobs to finish",
        seen=lambda: states(stack, job_ids),
    )
    paused = [stack.job(j) for j in job_ids if stack.job(j).state is not JobState.DONE]
    assert all(v.state is JobState.QUEUED for v in paused)
    refusals = len([e for e in stack.emulator.record("submit") if e.get("rejected") == 402])
    events = [[h["event"] for h in v.history] for v in paused]
    # Only submits already in flight when the first 402 came back can meet one; every other
    # job sees the shared pause and waits without calling Vidgo.
    assert refusals == sum("submit_paused" in e for e in events) <= 2
    assert all("submit_paused" in e or "submit_deferred" in e for e in events)
    shown = stack.cli("stats")
    assert "submits paused" in shown.stdout and "Insufficient credits" in shown.stdout
    stack.emulator.configure(credits=100)
    resumed = stack.cli("resume-submits")
    assert resumed.returncode == 0, resumed.stderr
    assert f"{len(paused)} waiting job(s) submitted again" in resumed.stdout
    views = stack.wait_all(job_ids, timeout_s=settle_s(stack, jobs=5, slots=2))
    assert all(v.state is JobState.DONE for v in views)
    audit(stack, views)


def test_sigterm_lets_a_running_download_finish_before_the_worker_exits(chaos):
    stack = chaos(emulator={"storage_chunk_delay_s": 0.1}, VIDGO_STEMS_STALL_TIMEOUT_S="600")
    worker = stack.start_worker(concurrency=1, name="term")
    job_id = stack.enqueue(stack.track_url(), output_type="general")
    # Mid-download: the download task is running (a first stem stored), not only queued.
    wait_until(
        lambda: "stem_saved" in [h["event"] for h in stack.job(job_id).history],
        timeout_s=reach_s(stack),
        what="the job to be mid-download",
        seen=lambda: states(stack, [job_id]),
    )
    worker.stop(timeout_s=60)  # SIGTERM: soft shutdown lets the running stage end
    assert worker.process.returncode == 0
    view = stack.job(job_id)
    # The download finished during the shutdown and handed off; nothing had to be recovered.
    assert view.state in (JobState.POSTPROCESSING, JobState.DONE), view.state
    assert [h["event"] for h in view.history].count("downloaded") == 1
    stack.start_worker(concurrency=1, name="after")
    [view] = stack.wait_all([job_id], timeout_s=settle_s(stack, jobs=1, slots=1))
    assert view.state is JobState.DONE
    assert "recovered" not in [h["event"] for h in view.history]
    assert audit(stack, [view])["paid"] == 1
