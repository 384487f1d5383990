"""``vidgo-stems demo``: the whole pipeline on embedded defaults, end to end, on one machine.

Starts a private Redis (unless REDIS_URL is set), the bundled Vidgo emulator and a Celery worker;
writes three short music tracks, serves them over HTTP, separates them with a mix of model names
and output types, shows progress, and leaves stems and manifests under ``OUT/stems``. Everything
it started is stopped on the way out; the exit code is 0 only when every job is DONE.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from vidgo_stems.devstack import tracks
from vidgo_stems.devstack.local import FileServer, WorkerProcess
from vidgo_stems.devstack.redis_server import RedisServer, free_port
from vidgo_stems.pipeline.states import JobState

if TYPE_CHECKING:
    from vidgo_stems.views import ManifestStem

#: (track, model name, output type, delivery: format, sample rate, loudness target)
JOBS = [
    ("groove", "base", "general", ("flac", None, None)),
    ("ballad", "enhanced", "vocals", ("original", None, None)),
    ("beat", "instrumental", "drums", ("wav16", 48000, None)),
    ("ballad", "base", "general", ("mp3", None, -14.0)),
    ("groove", "enhanced", "bass", ("opus", None, None)),
]


@contextlib.contextmanager
def _redis_url() -> Iterator[str]:
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    with RedisServer() as server:
        yield server.url


def _say(text: str) -> None:
    print(text, flush=True)


def run_demo(out: Path, *, timeout_s: float = 300.0) -> int:
    """Run the demo; returns the process exit code."""
    from vidgo_stems.emulator import EmulatorConfig
    from vidgo_stems.emulator.server import BackgroundEmulator

    out = out.resolve()
    track_dir = out / "tracks"
    for name in sorted({job[0] for job in JOBS}):
        tracks.write_track(track_dir / f"{name}.wav", name)
    _say(f"wrote {len({job[0] for job in JOBS})} tracks under {track_dir}")
    api_key = secrets.token_urlsafe(16)
    emulator_config = EmulatorConfig(api_key=api_key, queue_s=1.0, run_s=3.0)
    with (
        _redis_url() as redis_url,
        FileServer(track_dir) as files,
        BackgroundEmulator(emulator_config, free_port()) as emu,
    ):
        env = {
            "REDIS_URL": redis_url,
            "VIDGO_API_KEY": api_key,
            "VIDGO_BASE_URL": emu.url,
            "STEMS_DIR": str(out / "stems"),
            # The tracks are served from this machine; the stems are checked against them.
            "VIDGO_STEMS_ALLOW_PRIVATE_SOURCE_HOSTS": "true",
            "VIDGO_STEMS_REDIS_KEY_PREFIX": f"vidgo-stems-demo-{secrets.token_hex(4)}",
            "VIDGO_STEMS_QUEUE_NAME": f"vidgo-demo-{secrets.token_hex(4)}",
            "VIDGO_STEMS_METRICS_PORT": str(free_port()),
            "VIDGO_STEMS_METRICS_ADDR": "127.0.0.1",
        }
        os.environ.update(env)
        from vidgo_stems.settings import get_settings

        get_settings.cache_clear()
        _say(f"redis {redis_url}, emulator {emu.url}, stems -> {out / 'stems'}")
        _say(f"worker metrics on http://127.0.0.1:{env['VIDGO_STEMS_METRICS_PORT']}/metrics")
        log_path = out / "worker.log"
        # The worker's per-process metric files stay with the demo's output (the worker's own
        # variable: this process counts nothing it needs to share).
        worker_env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(out / ".metrics")}
        with open(log_path, "wb") as log, WorkerProcess(worker_env, log=log, loglevel="INFO"):
            status = _separate(files.url, timeout_s)
            _show_metrics(f"http://127.0.0.1:{env['VIDGO_STEMS_METRICS_PORT']}/metrics")
            return status


def _separate(files_url: str, timeout_s: float) -> int:
    from vidgo_stems.producer import enqueue, get_job

    job_ids = []
    for name, model_name, output_type, (fmt, rate, lufs) in JOBS:
        job_id = enqueue(
            f"{files_url}/{name}.wav",
            title=f"{name} ({model_name}/{output_type})",
            model_name=model_name,
            output_type=output_type,
            format=fmt,
            sample_rate=rate,
            normalize_lufs=lufs,
        )
        job_ids.append(job_id)
        _say(
            f"enqueued {job_id}  {name:7s} model={model_name:12s} output={output_type:8s}"
            f" format={fmt}"
        )
    deadline = time.monotonic() + timeout_s
    last: dict[str, str] = {}
    while time.monotonic() < deadline:
        views = {job_id: get_job(job_id) for job_id in job_ids}
        states = {j: v.state.value if v else "?" for j, v in views.items()}
        if states != last:
            done = sum(s in ("DONE", "FAILED") for s in states.values())
            counts = ", ".join(
                f"{s}={list(states.values()).count(s)}" for s in sorted(set(states.values()))
            )
            _say(f"[{done}/{len(job_ids)} finished] {counts}")
            last = states
        if all(v is not None and v.state.is_terminal for v in views.values()):
            break
        time.sleep(0.5)
    return _report(job_ids)


def _report(job_ids: list[str]) -> int:
    from vidgo_stems.producer import get_job

    ok = True
    _say("")
    for job_id in job_ids:
        view = get_job(job_id)
        if view is None or view.state is not JobState.DONE:
            ok = False
            reason = view.error.message if view and view.error else "did not finish in time"
            _say(f"  {job_id}  {view.state.value if view else '?'}: {reason}")
            continue
        _say(f"  {job_id}  DONE  manifest: {view.manifest_url}")
        manifest = view.manifest
        if manifest is None:
            continue
        if manifest.remix_residual_db is not None:
            _say(f"      remix residual {manifest.remix_residual_db:.1f} dB")
        for name, stem in sorted(manifest.stems.items()):
            _say(f"      {_stem_line(name, stem)}")
    _say("all jobs DONE" if ok else "some jobs did not finish")
    return 0 if ok else 1


def _show_metrics(url: str) -> None:
    """A few figures from the worker's own Prometheus endpoint, as an operator would scrape."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = httpx.get(url, timeout=10).text
    except httpx.HTTPError as exc:
        _say(f"metrics: {url} did not answer ({exc})")
        return
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = sample.name
            if sample.name == "vidgo_stems_jobs_finished_total":
                key = f"{sample.name}:{sample.labels['state']}"
            totals[key] = totals.get(key, 0.0) + sample.value
    lateness = totals.get("vidgo_stems_poll_lateness_seconds_sum", 0.0) / max(
        1.0, totals.get("vidgo_stems_poll_lateness_seconds_count", 0.0)
    )
    _say(
        f"metrics ({url}): jobs done {totals.get('vidgo_stems_jobs_finished_total:DONE', 0):.0f}, "
        f"Vidgo requests {totals.get('vidgo_stems_vidgo_requests_total', 0):.0f}, "
        f"tasks paid {totals.get('vidgo_stems_vidgo_tasks_paid_total', 0):.0f}, "
        f"stem bytes {totals.get('vidgo_stems_download_bytes_total', 0):.0f}, "
        f"mean poll lateness {lateness:.2f}s"
    )


def _stem_line(name: str, stem: ManifestStem) -> str:
    def num(value: float | None, unit: str) -> str:
        return f"{value:.1f} {unit}" if value is not None else f"- {unit}"

    offset = stem.offset_vs_source_s
    facts = [
        f"{name:7s} {stem.format:5s} {stem.sample_rate} Hz {stem.duration_s:.2f} s",
        f"offset {offset * 1000:.1f} ms" if offset is not None else "offset -",
        num(stem.loudness_lufs, "LUFS"),
        num(stem.true_peak_dbtp, "dBTP"),
        "silent" if stem.silent else "",
        ",".join(stem.problems),
    ]
    return "  ".join(f for f in facts if f)


if __name__ == "__main__":
    sys.exit(run_demo(Path(sys.argv[1] if len(sys.argv) > 1 else "demo-out")))
