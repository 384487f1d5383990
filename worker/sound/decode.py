"""Audio files in, float samples out: WAV, FLAC, Ogg (Vorbis, Opus) and MP3 through libsndfile.

A stem is decoded whole (about 85 MB of float32 for six minutes of stereo at 44.1 kHz): the
loudness standard, the source comparison and the conversions all need the whole signal, and
one stem at a time keeps the peak bounded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from vidgo_stems.errors import StemUndecodable


@dataclass(frozen=True)
class Audio:
    samples: np.ndarray  # float32 [frames, channels]
    rate: int
    format: str  # libsndfile's major format: WAV, FLAC, OGG, MPEG, ...
    subtype: str

    @property
    def channels(self) -> int:
        return int(self.samples.shape[1])

    @property
    def frames(self) -> int:
        return int(self.samples.shape[0])

    @property
    def duration_s(self) -> float:
        return self.frames / self.rate if self.rate else 0.0


def read_audio(path: Path, *, max_seconds: float | None = None) -> Audio:
    """Decode ``path``; StemUndecodable when it is not audio libsndfile reads."""
    try:
        with sf.SoundFile(str(path)) as handle:
            limit = -1 if max_seconds is None else int(max_seconds * handle.samplerate)
            samples = handle.read(limit, dtype="float32", always_2d=True)
            return Audio(samples, int(handle.samplerate), handle.format, handle.subtype)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise StemUndecodable(f"{path.name} is not decodable audio: {exc}") from None


def mono(samples: np.ndarray) -> np.ndarray:
    """The mean of the channels of ``samples`` ([frames, channels]) as float32, NaN and Inf
    as 0. Channels are added column by column: a reduction over a short last axis is several
    times slower. NaN and Inf are looked for once and replaced only when there are any."""
    data = np.asarray(samples, dtype=np.float32)
    total = data[:, 0].copy()
    for channel in range(1, data.shape[1]):
        total += data[:, channel]
    if data.shape[1] > 1:
        total *= np.float32(1.0 / data.shape[1])
    if np.isfinite(total).all():
        return total
    return np.nan_to_num(total, copy=False)
