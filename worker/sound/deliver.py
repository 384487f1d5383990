"""Stems as callers asked for them: format, bit depth, sample rate, loudness, tags and names.

Conversion goes through libsndfile (WAV, FLAC, MP3 by LAME, Opus in Ogg), resampling through
``soxr``; tags through ``mutagen``. Nothing here is a codec of its own.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import mutagen
import numpy as np
import soundfile as sf
import soxr
from mutagen.id3 import ID3, TIT2, TXXX
from mutagen.wave import WAVE

from vidgo_stems.errors import InvalidRequest, StemUndecodable
from vidgo_stems.files.sniff import sniff_file
from vidgo_stems.sound.measure import measure, true_peak

#: format -> (file extension, libsndfile major format, subtype)
FORMATS: dict[str, tuple[str, str, str]] = {
    "wav16": ("wav", "WAV", "PCM_16"),
    "wav24": ("wav", "WAV", "PCM_24"),
    "flac": ("flac", "FLAC", "PCM_24"),
    "mp3": ("mp3", "MP3", "MPEG_LAYER_III"),
    "opus": ("opus", "OGG", "OPUS"),
}
ORIGINAL = "original"
#: MP3 sample rates by MPEG version, lowest first, with the bitrate range each carries (kbps).
_MP3_RATES: tuple[tuple[tuple[int, ...], int, int], ...] = (
    ((8_000, 11_025, 12_000), 8, 64),  # MPEG-2.5
    ((16_000, 22_050, 24_000), 8, 160),  # MPEG-2
    ((32_000, 44_100, 48_000), 32, 320),  # MPEG-1
)
OPUS_RATE = 48_000
TEMPLATE_FIELDS = ("stem", "title", "job_id", "ext")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Delivery:
    """How one job's stems are delivered."""

    format: str = ORIGINAL
    sample_rate: int | None = None  # None: the stem's own
    mp3_bitrate_kbps: int = 256
    normalize_lufs: float | None = None
    true_peak_ceiling_dbtp: float = -1.0
    name_template: str = "{stem}.{ext}"
    tag_originals: bool = False  # tags on ``original`` stems too (they are then not Vidgo's bytes)

    @property
    def untouched(self) -> bool:
        """True when stems are delivered as Vidgo's bytes: ``original``, not normalised."""
        return self.format == ORIGINAL and self.normalize_lufs is None

    @property
    def tagged(self) -> bool:
        """True when delivered stems carry tags: converted ones always, originals on request."""
        return not self.untouched or self.tag_originals

    def check(self) -> Delivery:
        if self.format != ORIGINAL and self.format not in FORMATS:
            allowed = ", ".join([ORIGINAL, *FORMATS])
            raise InvalidRequest(f"format must be one of {allowed}, got {self.format!r}")
        check_template(self.name_template)
        return self


def check_template(template: str) -> str:
    """Refuse a naming template with unknown fields (the message lists the known ones)."""
    for field in re.findall(r"{([^{}]*)}", template):
        if field not in TEMPLATE_FIELDS:
            known = ", ".join("{" + f + "}" for f in TEMPLATE_FIELDS)
            raise InvalidRequest(f"name template field {{{field}}} is unknown; use {known}")
    return template


