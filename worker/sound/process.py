"""Post-processing of one stem and of the source, as plain functions over local files.

The stage (:mod:`vidgo_stems.pipeline.stages.postprocess`) fetches the files and stores what comes
out; this module decodes, measures, checks against the source, converts, tags and draws the
waveform, and says what it found as manifest entries.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vidgo_stems.files.objects import content_type_for
from vidgo_stems.sound.decode import Audio, read_audio
from vidgo_stems.sound.decode import mono as mono_of
from vidgo_stems.sound.deliver import FORMATS, ORIGINAL, Delivery, convert, file_name, write_tags
from vidgo_stems.sound.measure import DC_OFFSET_LIMIT, Levels, measure
from vidgo_stems.sound.peaks import peaks_of_mono, to_dat, to_json
from vidgo_stems.sound.validate import AnalysisPrint, analysis_signal, compare, print_of_analysis

#: libsndfile's major format -> what we call it in the manifest.
FORMAT_NAMES = {"MPEG": "mp3", "WAV": "wav", "FLAC": "flac", "OGG": "ogg", "AIFF": "aiff"}


@dataclass
class Source:
    """The source track as far as validation goes; ``analysis`` is its mono analysis signal."""

    checked: bool
    reason: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    analysis: np.ndarray | None = None
    duration_s: float = 0.0
    #: What the checks need of it, small enough to store for a step on another host.
    fingerprint: AnalysisPrint | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"checked": self.checked, "reason": self.reason, **self.facts}


def read_source(path: Path, size: int, sha256: str) -> Source:
    """Decode and measure the fetched source (decoded once; its mono mix made once)."""
    audio = read_audio(path)
    mono = mono_of(audio.samples)
    facts = {
        "sample_rate": audio.rate,
        "channels": audio.channels,
        "duration_s": round(audio.duration_s, 4),
        "bytes": size,
        "sha256": sha256,
        "levels": measure(audio.samples, audio.rate).as_dict(),
    }
    analysis = analysis_signal(mono[:, None], audio.rate)
    fingerprint = print_of_analysis(analysis, audio.rate, audio.duration_s)
    return Source(True, None, facts, analysis, audio.duration_s, fingerprint)


@dataclass
class Processed:
    """One stem, done: its manifest entry (without storage keys), the delivered file, its
    waveform peaks, its analysis signal, and its print (what the checks against the source
    need of it, small enough to store for the join)."""

    entry: dict[str, Any]
    delivered: Path
    content_type: str
    peaks_json: bytes
    peaks_dat: bytes
    analysis: np.ndarray
    fingerprint: AnalysisPrint


def process_stem(
    name: str,
    original: Path,
    *,
    source: Source,
    delivery: Delivery,
    work: Path,
    tags: dict[str, str],
    job_id: str,
    title: str | None,
    pixels_per_second: int,
) -> Processed:
    """Decode, measure, check, deliver, tag and draw one stem.

    The stem is decoded once; its levels come from the samples delivered, and its analysis
    signal and waveform from one mono mix of the decoded samples."""
    audio = read_audio(original)
    mono = mono_of(audio.samples)
    check = None
    analysis = analysis_signal(mono[:, None], audio.rate)
    if source.checked and source.analysis is not None:
        check = compare(analysis, audio.rate, source.analysis, source.duration_s)
    delivered, out_rate, gain_db, levels = _deliver(name, original, audio, delivery, work)
    name_out = file_name(
        delivery.name_template,
        stem=name,
        title=title,
        job_id=job_id,
        ext=delivered.suffix.lstrip("."),
    )
    final = delivered.with_name(name_out)
    delivered.replace(final)
    if delivery.tagged:
        write_tags(final, tags)
    per_pixel, pairs = peaks_of_mono(mono, audio.rate, pixels_per_second)
    problems = [*(check.problems if check else []), *level_problems(levels)]
    entry = {
        "file": final.name,
        "format": _format_of(final, audio),
        "sample_rate": out_rate,
        "channels": audio.channels,
        "duration_s": round(audio.duration_s, 4),
        "offset_vs_source_s": check.offset_vs_source_s if check else None,
        "duration_delta_s": check.duration_delta_s if check else None,
        "match_score": check.match_score if check else None,
        **{k: v for k, v in levels.as_dict().items() if k not in ("clipped_samples",)},
        "gain_db": gain_db,
        "tags": tags if delivery.tagged else {},
        "problems": problems,
        "peaks": {"pixels_per_second": pixels_per_second, "samples_per_pixel": per_pixel},
    }
    return Processed(
        entry,
        final,
        _content_type(final),
        to_json(audio.rate, per_pixel, pairs),
        to_dat(audio.rate, per_pixel, pairs),
        analysis,
        print_of_analysis(analysis, audio.rate, audio.duration_s),
    )


def _deliver(
    name: str, original: Path, audio: Audio, delivery: Delivery, work: Path
) -> tuple[Path, int, float | None, Levels]:
    """(the file to deliver, its rate, the gain applied, its levels)."""
    work.mkdir(parents=True, exist_ok=True)
    if delivery.untouched:
        copy = work / f"{name}{original.suffix}"
        shutil.copyfile(original, copy)
        return copy, audio.rate, None, measure(audio.samples, audio.rate)
    fmt = delivery.format if delivery.format != ORIGINAL else "wav24"
    ext = FORMATS[fmt][0]
    dest = work / f"{name}.{ext}"
    out_rate, gain_db, data = convert(
        audio.samples, audio.rate, Delivery(**{**delivery.__dict__, "format": fmt}), dest
    )
    return dest, out_rate, gain_db, measure(data, out_rate)


def level_problems(levels: Levels) -> list[str]:
    """Stable codes for what the levels say is wrong with a stem."""
    problems = []
    if levels.clipping:
        problems.append("stem_clipping")
    if levels.non_finite_samples:
        problems.append("stem_non_finite")
    if abs(levels.dc_offset) > DC_OFFSET_LIMIT:
        problems.append("stem_dc_offset")
    return problems


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _format_of(path: Path, audio: Audio) -> str:
    suffix = path.suffix.lstrip(".").lower()
    return suffix or FORMAT_NAMES.get(audio.format, audio.format.lower())


def _content_type(path: Path) -> str:
    return content_type_for(path.name)
