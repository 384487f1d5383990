"""Download: one large stem through the pipeline's downloader (resumable, verified, hashed,
fsynced) against a plain streaming copy of the same URL with the same HTTP library.

Each run is a fresh subprocess, so its peak RSS is its own. Runs alternate; the best of each
is reported.

    ./scripts/bench download [SIZE_MB] [RUNS]
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import table

MB = 1024 * 1024


def child(mode: str, url: str, dest: Path) -> None:
    import httpx

    started = time.perf_counter()
    with httpx.Client(timeout=httpx.Timeout(60.0), follow_redirects=False) as http:
        if mode == "pipeline":
            from vidgo_stems.files.fetch import fetch_to_file

            fetch_to_file(http, url, dest, max_bytes=4 * 1024 * MB)
        else:
            digest = hashlib.sha256()
            with http.stream("GET", url) as response, dest.open("wb") as out:
                response.raise_for_status()
                for chunk in response.iter_bytes():
                    if mode == "plain+work":
                        digest.update(chunk)
                    out.write(chunk)
                if mode == "plain+work":
                    out.flush()
                    os.fsync(out.fileno())
    elapsed = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": elapsed, "peak_rss": peak_kb * 1024}))


def run(mode: str, url: str, dest: Path) -> dict[str, float]:
    dest.unlink(missing_ok=True)
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.download", "--child", mode, url, str(dest)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    dest.unlink(missing_ok=True)
    return result


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], sys.argv[3], Path(sys.argv[4]))
        return
    size_mb = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    from vidgo_stems.devstack.local import FileServer

    with tempfile.TemporaryDirectory(prefix="vidgo-bench-") as folder:
        root = Path(folder)
        served = root / "served"
        served.mkdir()
        with (served / "stem.wav").open("wb") as handle:
            block = bytes(range(256)) * 4096
            for _ in range(size_mb):
                handle.write(block)
        results: dict[str, list[dict[str, float]]] = {"plain": [], "plain+work": [], "pipeline": []}
        with FileServer(served) as server:
            url = f"{server.url}/stem.wav"
            for _ in range(runs):
                for mode in results:
                    results[mode].append(run(mode, url, root / f"{mode}.out"))
    best = {m: min(r, key=lambda x: x["seconds"]) for m, r in results.items()}
    plain, ours = best["plain"], best["pipeline"]
    rate = {m: size_mb / b["seconds"] for m, b in best.items()}
    print(f"download: one {size_mb} MB stem over HTTP from loopback, best of {runs}")
    print(
        table(
            [
                ("run", "MB/s", "x plain", "peak RSS (MB)"),
                (
                    "plain httpx streaming copy",
                    f"{rate['plain']:.0f}",
                    "1.00",
                    f"{plain['peak_rss'] / MB:.0f}",
                ),
                (
                    "plain copy + sha256 + fsync, by hand",
                    f"{rate['plain+work']:.0f}",
                    f"{rate['plain+work'] / rate['plain']:.2f}",
                    f"{best['plain+work']['peak_rss'] / MB:.0f}",
                ),
                (
                    "pipeline downloader (fetch_to_file)",
                    f"{rate['pipeline']:.0f}",
                    f"{rate['pipeline'] / rate['plain']:.2f}",
                    f"{ours['peak_rss'] / MB:.0f}",
                ),
            ]
        )
    )
    print(
        f"pipeline vs the same work by hand: {rate['pipeline'] / rate['plain+work']:.2f}x; "
        "target: >= 0.9x the plain copy, with flat memory"
    )


if __name__ == "__main__":
    main()
