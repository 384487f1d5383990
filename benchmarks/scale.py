"""Scale: N jobs in flight at once against a slow emulator (tasks never finish while we look).

Measures the worker's resident memory (all its processes) against the same worker idle, Redis
memory per job in flight, and poll lateness (how long after its due time each poll started,
from the ``late_s`` each poll records), p50 and p99.

    ./scripts/bench scale [N] [OBSERVE_S]
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import Bench, percentile, table, tree_rss_bytes
from emulator import EmulatorConfig
from worker.devstack.local import wait_for

MB = 1024 * 1024


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    observe_s = float(sys.argv[2]) if len(sys.argv) > 2 else 90.0
    config = EmulatorConfig(queue_s=3600, run_s=3600, sample_rate=8000, synth_duration_s=0.1)
    with (
        tempfile.TemporaryDirectory(prefix="vidgo-bench-") as folder,
        Bench(Path(folder), config, VIDGO_STEMS_STALL_TIMEOUT_S="100000") as bench,
    ):
        from worker.web.api import enqueue

        worker = bench.start_worker(4, "scale")
        assert worker.process is not None
        time.sleep(3)
        idle_rss = tree_rss_bytes(worker.process.pid)
        redis_before = bench.redis_used_memory()
        started = time.perf_counter()
        ids = [
            enqueue(
                f"http://127.0.0.1:9/scale/{i}.wav", output_type="vocals", producer=bench.producer
            )
            for i in range(n)
        ]
        enqueued_s = time.perf_counter() - started
        in_flight_key = bench.ledger.in_flight_key
        wait_for(
            lambda: bench.redis.zcard(in_flight_key) >= n,
            timeout_s=1800,
            interval_s=1,
            what=f"{n} jobs in flight",
        )
        all_in_s = time.perf_counter() - started
        print(
            f"{n} jobs enqueued in {enqueued_s:.0f}s, all in flight after {all_in_s:.0f}s",
            flush=True,
        )
        since = time.time()
        peak_rss = 0
        deadline = time.monotonic() + observe_s
        while time.monotonic() < deadline:
            peak_rss = max(peak_rss, tree_rss_bytes(worker.process.pid))
            time.sleep(2)
        redis_per_job = (bench.redis_used_memory() - redis_before) / n
        lateness = []
        for job_id in ids[:: max(1, n // 2000)]:
            for entry in bench.ledger.history(job_id):
                polled = entry.get("event") == "polled" and entry["at"] >= since
                if polled and entry.get("late_s") is not None:
                    lateness.append(float(entry["late_s"]))
        counters = bench.ledger.counters()
    p50, p99 = percentile(lateness, 50), percentile(lateness, 99)
    print(f"scale: {n} jobs in flight, 1 worker x 4 processes, observed {observe_s:.0f}s")
    print(
        table(
            [
                ("measure", "value", "baseline", "ratio"),
                (
                    "worker RSS, all processes (MB)",
                    f"{peak_rss / MB:.0f}",
                    f"{idle_rss / MB:.0f} idle",
                    f"{peak_rss / idle_rss:.2f}",
                ),
                ("Redis memory per job in flight (KB)", f"{redis_per_job / 1024:.1f}", "", ""),
                ("poll lateness p50 (s)", f"{p50:.3f}", "", ""),
                ("poll lateness p99 (s)", f"{p99:.3f}", "", ""),
                ("polls sampled", str(len(lateness)), "", ""),
            ]
        )
    )
    print("targets: worker RSS < 400 MB, poll lateness p99 < 2 s")
    print("counters:", json.dumps(counters, sort_keys=True))


if __name__ == "__main__":
    main()
