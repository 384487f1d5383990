"""Time to stems: from Vidgo finishing to the first stem link a caller can use, and to DONE.

A long stereo source (SECONDS, default 240 s at 44.1 kHz) is separated one job at a time, for
each case: a general split and a single stem (vocals), delivered as FLAC and as the original
MP3, with callbacks on (a gateway takes Vidgo's callbacks). First on one worker with two
processes and file storage; then on two workers ("hosts": separate scratch folders, S3 storage
on moto's server) with two processes each, post-processing on its own queue that both take.

Per job, from the ledger's history: Vidgo finished (the poll saw ``finished``) → the first
stem stored and linkable (``stem_saved``) → DONE. The floor is measured in the same run, on
the same stems: downloaded from the emulator and stored into the same storage in this process,
one after the other, and nothing else. The source is fetched and every stem checked against it
(the source's host is loopback here, so private source hosts are allowed). Worker CPU is the
CPU seconds the workers' process trees spent on the job (user + system, from /proc).

    ./scripts/bench latency [SECONDS=240] [RUNS=1]
"""

from __future__ import annotations

import contextlib
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.harness import Bench, table
from vidgo_stems.devstack.local import FileServer, WorkerProcess, wait_for
from vidgo_stems.devstack.redis_server import free_port

CASES = [("general", "flac"), ("general", "original"), ("vocals", "flac"), ("vocals", "original")]
AIMS = {"first_link_over_floor_s": 0.5, "general_done_s": 6.0, "single_done_s": 2.0}


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and all its descendants, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stats[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
    children: dict[int, list[int]] = {}
    for child, fields in stats.items():
        children.setdefault(int(fields[1]), []).append(child)
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        todo.extend(children.get(current, []))
        if current in stats:
            fields = stats[current]
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


@contextlib.contextmanager
def gateway(env: dict[str, str], folder: Path) -> Iterator[str]:
    """``vidgo-stems gateway`` on a free port (Vidgo's callbacks land there)."""
    port = free_port()
    log = (folder / f"gateway-{port}.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vidgo_stems.cli",
            "gateway",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env={**os.environ, **env, "VIDGO_STEMS_GATEWAY_API_KEYS": secrets.token_hex(24)},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        import httpx

        def up() -> bool:
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
            return False

        wait_for(up, timeout_s=60, what="the gateway to answer")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def floor_s(bench: Bench, job: Any) -> tuple[float, float]:
    """(first stem, every stem) stored by this process alone: fetched from the emulator and put
    into the same storage, one after the other, nothing else."""
    import httpx

    from vidgo_stems.files.fetch import fetch_to_file
    from vidgo_stems.files.links import open_configured_storage

    storage = open_configured_storage(bench.producer.settings)
    scratch = bench.folder / "floor" / secrets.token_hex(4)
    scratch.mkdir(parents=True)
    first = None
    started = time.perf_counter()
    with httpx.Client(timeout=60) as http:
        for name, url in sorted(job.stem_urls.items()):
            path = scratch / f"{name}.audio"
            fetched = fetch_to_file(http, url, path, max_bytes=1 << 31)
            storage.put_file(
                f"floor/{scratch.name}/{name}",
                path,
                sha256=fetched.sha256,
                content_type="application/octet-stream",
            )
            first = first if first is not None else time.perf_counter() - started
    return first or 0.0, time.perf_counter() - started


def run_case(
    bench: Bench, workers: list[WorkerProcess], source_url: str, output: str, fmt: str
) -> dict[str, float]:
    from vidgo_stems.producer import enqueue

    pids = [w.process.pid for w in workers if w.process is not None]
    cpu_before = sum(cpu_seconds(p) for p in pids)
    url = f"{source_url}?case={secrets.token_hex(6)}"
    job_id = enqueue(url, output_type=output, format=fmt)
    bench.wait_all_ended([job_id], timeout_s=900)
    job = bench.ledger.get(job_id)
    cpu = sum(cpu_seconds(p) for p in pids) - cpu_before
    history = bench.ledger.history(job_id)
    stored = [e["at"] for e in history if e["event"] == "stem_saved"]
    first_floor, all_floor = floor_s(bench, job)
    finished = job.finished_at
    return {
        "first_link_s": min(stored) - finished,
        "all_stored_s": max(stored) - finished,
        "done_s": job.done_at - finished,
        "floor_first_s": first_floor,
        "floor_all_s": all_floor,
        "cpu_s": cpu,
    }


def run_setup(
    name: str, folder: Path, source_url: str, runs: int, hosts: int, env: dict[str, str]
) -> list[tuple[str, dict[str, float]]]:
    from vidgo_stems.emulator import EmulatorConfig

    config = EmulatorConfig(api_key="bench-key", queue_s=0.2, run_s=1.0, sample_rate=44_100)
    post_queue = f"post-{secrets.token_hex(3)}"
    # The source is served on loopback: let the workers fetch it, so every stem is checked.
    env = {**env, "VIDGO_STEMS_ALLOW_PRIVATE_SOURCE_HOSTS": "true"}
    results = []
    import vidgo_stems.celery_app

    vidgo_stems.celery_app._default = None  # the producer of this setup's Redis, not the last one's
    with contextlib.ExitStack() as stack:
        bench = stack.enter_context(
            Bench(folder / name, config, VIDGO_STEMS_POSTPROCESS_QUEUE=post_queue, **env)
        )
        gateway_url = stack.enter_context(gateway(bench.env, bench.folder))
        bench.env["VIDGO_STEMS_PUBLIC_CALLBACK_BASE_URL"] = gateway_url
        os.environ["VIDGO_STEMS_PUBLIC_CALLBACK_BASE_URL"] = gateway_url
        workers = []  # each takes the main queue and post-processing's own
        for n in range(hosts):
            scratch = bench.folder / f"host-{n}" / "scratch"
            bench.env["VIDGO_STEMS_SCRATCH_DIR"] = str(scratch)
            workers.append(bench.start_worker(2, name=f"{name}-{n}"))
        for output, fmt in CASES:
            samples = [run_case(bench, workers, source_url, output, fmt) for _ in range(runs)]
            best = {k: min(s[k] for s in samples) for k in samples[0]}
            results.append((f"{name}: {output}, {fmt}", best))
    return results


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 240.0
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    from tests.s3server import S3Server
    from vidgo_stems.devstack import tracks

    with tempfile.TemporaryDirectory(prefix="vidgo-bench-latency-") as tmp:
        folder = Path(tmp)
        tracks.write_track(folder / "tracks" / "source.wav", "groove", seconds=seconds)
        with FileServer(folder / "tracks") as files:
            source = f"{files.url}/source.wav"
            results = run_setup("1 worker x 2", folder, source, runs, 1, {})
            with S3Server(tmpdir=folder / "s3") as s3:
                s3_env = {
                    **s3.env(),
                    "VIDGO_STEMS_STORAGE_URL": f"s3://{s3.bucket}/latency",
                }
                os.environ.update(s3.env())
                results += run_setup("2 hosts x 2, S3", folder, source, runs, 2, s3_env)
    print_results(results, seconds)


def print_results(results: list[tuple[str, dict[str, float]]], seconds: float) -> None:
    rows: list[tuple[str, ...]] = [
        (
            "case",
            "first link (s)",
            "floor first (s)",
            "over floor (s)",
            "all stored (s)",
            "floor all (s)",
            "DONE (s)",
            "DONE / floor all",
            "worker CPU (s)",
        )
    ]
    for label, r in results:
        rows.append(
            (
                label,
                f"{r['first_link_s']:.2f}",
                f"{r['floor_first_s']:.2f}",
                f"{r['first_link_s'] - r['floor_first_s']:+.2f}",
                f"{r['all_stored_s']:.2f}",
                f"{r['floor_all_s']:.2f}",
                f"{r['done_s']:.2f}",
                f"{r['done_s'] / max(r['floor_all_s'], 1e-3):.1f}x",
                f"{r['cpu_s']:.1f}",
            )
        )
    print(f"time to stems after Vidgo finished, a {seconds:g} s stereo source, best of runs")
    print(table(rows))
    over = max(r["first_link_s"] - r["floor_first_s"] for _, r in results)
    general = [r["done_s"] for label, r in results if "general" in label]
    single = [r["done_s"] for label, r in results if "vocals" in label]
    print(
        f"aims: first link <= floor + {AIMS['first_link_over_floor_s']} s (worst "
        f"{over:+.2f} s); general split DONE <= {AIMS['general_done_s']} s (worst "
        f"{max(general):.2f} s, median {statistics.median(general):.2f} s); single stem DONE <= "
        f"{AIMS['single_done_s']} s (worst {max(single):.2f} s)"
    )


if __name__ == "__main__":
    main()
