"""What a web backend installs and imports: the base install (`pip install vidgo-stems`) beside
the full one (`pip install "vidgo-stems[worker]"`), each in a fresh venv.

Prints, side by side with ratios base/full: distributions installed, megabytes of
site-packages, and the time of ``import vidgo_stems`` and of importing the producer API
(``from vidgo_stems import enqueue, get_job, verify_webhook``), median of several runs in a
fresh interpreter each. Exits by itself.

    ./scripts/bench install [--runs 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMPORTS = {
    "import vidgo_stems": "import vidgo_stems",
    "producer API": "from vidgo_stems import enqueue, get_job, verify_webhook",
}


def _venv(folder: Path, spec: str) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    python = folder / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", spec],
        check=True,
    )
    return python


def _site_packages(python: Path) -> Path:
    out = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(out.stdout.strip())


def _size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def _distributions(python: Path) -> int:
    out = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=freeze", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=True,
    )
    return len([line for line in out.stdout.splitlines() if line and "==" in line]) - 1  # pip


def _import_s(python: Path, code: str, runs: int, cwd: Path) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([str(python), "-c", code], check=True, cwd=cwd)
        times.append(time.perf_counter() - started)
    baseline = []
    for _ in range(runs):  # the interpreter's own start, taken off
        started = time.perf_counter()
        subprocess.run([str(python), "-c", "pass"], check=True, cwd=cwd)
        baseline.append(time.perf_counter() - started)
    return statistics.median(times) - statistics.median(baseline)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        print("installing the base and the full package in fresh venvs...", flush=True)
        pythons = {
            "base": _venv(folder / "base", str(ROOT)),
            "full": _venv(folder / "full", f"{ROOT}[worker]"),
        }
        rows = []
        for name, python in pythons.items():
            site = _site_packages(python)
            row = {
                "distributions": float(_distributions(python)),
                "site-packages MB": _size_mb(site),
            }
            for label, code in IMPORTS.items():
                row[f"{label} (s)"] = _import_s(python, code, args.runs, folder)
            rows.append((name, row))
        base, full = rows[0][1], rows[1][1]
        print(f"{'':28} {'base':>10} {'full':>10} {'base/full':>10}")
        for key in base:
            print(f"{key:28} {base[key]:10.2f} {full[key]:10.2f} {base[key] / full[key]:10.2f}")


if __name__ == "__main__":
    main()
