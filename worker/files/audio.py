"""Audio facts of a stem file, measured in one streaming pass with soundfile.

Memory stays flat whatever the length: the file is read in blocks and only running sums are kept.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from worker.errors import StemUndecodable

#: A stem whose RMS level is below this is flagged as silent.
SILENCE_DBFS = -60.0
BLOCK_FRAMES = 1 << 16


@dataclass(frozen=True)
class AudioFacts:
    duration_s: float
    sample_rate: int
    channels: int
    frames: int
    format: str
    peak_dbfs: float
    rms_dbfs: float
    silent: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _dbfs(value: float) -> float:
    return round(20 * math.log10(value), 2) if value > 0 else -math.inf


def analyse(path: Path) -> AudioFacts:
    """Decode ``path`` block by block and measure it. Raises StemUndecodable."""
    peak = 0.0
    sum_squares = 0.0
    samples = 0
    try:
        with sf.SoundFile(str(path)) as audio:
            for block in audio.blocks(blocksize=BLOCK_FRAMES, dtype="float32", always_2d=True):
                if block.size:
                    peak = max(peak, float(np.max(np.abs(block))))
                    sum_squares += float(np.sum(np.square(block, dtype=np.float64)))
                    samples += block.size
            frames, rate, channels, fmt = (
                audio.frames,
                audio.samplerate,
                audio.channels,
                audio.format,
            )
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise StemUndecodable(f"{path.name} is not decodable audio: {exc}") from None
    rms = math.sqrt(sum_squares / samples) if samples else 0.0
    rms_dbfs = _dbfs(rms)
    return AudioFacts(
        duration_s=round(frames / rate, 3) if rate else 0.0,
        sample_rate=int(rate),
        channels=int(channels),
        frames=int(frames),
        format=str(fmt),
        peak_dbfs=max(_dbfs(peak), -999.0),
        rms_dbfs=max(rms_dbfs, -999.0),
        silent=rms_dbfs < SILENCE_DBFS,
    )
