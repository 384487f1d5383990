"""Pipeline overhead: N whole jobs against a zero-latency emulator, beside a bare Celery chain
of four no-op tasks on the same Redis with the same worker concurrency, in the same run.

    ./scripts/bench overhead [N]
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import Bench, table
from vidgo_stems.emulator import EmulatorConfig

CONCURRENCY = 4


def redis_calls(bench: Bench) -> int:
    return sum(int(v["calls"]) for v in bench.redis.info("commandstats").values())


def pipeline(bench: Bench, n: int) -> float:
    from vidgo_stems.producer import enqueue

    bench.start_worker(CONCURRENCY, "pipeline")
    start = time.perf_counter()
    ids = [
        enqueue(f"http://127.0.0.1:9/bench/{i}.wav", output_type="vocals", producer=bench.producer)
        for i in range(n)
    ]
    end = bench.wait_all_ended(ids, timeout_s=600)
    bench.workers.pop().stop()
    return n / (end - start)


def bare_chain(bench: Bench, n: int) -> float:
    env = {**os.environ, "BENCH_QUEUE": "bench-noop"}
    log = open(bench.folder / "noop.log", "wb")  # noqa: SIM115
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "benchmarks.noop_app",
            "worker",
            "-c",
            str(CONCURRENCY),
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            "WARNING",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        from celery import chain

        from benchmarks.noop_app import app, noop

        app.control.ping(timeout=5)  # let the worker start
        time.sleep(2)
        start = time.perf_counter()
        results = [chain(noop.s(i), noop.s(), noop.s(), noop.s()).apply_async() for i in range(n)]
        for result in results:
            result.get(timeout=600)
        elapsed = time.perf_counter() - start
        # Each result unsubscribes from the result store when it is collected: that must
        # happen while the store is still up, or every one of them retries a dead Redis.
        del result
        results.clear()
        gc.collect()
        app.close()
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        log.close()
    return n / elapsed


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    config = EmulatorConfig(queue_s=0, run_s=0, sample_rate=8000, synth_duration_s=0.2)
    with (
        tempfile.TemporaryDirectory(prefix="vidgo-bench-") as folder,
        Bench(
            Path(folder),
            config,
            VIDGO_STEMS_POLL_INITIAL_S="0.01",
            VIDGO_STEMS_POLL_MIN_INTERVAL_S="0.01",
            VIDGO_STEMS_POLL_MAX_S="0.01",
        ) as bench,
    ):
        print(f"stack in {folder}", flush=True)
        calls = redis_calls(bench)
        ours = pipeline(bench, n)
        ours_calls, calls = (redis_calls(bench) - calls) / n, redis_calls(bench)
        print(f"pipeline: {ours:.1f} jobs/s", flush=True)
        bare = bare_chain(bench, n)
        bare_calls = (redis_calls(bench) - calls) / n
    print(f"pipeline overhead, {n} jobs, worker concurrency {CONCURRENCY}, one Redis")
    print(
        table(
            [
                ("run", "jobs/s", "x bare chain", "Redis commands/job"),
                ("bare chain of 4 no-op tasks", f"{bare:.1f}", "1.00", f"{bare_calls:.0f}"),
                (
                    "vidgo-stems pipeline (emulator, 0 latency)",
                    f"{ours:.1f}",
                    f"{bare / ours:.2f}",
                    f"{ours_calls:.0f}",
                ),
            ]
        )
    )
    print(f"overhead: {bare / ours:.2f}x the bare chain (target <= 1.5x)")


if __name__ == "__main__":
    main()
