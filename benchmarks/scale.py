"""Scale: N jobs in flight at once against a slow emulator (tasks never finish while we look),
with a query budget set for the run.

Measures, side by side with a baseline from the same run:

- the worker's resident memory (all its processes) against the same worker idle;
- Redis memory per job in flight (job record, history, indexes, the schedule entry);
- poll lateness, p50 and p99: how long after its scheduled time each poll started (the
  ``late_s`` each poll records), over the polls of the observation window;
- the query rate Vidgo saw against the budget;
- promoter throughput: entries moved from the schedule onto a queue per second, against a
  bare pipelined LPUSH of the same messages onto a list.

    ./scripts/bench scale [N=10000] [OBSERVE_S=90] [QUERY_RATE=100]

Up to SEED_ABOVE jobs are enqueued and submitted through the pipeline. Above it (100,000 would
take hours to submit here, where the emulator shares one core with the benchmark), the jobs are
*seeded*: each is created in the ledger and moved to SUBMITTED with a task the emulator is given
directly, and its first poll put into the schedule at a point spread over the budget's spacing,
as the submit stage's pacing would. From there every poll runs through the real pipeline.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import Bench, percentile, table, tree_rss_bytes
from vidgo_stems.emulator import EmulatorConfig
from vidgo_stems.devstack.local import wait_for

MB = 1024 * 1024
PROMOTE_N = 100_000
SEED_ABOVE = 20_000


def promoter_throughput(bench: Bench) -> tuple[float, float]:
    """(entries promoted per second, bare LPUSH per second), same messages, same Redis."""
    from vidgo_stems.celery_app import encode_message
    from vidgo_stems.pipeline.schedule import Schedule

    prefix, queue = f"{bench.prefix}-promote", f"{bench.prefix}-promote-q"
    message = encode_message("vidgo.poll", {"job_id": "j" * 32, "token": "t" * 16}, queue=queue)
    schedule = Schedule(bench.redis, prefix)
    now = time.time()
    for start in range(0, PROMOTE_N, 5000):
        pipe = bench.redis.pipeline(transaction=False)
        for n in range(start, start + 5000):
            entry = f"{prefix}:job:{n}"
            pipe.zadd(schedule.keys.schedule, {entry: now - 1 + n * 1e-6})
            pipe.hset(schedule.keys.schedule_messages, entry, f"{queue}\n{message}")
        pipe.execute()
    started = time.perf_counter()
    while schedule.promote(time.time(), limit=500, max_depth=10**9).pushed:
        pass
    promoted = PROMOTE_N / (time.perf_counter() - started)
    assert bench.redis.llen(queue) == PROMOTE_N
    bench.redis.delete(queue)
    started = time.perf_counter()
    for _ in range(0, PROMOTE_N, 500):
        bench.redis.lpush(queue, *([message] * 500))
    bare = PROMOTE_N / (time.perf_counter() - started)
    bench.redis.delete(queue)
    return promoted, bare


def enqueue_all(bench: Bench, n: int) -> list[str]:
    """Create N jobs with their submit messages, pipelined (the batch feed's own path)."""
    from vidgo_stems.models import parse_request
    from vidgo_stems.pipeline.record import NewJob
    from vidgo_stems.pipeline.states import Step, TaskName, new_token

    jobs = []
    for i in range(n):
        request = parse_request(
            {"audio_url": f"http://127.0.0.1:9/scale/{i}.wav", "output_type": "vocals"}
        )
        token = new_token()
        job_id = request.fingerprint()
        jobs.append(NewJob(job_id, request, token, step=Step(TaskName.SUBMIT, job_id, token)))
    bench.ledger.enqueue_many(jobs)
    return [j.job_id for j in jobs]


def seed_submitted(bench: Bench, n: int, query_rate: float) -> list[str]:
    """N jobs SUBMITTED with a running emulator task each, their first polls spread over the
    spacing the query budget allows (see the module docstring)."""
    import random

    from vidgo_stems.emulator.state import EmuTask
    from vidgo_stems.models import parse_request
    from vidgo_stems.pipeline.pacing import HEADROOM
    from vidgo_stems.pipeline.record import NewJob
    from vidgo_stems.pipeline.states import JobState, Step, TaskName, new_token

    state = bench.emulator.server.config.app.state.emulator
    ledger, rng = bench.ledger, random.Random(7)
    spacing = n / (query_rate * HEADROOM)
    ids = []
    for start in range(0, n, 2000):
        jobs = []
        for i in range(start, min(n, start + 2000)):
            url = f"http://127.0.0.1:9/scale/{i}.wav"
            request = parse_request({"audio_url": url, "output_type": "vocals"})
            jobs.append(NewJob(request.fingerprint(), request, new_token()))
        ledger.enqueue_many(jobs)
        for job in jobs:
            task_id = state.new_task_id()
            state.tasks[task_id] = EmuTask(
                task_id=task_id,
                audio_url=job.request.audio_url,
                title=None,
                model_name="base",
                output_type="vocals",
                callback_url=None,
                created_time=state.now_iso(),
                created_mono=time.monotonic(),
                never_finish=True,
            )
            ledger.advance(
                job.job_id,
                expect=JobState.QUEUED,
                token=job.token,
                to=JobState.SUBMITTING,
                event="seeded",
            )
            poll = Step(TaskName.POLL, job.job_id, new_token(), rng.uniform(1, spacing))
            ledger.advance(
                job.job_id,
                expect=JobState.SUBMITTING,
                token=job.token,
                to=JobState.SUBMITTED,
                new_token=poll.token,
                fields={
                    "vidgo_task_id": task_id,
                    "vidgo_task_ids": [task_id],
                    "live_task_ids": [task_id],
                    "submitted_at": time.time(),
                    "next_due_at": time.time() + poll.countdown_s,
                },
                event="seeded",
                step=poll,
            )
            bench.redis.zadd(ledger.keys.in_flight, {ledger.keys.job(job.job_id): time.time()})
            ids.append(job.job_id)
    return ids


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    observe_s = float(sys.argv[2]) if len(sys.argv) > 2 else 90.0
    query_rate = float(sys.argv[3]) if len(sys.argv) > 3 else 100.0
    config = EmulatorConfig(queue_s=3600, run_s=3600, sample_rate=8000, synth_duration_s=0.1)
    with (
        tempfile.TemporaryDirectory(prefix="vidgo-bench-") as folder,
        Bench(
            Path(folder),
            config,
            VIDGO_STEMS_STALL_TIMEOUT_S="100000",
            VIDGO_STEMS_VIDGO_QUERY_RATE_PER_S=str(query_rate),
            VIDGO_STEMS_VIDGO_QUERY_BURST=str(query_rate),
        ) as bench,
    ):
        promoted, bare_push = promoter_throughput(bench)
        print(f"promoter: {promoted:.0f} entries/s (bare LPUSH {bare_push:.0f}/s)", flush=True)
        worker = bench.start_worker(4, "scale")
        assert worker.process is not None
        time.sleep(3)
        idle_rss = tree_rss_bytes(worker.process.pid)
        redis_before = bench.redis_used_memory()
        started = time.perf_counter()
        seeded = n > SEED_ABOVE
        ids = seed_submitted(bench, n, query_rate) if seeded else enqueue_all(bench, n)
        enqueued_s = time.perf_counter() - started
        in_flight_key = bench.ledger.keys.in_flight
        wait_for(
            lambda: bench.redis.zcard(in_flight_key) >= n,
            timeout_s=3600,
            interval_s=1,
            what=f"{n} jobs in flight",
        )
        all_in_s = time.perf_counter() - started
        print(
            f"{n} jobs {'seeded SUBMITTED' if seeded else 'enqueued'} in {enqueued_s:.0f}s, "
            f"all in flight after {all_in_s:.0f}s",
            flush=True,
        )
        # Submits took the workers while jobs ramped up, so polls fell due meanwhile: let that
        # backlog drain (the promoter feeds it at the rate the workers take it) and measure
        # the steady state.
        schedule = bench.ledger.keys.schedule
        wait_for(
            lambda: bench.redis.zcount(schedule, "-inf", time.time() - 2) < n / 100,
            timeout_s=1800,
            interval_s=1,
            what="the polls that fell due during the ramp to be done",
        )
        drained_s = time.perf_counter() - started - all_in_s
        print(f"backlog of due polls drained {drained_s:.0f}s later", flush=True)
        since = time.time()
        peak_rss = 0
        deadline = time.monotonic() + observe_s
        while time.monotonic() < deadline:
            peak_rss = max(peak_rss, tree_rss_bytes(worker.process.pid))
            time.sleep(2)
        until = time.time()
        redis_per_job = (bench.redis_used_memory() - redis_before) / n
        schedule_size = int(bench.redis.zcard(bench.ledger.keys.schedule))
        lateness = []
        for job_id in ids[:: max(1, n // 2000)]:
            for entry in bench.ledger.history(job_id):
                polled = entry.get("event") == "polled" and since <= entry["at"] <= until
                if polled and entry.get("late_s") is not None:
                    lateness.append(float(entry["late_s"]))
        queries = [
            e
            for e in bench.emulator_admin("record")
            if e["kind"] == "detail" and since <= e["at"] <= until
        ]
    query_rate_seen = len(queries) / (until - since)
    p50, p99 = percentile(lateness, 50), percentile(lateness, 99)
    print(
        f"scale: {n} jobs in flight, 1 worker x 4 processes, query budget {query_rate:.0f}/s, "
        f"observed {observe_s:.0f}s"
    )
    print(
        table(
            [
                ("measure", "value", "baseline", "ratio"),
                (
                    "worker RSS, all processes (MB)",
                    f"{peak_rss / MB:.0f}",
                    f"{idle_rss / MB:.0f} idle",
                    f"+{(peak_rss - idle_rss) / MB:.0f} MB",
                ),
                ("Redis memory per job in flight (KB)", f"{redis_per_job / 1024:.2f}", "", ""),
                ("jobs waiting in the schedule at the end", str(schedule_size), str(n), ""),
                (
                    "Vidgo queries per second",
                    f"{query_rate_seen:.0f}",
                    f"{query_rate:.0f} budget",
                    f"{query_rate_seen / query_rate:.2f}",
                ),
                ("poll lateness p50 (s)", f"{p50:.3f}", "", ""),
                ("poll lateness p99 (s)", f"{p99:.3f}", "", ""),
                ("polls sampled", str(len(lateness)), "", ""),
                (
                    "promoter (entries/s)",
                    f"{promoted:.0f}",
                    f"{bare_push:.0f} bare LPUSH",
                    f"{promoted / bare_push:.2f}",
                ),
            ]
        )
    )
    print(
        "aims: worker RSS within 30 MB of idle at 100,000 in flight; Redis <= 2 KB per job in "
        "flight; poll lateness p99 < 2 s at 10,000 in flight"
    )


if __name__ == "__main__":
    main()
