"""Levels of a signal as broadcasters and players read them.

- Integrated loudness (LUFS) and loudness range (LU) per ITU-R BS.1770-4 / EBU R128 (and Tech
  3342 for the range), through ``pyloudnorm``: K-weighting, 400 ms blocks, absolute gate at
  -70 LUFS and the relative gates.
- True peak (dBTP): the sample peak of the signal oversampled four times (BS.1770 Annex 2),
  resampled with ``soxr``.
- Silence: a signal with no 400 ms block above the absolute gate (-70 LUFS) is silent, which is
  what "nothing there" means to the loudness standard; digital silence and noise at -80 dBFS
  both are.
- Clipping (runs of samples at full scale), non-finite samples, and DC offset.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyloudnorm
import soxr

#: BS.1770's absolute gate: blocks below it do not count, and a signal with none above is silent.
ABSOLUTE_GATE_LUFS = -70.0
#: A sample this close to full scale counts towards clipping; so many in a row is a clip.
CLIP_LEVEL = 0.999
CLIP_RUN = 3
#: A mean this far from zero (-40 dBFS) is a DC offset worth flagging.
DC_OFFSET_LIMIT = 0.01
TRUE_PEAK_OVERSAMPLING = 4


@dataclass(frozen=True)
class Levels:
    loudness_lufs: float | None
    loudness_range_lu: float | None
    true_peak_dbtp: float | None
    peak_dbfs: float | None
    rms_dbfs: float | None
    silent: bool
    clipping: bool
    clipped_samples: int
    non_finite_samples: int
    dc_offset: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def db(value: float) -> float | None:
    """20·log10(value), None for zero (JSON has no -inf)."""
    return round(20 * math.log10(value), 2) if value > 0 else None


def measure(samples: np.ndarray, rate: int) -> Levels:
    """The levels of ``samples`` (float, [frames, channels]) at ``rate``."""
    finite = np.isfinite(samples)
    non_finite = int(samples.size - np.count_nonzero(finite))
    clean = np.where(finite, samples, 0.0).astype(np.float64)
    loudness, loudness_range = _loudness(clean, rate)
    peak = float(np.max(np.abs(clean))) if clean.size else 0.0
    rms = math.sqrt(float(np.mean(np.square(clean)))) if clean.size else 0.0
    clipped = _clipped_samples(clean)
    return Levels(
        loudness_lufs=loudness,
        loudness_range_lu=loudness_range,
        true_peak_dbtp=db(true_peak(clean, rate)),
        peak_dbfs=db(peak),
        rms_dbfs=db(rms),
        silent=loudness is None,
        clipping=clipped > 0,
        clipped_samples=clipped,
        non_finite_samples=non_finite,
        dc_offset=round(float(np.max(np.abs(np.mean(clean, axis=0)))) if clean.size else 0.0, 5),
    )


def _loudness(samples: np.ndarray, rate: int) -> tuple[float | None, float | None]:
    """(integrated LUFS, loudness range LU); None where no block passes the absolute gate."""
    if samples.shape[0] < int(0.4 * rate):  # shorter than one gating block
        return None, None
    meter = pyloudnorm.Meter(rate)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyloudnorm warns on clipped input; we flag it ourselves
        integrated = float(meter.integrated_loudness(samples))
        if not math.isfinite(integrated) or integrated < ABSOLUTE_GATE_LUFS:
            return None, None
        try:
            spread = float(meter.loudness_range(samples))
        except (ValueError, IndexError):  # under 3 s: no short-term blocks to spread
            spread = 0.0
    return round(integrated, 2), round(spread, 2) if math.isfinite(spread) else 0.0


def true_peak(samples: np.ndarray, rate: int) -> float:
    """The peak of ``samples`` oversampled four times (linear, not dB)."""
    if not samples.size:
        return 0.0
    upsampled = soxr.resample(samples, rate, rate * TRUE_PEAK_OVERSAMPLING, quality="HQ")
    return max(float(np.max(np.abs(upsampled))), float(np.max(np.abs(samples))))


def _clipped_samples(samples: np.ndarray) -> int:
    """Samples in runs of at least CLIP_RUN at full scale, over all channels."""
    at_full = np.abs(samples) >= CLIP_LEVEL
    total = 0
    for channel in at_full.T:
        if not channel.any():
            continue
        edges = np.diff(np.concatenate(([0], channel.astype(np.int8), [0])))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        runs = ends - starts
        total += int(runs[runs >= CLIP_RUN].sum())
    return total
