"""Storage: one large stem uploaded through ``S3Storage.put_file`` (duplicate check, streamed
multipart upload with S3 SHA256 checksums and sha256 metadata, check after upload) against a plain
``obstore.put`` of the same file with the same store settings and part size, into a private moto
S3 server on loopback.

put_file's own work on top of the upload is two HEAD requests (the duplicate check and the check
after upload), a few milliseconds; the rest of any gap is moto's noise on a shared machine. Each
run is a fresh subprocess, so its peak RSS (``ru_maxrss``) is its own; the RSS it had after
its imports is shown too, so the growth during the upload is plain. Two sizes (SIZE_MB and a
fifth of it) show whether memory grows with the file. Runs alternate, in turn which goes first;
the best and the median of each are reported. The sha256 is handed to put_file as the pipeline
does (it is taken while downloading).

    ./scripts/bench storage [SIZE_MB] [RUNS]
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import table

MB = 1024 * 1024
MODES = ("plain", "put_file")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(mode: str, path: Path, key: str, sha256: str) -> None:
    import obstore

    from vidgo_stems.files.objects import PUT_CHUNK_BYTES, PUT_MAX_CONCURRENCY
    from vidgo_stems.files.storage import S3Storage

    bucket, prefix = os.environ["BENCH_BUCKET"], os.environ["BENCH_PREFIX"]
    storage = S3Storage(bucket, prefix)
    # The very store S3Storage drives (SHA256 checksums, timeouts, retries), used directly.
    store = storage.store
    start_rss = _rss_mb()
    started = time.perf_counter()
    if mode == "plain":
        obstore.put(
            store,
            key,
            path,
            attributes={"Content-Type": "audio/wav", "sha256": sha256},
            chunk_size=PUT_CHUNK_BYTES,
            max_concurrency=PUT_MAX_CONCURRENCY,
        )
    else:
        stored = storage.put_file(key, path, sha256=sha256, content_type="audio/wav")
        assert stored.bytes == path.stat().st_size
    elapsed = time.perf_counter() - started
    peak_rss = _rss_mb()
    # moto keeps objects in its own memory and temp files: drop this one, untimed.
    obstore.delete(store, key)
    print(json.dumps({"seconds": elapsed, "start_rss_mb": start_rss, "peak_rss_mb": peak_rss}))


def run(mode: str, path: Path, sha256: str, env: dict[str, str]) -> dict[str, float]:
    key = f"bench/{mode}-{secrets.token_hex(4)}.wav"
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.storage", "--child", mode, str(path), key, sha256],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def make_file(path: Path, size_mb: int) -> str:
    digest = hashlib.sha256()
    with path.open("wb") as handle:
        for _ in range(size_mb):
            block = os.urandom(MB)
            digest.update(block)
            handle.write(block)
    return digest.hexdigest()


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], Path(sys.argv[3]), sys.argv[4], sys.argv[5])
        return
    size_mb = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    sizes = sorted({max(1, size_mb // 5), size_mb})
    from tests.s3server import S3Server
    from vidgo_stems.files.objects import PUT_CHUNK_BYTES, PUT_MAX_CONCURRENCY

    results: dict[tuple[int, str], list[dict[str, float]]] = {}
    # moto's object bodies go to RAM when /dev/shm exists, so its disk writes do not add noise.
    shm = Path("/dev/shm")
    with (
        tempfile.TemporaryDirectory(prefix="vidgo-bench-") as folder,
        tempfile.TemporaryDirectory(
            prefix="vidgo-bench-s3-", dir=shm if shm.is_dir() else None
        ) as s3_tmp,
        S3Server(tmpdir=Path(s3_tmp)) as s3,
    ):
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env = {**base_env, **s3.env(), "BENCH_BUCKET": s3.bucket, "BENCH_PREFIX": "storage"}
        for size in sizes:
            path = Path(folder) / f"stem-{size}.wav"
            sha256 = make_file(path, size)
            for turn in range(runs):
                for mode in MODES if turn % 2 == 0 else MODES[::-1]:
                    results.setdefault((size, mode), []).append(run(mode, path, sha256, env))
            path.unlink()

    # Best time of the runs, but the worst peak RSS: a fast run cannot hide a bad peak.
    rate = {k: k[0] / min(r["seconds"] for r in rs) for k, rs in results.items()}
    median = {k: k[0] / statistics.median(r["seconds"] for r in rs) for k, rs in results.items()}
    peak = {k: max(r["peak_rss_mb"] for r in rs) for k, rs in results.items()}
    start_rss = {k: max(r["start_rss_mb"] for r in rs) for k, rs in results.items()}
    labels = {
        "plain": "plain obstore.put",
        "put_file": "S3Storage.put_file",
    }
    rows: list[tuple[str, ...]] = [
        (
            "run",
            "size (MB)",
            "MB/s best",
            "x plain",
            "MB/s median",
            "x plain",
            "RSS after imports (MB)",
            "peak RSS (MB)",
        )
    ]
    for size in sizes:
        for mode in MODES:
            rows.append(
                (
                    labels[mode],
                    str(size),
                    f"{rate[(size, mode)]:.0f}",
                    f"{rate[(size, mode)] / rate[(size, 'plain')]:.2f}",
                    f"{median[(size, mode)]:.0f}",
                    f"{median[(size, mode)] / median[(size, 'plain')]:.2f}",
                    f"{start_rss[(size, mode)]:.0f}",
                    f"{peak[(size, mode)]:.0f}",
                )
            )
    small, large = sizes[0], sizes[-1]
    print(
        f"storage: one stem uploaded to moto S3 on loopback, {PUT_CHUNK_BYTES // MB} MiB parts x "
        f"{PUT_MAX_CONCURRENCY} in flight, SHA256 checksums on, best and median of {runs} runs"
    )
    print(table(rows))
    growth = {mode: peak[(large, mode)] - peak[(small, mode)] for mode in MODES}
    ratio = rate[(large, "put_file")] / rate[(large, "plain")]
    ratio_median = median[(large, "put_file")] / median[(large, "plain")]
    print(
        f"put_file vs plain at {large} MB: {ratio:.2f}x best, {ratio_median:.2f}x median; "
        f"peak RSS from {small} to {large} MB: {growth['put_file']:+.0f} MB (plain "
        f"{growth['plain']:+.0f} MB); target: >= 0.9x the plain upload, with flat memory"
    )


if __name__ == "__main__":
    main()
