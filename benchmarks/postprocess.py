"""Post-processing: seconds of audio processed per CPU second for a six-stem general job.

Our side does what the pipeline does for each stem: decode the MP3, check it against the source
(offset, duration, match), measure it (integrated loudness, loudness range, true peak, silence,
clipping), convert it to FLAC, tag it and draw waveform peaks; plus the remix check. The
baseline is the ffmpeg CLI (imageio-ffmpeg's bundled binary) doing the same conversion to FLAC
with ``ebur128=peak=true`` (integrated loudness, range and true peak) on the same files, one
process per stem. Both are timed by CPU seconds of their processes (user + system) and by wall
time, run side by side (alternating which goes first), best of RUNS by CPU time; the ratios are
ffmpeg's time over ours, so above 1 means we are faster.

    ./scripts/bench postprocess [SECONDS_PER_TRACK=180] [RUNS=3]
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import table

STEMS = ("bass", "drums", "piano", "guitar", "vocals", "other")


def make_job(folder: Path, seconds: float) -> tuple[Path, list[Path]]:
    """A source track and its six MP3 stems, as the emulator makes them."""
    import soundfile as sf

    from vidgo_stems.emulator import audio
    from vidgo_stems.devstack import tracks

    source = tracks.write_track(folder / "source.wav", "groove", seconds=seconds, rate=44_100)
    samples, rate = sf.read(str(source), dtype="float32", always_2d=True)
    stems = audio.split(samples, rate, list(STEMS), "base", "mp3")
    paths = []
    for name, data in stems.items():
        path = folder / f"{name}.mp3"
        path.write_bytes(data)
        paths.append(path)
    return source, paths


def ours(source: Path, stems: list[Path], out: Path) -> None:
    from vidgo_stems.sound.deliver import Delivery
    from vidgo_stems.sound.process import process_stem, read_source
    from vidgo_stems.sound.validate import remix_residual_db

    checked = read_source(source, source.stat().st_size, "")
    mixes = []
    for path in stems:
        done = process_stem(
            path.stem,
            path,
            source=checked,
            delivery=Delivery(format="flac"),
            work=out,
            tags={"title": path.stem, "stem": path.stem, "source_title": "", "job_id": "bench"},
            job_id="bench",
            title=None,
            pixels_per_second=50,
        )
        mixes.append(done.analysis)
    assert checked.analysis is not None
    remix_residual_db(mixes, checked.analysis)


def ffmpeg(stems: list[Path], out: Path) -> None:
    import imageio_ffmpeg

    exe = imageio_ffmpeg.get_ffmpeg_exe()
    out.mkdir(parents=True, exist_ok=True)
    for path in stems:
        subprocess.run(
            [
                exe,
                "-nostdin",
                "-hide_banner",
                "-loglevel",
                "error",
                "-y",
                "-i",
                str(path),
                "-filter_complex",
                "[0:a]asplit=2[a][b];[b]ebur128=peak=true[m]",
                "-map",
                "[a]",
                "-c:a",
                "flac",
                str(out / f"{path.stem}.flac"),
                "-map",
                "[m]",
                "-f",
                "null",
                "-",
            ],
            check=True,
        )


def cpu_seconds(run) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(CPU seconds of this process and its children, wall seconds) taken by ``run()``."""
    before = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    run()
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    used = sum(
        (a.ru_utime + a.ru_stime) - (b.ru_utime + b.ru_stime)
        for a, b in zip(after, before, strict=True)
    )
    return used, wall


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 180.0
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory(prefix="vidgo-bench-post-") as tmp:
        folder = Path(tmp)
        source, stems = make_job(folder, seconds)
        audio_s = seconds * len(stems)
        best: dict[str, tuple[float, float]] = {}
        for i in range(runs):
            ff_out, our_out = folder / f"ff{i}", folder / f"ours{i}"
            order = [
                ("ffmpeg", lambda out=ff_out: ffmpeg(stems, out)),
                ("ours", lambda out=our_out: ours(source, stems, out)),
            ]
            for name, run in order if i % 2 else reversed(order):
                cpu, wall = cpu_seconds(run)
                if name not in best or cpu < best[name][0]:
                    best[name] = (cpu, wall)
    ff_cpu, ff_wall = best["ffmpeg"]
    our_cpu, our_wall = best["ours"]
    rows = [
        (
            "run",
            "CPU s",
            "wall s",
            "audio s per CPU s",
            "audio s per wall s",
            "x ffmpeg CPU",
            "x ffmpeg wall",
        ),
        (
            "ffmpeg CLI: FLAC + ebur128=peak=true",
            f"{ff_cpu:.2f}",
            f"{ff_wall:.2f}",
            f"{audio_s / ff_cpu:.0f}",
            f"{audio_s / ff_wall:.0f}",
            "1.00",
            "1.00",
        ),
        (
            "ours: validate, measure, FLAC, tags, peaks, remix",
            f"{our_cpu:.2f}",
            f"{our_wall:.2f}",
            f"{audio_s / our_cpu:.0f}",
            f"{audio_s / our_wall:.0f}",
            f"{ff_cpu / our_cpu:.2f}",
            f"{ff_wall / our_wall:.2f}",
        ),
    ]
    print(
        f"postprocess: a six-stem general job, {seconds:g} s stereo MP3 stems at 44.1 kHz "
        f"({audio_s:g} s of audio), best of {runs} runs by CPU time"
    )
    print(table(rows))
    print(
        f"ours vs ffmpeg: {ff_cpu / our_cpu:.2f}x in audio seconds per CPU second, "
        f"{ff_wall / our_wall:.2f}x in wall time (target: >= 1.50x per CPU second)"
    )


if __name__ == "__main__":
    main()
