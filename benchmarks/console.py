"""The console at scale: overview and first page of failures with N jobs in the ledger.

    ./scripts/bench console [N=100000] [BASELINE=10000]

Seeds two ledgers on one private Redis (BASELINE jobs and N jobs, each 1% FAILED over three
error codes, 0.5% CANCELLED, the rest QUEUED, created through the ledger's own scripts),
starts one real ``vidgo-stems gateway`` process per ledger, signs in to each console with a
key, and times the overview, the first page of failures and the first page of failed jobs
(median of REPEAT reads), then reads each gateway's resident memory after all of them. It
prints both runs side by side and the ratios N / BASELINE; it exits by itself.
"""

from __future__ import annotations

import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import redis

from vidgo_stems.celery_app import make_ledger
from vidgo_stems.devstack.local import wait_for
from vidgo_stems.devstack.redis_server import RedisServer, free_port
from vidgo_stems.models import parse_request
from vidgo_stems.pipeline.record import NewJob
from vidgo_stems.pipeline.states import JobState, new_token
from vidgo_stems.settings import Settings

REPEAT = 15
KEY = "bench-" + secrets.token_hex(8)
CODES = ("vidgo_task_failed", "source_unreachable", "vidgo_malformed_stems")
READS = {
    "overview": "/console/api/overview",
    "failures (all)": "/console/api/failures",
    "failed jobs, page 1": "/console/api/jobs?state=FAILED",
}


def seed(client: redis.Redis, prefix: str, n: int) -> None:
    """N jobs in the ledger under ``prefix``: 1% FAILED, 0.5% CANCELLED, the rest QUEUED."""
    ledger = make_ledger(client, Settings(redis_key_prefix=prefix))
    for start in range(0, n, 5000):
        jobs = []
        for i in range(start, min(n, start + 5000)):
            url = f"https://tracks.example.com/{prefix}/{i}.wav"
            request = parse_request({"audio_url": url, "title": f"Track {i}"})
            jobs.append(NewJob(request.fingerprint(), request, new_token()))
        ledger.enqueue_many(jobs)
        for offset, job in enumerate(jobs):
            i = start + offset
            if i % 100 == 0:
                code = CODES[(i // 100) % len(CODES)]
                _end(ledger, job, JobState.FAILED, code)
            elif i % 200 == 1:
                _end(ledger, job, JobState.CANCELLED, "cancelled")


def _end(ledger: object, job: NewJob, state: JobState, code: str) -> None:
    ledger.advance(  # type: ignore[attr-defined]
        job.job_id,
        expect=JobState.QUEUED,
        token=job.token,
        to=state,
        fields={"error_code": code, "error_message": f"{code} (seeded for the benchmark)"},
        event="seeded",
    )


def gateway(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "vidgo_stems.cli", "gateway", "--port", str(port)],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )

    def up() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(up, timeout_s=30, what="the gateway to answer")
    return proc, url


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(redis_url: str, prefix: str, folder: Path) -> dict[str, float]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "REDIS_URL": redis_url,
        "STEMS_DIR": str(folder / prefix),
        "VIDGO_STEMS_REDIS_KEY_PREFIX": prefix,
        "VIDGO_STEMS_GATEWAY_API_KEYS": KEY,
    }
    proc, url = gateway(env, folder / f"{prefix}.log")
    try:
        with httpx.Client(base_url=url, timeout=60, follow_redirects=False) as http:
            signed = http.post("/console/login", data={"key": KEY})
            assert signed.status_code == 303, signed.text
            figures = {"RSS at start, MB": rss_mb(proc.pid)}
            for name, path in READS.items():
                times = []
                for _ in range(REPEAT):
                    started = time.perf_counter()
                    response = http.get(path)
                    times.append(time.perf_counter() - started)
                    assert response.status_code == 200, response.text
                figures[f"{name}, ms"] = statistics.median(times) * 1000
            figures["RSS after reads, MB"] = rss_mb(proc.pid)
            return figures
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    baseline = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000
    with tempfile.TemporaryDirectory(prefix="vidgo-bench-") as tmp, RedisServer() as server:
        client = redis.Redis.from_url(server.url)
        runs = {}
        for size in (baseline, n):
            prefix = f"bench-console-{size}"
            started = time.perf_counter()
            seed(client, prefix, size)
            print(f"seeded {size:,} jobs in {time.perf_counter() - started:.0f}s", flush=True)
            runs[size] = measure(server.url, prefix, Path(tmp))
        print(f"\n{'figure':28s} {baseline:>12,} {n:>12,} {'ratio':>8s}")
        for name in runs[n]:
            low, high = runs[baseline][name], runs[n][name]
            print(f"{name:28s} {low:12.1f} {high:12.1f} {high / low:8.2f}x")
        client.close()


if __name__ == "__main__":
    main()
