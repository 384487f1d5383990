"""Vidgo requests per job: polling only, then with Vidgo callbacks to the gateway, in one run
against the same emulator (tasks take about eight seconds), with the default poll schedule.

    ./scripts/bench requests [JOBS]
"""

from __future__ import annotations

import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

from benchmarks.harness import Bench, table
from vidgo_stems.emulator import EmulatorConfig
from vidgo_stems.devstack.local import wait_for
from vidgo_stems.devstack.redis_server import free_port


def run_jobs(bench: Bench, label: str, n: int) -> dict[str, float]:
    from vidgo_stems.producer import enqueue, get_job

    since = time.time()
    ids = [
        enqueue(
            f"http://127.0.0.1:9/{label}/{i}.wav", output_type="vocals", producer=bench.producer
        )
        for i in range(n)
    ]
    bench.wait_all_ended(ids, timeout_s=600)
    views = [get_job(j, producer=bench.producer) for j in ids]
    ours = {t for v in views if v for t in v.vidgo_task_ids}
    record = [e for e in bench.emulator_admin("record") if e["at"] >= since]
    kinds = Counter(
        e["kind"] for e in record if e.get("task_id") in ours and e["kind"] in ("detail", "status")
    )
    submits = sum(1 for e in record if e["kind"] == "submit" and e.get("task_id") in ours)
    waits = []
    for view in views:
        assert view is not None
        start = next(h["at"] for h in view.history if h.get("to") == "SUBMITTED")
        found = next(h["at"] for h in view.history if h.get("to") == "DOWNLOADING")
        waits.append(found - start)
    return {
        "submits": submits / n,
        "queries": sum(kinds.values()) / n,
        "wait_p50": statistics.median(waits),
    }


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    config = EmulatorConfig(queue_s=2.0, run_s=6.0, sample_rate=8000, synth_duration_s=0.2)
    with (
        tempfile.TemporaryDirectory(prefix="vidgo-bench-") as folder,
        Bench(Path(folder), config) as bench,
    ):
        bench.start_worker(4, "polling")
        polling = run_jobs(bench, "polling", n)
        bench.workers.pop().stop()

        port = free_port()
        gateway_env = {**bench.env, "VIDGO_STEMS_GATEWAY_API_KEYS": secrets.token_hex(16)}
        log = (Path(folder) / "gateway.log").open("wb")
        gateway = subprocess.Popen(
            [sys.executable, "-m", "vidgo_stems.cli", "gateway", "--port", str(port)],
            env={**os.environ, **gateway_env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}"

            def up() -> bool:
                try:
                    return httpx.get(f"{url}/healthz").status_code == 200
                except httpx.TransportError:
                    return False

            wait_for(up, timeout_s=30, what="the gateway")
            bench.env["VIDGO_STEMS_PUBLIC_CALLBACK_BASE_URL"] = url
            bench.start_worker(4, "callbacks")
            callbacks = run_jobs(bench, "callbacks", n)
        finally:
            gateway.terminate()
            gateway.wait(timeout=10)
            log.close()
    print(f"Vidgo requests per job, {n} jobs, tasks take ~8 s, default poll schedule")
    print(
        table(
            [
                ("mode", "submits/job", "queries/job", "x polling", "submitted->found p50 (s)"),
                (
                    "polling only",
                    f"{polling['submits']:.2f}",
                    f"{polling['queries']:.2f}",
                    "1.00",
                    f"{polling['wait_p50']:.1f}",
                ),
                (
                    "with callbacks",
                    f"{callbacks['submits']:.2f}",
                    f"{callbacks['queries']:.2f}",
                    f"{callbacks['queries'] / polling['queries']:.2f}",
                    f"{callbacks['wait_p50']:.1f}",
                ),
            ]
        )
    )


if __name__ == "__main__":
    main()