def safe_part(text: str, limit: int = 80) -> str:
    """A file-name-safe version of a title or stem name."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return _UNSAFE.sub("_", ascii_text).strip("._")[:limit] or "untitled"


def file_name(template: str, *, stem: str, title: str | None, job_id: str, ext: str) -> str:
    """The stored name of a delivered stem, from the template, every field sanitised."""
    values = {
        "stem": safe_part(stem),
        "title": safe_part(title or "untitled"),
        "job_id": safe_part(job_id),
        "ext": ext,
    }
    name = safe_part(template.format(**values), limit=180)
    return name if not name.startswith(".") else "_" + name


#: FLAC's compression level for libsndfile (0.0 to 1.0 maps to FLAC's levels 0 to 8). Chosen
#: by size against encoding CPU on real stems: see benchmarks/README.md, "Post-processing".
FLAC_COMPRESSION = 0.375  # FLAC level 3


def convert(
    samples: np.ndarray, rate: int, delivery: Delivery, dest: Path
) -> tuple[int, float | None, np.ndarray]:
    """Write ``samples`` to ``dest`` as ``delivery`` asks; returns (rate written, gain dB, the
    samples written)."""
    _, major, subtype = FORMATS[delivery.format]
    out_rate = OPUS_RATE if delivery.format == "opus" else (delivery.sample_rate or rate)
    options: dict[str, float | str] = {}
    if delivery.format == "mp3":
        out_rate = mp3_rate(out_rate, delivery.mp3_bitrate_kbps)
        options["bitrate_mode"] = "CONSTANT"
        options["compression_level"] = mp3_compression(out_rate, delivery.mp3_bitrate_kbps)
    elif major == "FLAC":
        options["compression_level"] = FLAC_COMPRESSION
    gain_db = None
    if out_rate == rate and delivery.normalize_lufs is None:
        written = clean(samples)  # as it is: no float64 round trip
    else:
        data = np.nan_to_num(samples.astype(np.float64))
        if out_rate != rate:
            data = np.asarray(soxr.resample(data, rate, out_rate, quality="HQ"))
        if delivery.normalize_lufs is not None:
            data, gain_db = normalise(
                data, out_rate, delivery.normalize_lufs, delivery.true_peak_ceiling_dbtp
            )
        written = np.clip(data, -1.0, 1.0).astype(np.float32)
    frames = pcm24(written) if (major, subtype) == ("FLAC", "PCM_24") else written
    sf.write(str(dest), frames, out_rate, format=major, subtype=subtype, **options)
    return out_rate, gain_db, written


def mp3_rate(rate: int, kbps: int) -> int:
    """The sample rate an MP3 at ``kbps`` (constant) is written at: ``rate`` when MP3 has it and
    it carries that bitrate (below 32 kHz at most 160 kbps, below 16 kHz 64), else 44.1 or
    48 kHz (by ``rate``'s family); never above 48 kHz, MP3's highest."""
    for rates, low, high in _MP3_RATES:
        if rate in rates and low <= kbps <= high:
            return rate
    return 44_100 if rate % 11_025 == 0 else 48_000


def mp3_compression(rate: int, kbps: int) -> float:
    """libsndfile's compression level that makes LAME write constant ``kbps`` at ``rate``.

    In constant mode libsndfile maps the level linearly onto the bitrate range of the rate's
    MPEG version (0.0 its highest, 1.0 its lowest) and LAME takes the nearest bitrate; 1.0
    itself is refused, so the lowest bitrate is asked for just above it."""
    low, high = next((lo, hi) for rates, lo, hi in _MP3_RATES if rate in rates)
    return min((high - kbps) / (high - low), 0.999)


def clean(samples: np.ndarray) -> np.ndarray:
    """``samples`` as float32 within [-1, 1], NaN as 0 and Inf as full scale; the array itself
    when it already is."""
    data = np.asarray(samples, dtype=np.float32)
    if not data.size or (
        np.isfinite(data).all() and float(data.max()) <= 1.0 and float(data.min()) >= -1.0
    ):
        return data
    return np.clip(np.nan_to_num(data), -1.0, 1.0)


def pcm24(samples: np.ndarray) -> np.ndarray:
    """float32 samples in [-1, 1] as libsndfile's 24-bit PCM in int32 (the top 24 bits): the
    same values libsndfile's own float conversion writes to FLAC (x 2^23, rounded to nearest,
    clipped), for a fraction of its CPU."""
    scaled: np.ndarray = np.multiply(samples, np.float32(1 << 23), dtype=np.float32)
    np.rint(scaled, out=scaled)
    np.clip(scaled, -(1 << 23), (1 << 23) - 1, out=scaled)
    pcm: np.ndarray = scaled.astype(np.int32)
    pcm <<= 8
    return pcm


def normalise(
    data: np.ndarray, rate: int, target_lufs: float, ceiling_dbtp: float
) -> tuple[np.ndarray, float | None]:
    """Gain towards ``target_lufs``, limited so the true peak stays under ``ceiling_dbtp``."""
    loudness = measure(data, rate).loudness_lufs
    if loudness is None:
        return data, None
    gain_db = target_lufs - loudness
    peak = true_peak(data, rate)
    if peak > 0:
        gain_db = min(gain_db, ceiling_dbtp - 20 * math.log10(peak))
    return data * 10 ** (gain_db / 20), round(gain_db, 2)


def write_tags(path: Path, tags: dict[str, str]) -> None:
    """Title and our fields (stem role, source title, job id) in the file's own tag format,
    chosen by its bytes rather than its name. Raises StemUndecodable (``stem_untaggable``)
    when the file cannot carry them."""
    kind = sniff_file(path) or path.suffix.lower()
    try:
        _write_tags(path, kind, tags)
    except (mutagen.MutagenError, KeyError, ValueError, TypeError) as exc:
        raise StemUndecodable(
            f"{path.name}: tags cannot be written to it as {kind.lstrip('.')} "
            f"({type(exc).__name__}); the stem is not a well-formed audio file",
            code="stem_untaggable",
        ) from None


def _write_tags(path: Path, kind: str, tags: dict[str, str]) -> None:
    if kind == ".mp3":
        id3 = ID3()
        _id3_frames(id3, tags)
        id3.save(str(path))
    elif kind == ".wav":
        wave = WAVE(str(path))
        if wave.tags is None:
            wave.add_tags()
        _id3_frames(wave.tags, tags)
        wave.save()
    else:  # FLAC, Opus: Vorbis comments
        audio = mutagen.File(str(path))
        if audio is None:
            return
        for key, value in tags.items():
            audio[key] = value
        audio.save()


def _id3_frames(id3: object, tags: dict[str, str]) -> None:
    add = id3.add  # type: ignore[attr-defined]
    add(TIT2(encoding=3, text=tags.get("title", "")))
    for key, value in tags.items():
        if key != "title":
            add(TXXX(encoding=3, desc=key, text=value))


def read_tags(path: Path) -> dict[str, str]:
    """The tags :func:`write_tags` wrote, read back (for tests and the manifest)."""
    suffix = path.suffix.lower()
    if suffix in (".mp3", ".wav"):
        id3 = ID3(str(path)) if suffix == ".mp3" else WAVE(str(path)).tags
        found = {"title": str(id3["TIT2"].text[0])} if id3 and "TIT2" in id3 else {}
        for frame in id3.getall("TXXX") if id3 else []:
            found[frame.desc] = str(frame.text[0])
        return found
    audio = mutagen.File(str(path))
    return {k: v[0] for k, v in (audio.tags or {}).items()} if audio else {}
