"""Levels of a signal as broadcasters and players read them.

- Integrated loudness (LUFS) and loudness range (LU) per ITU-R BS.1770-4 / EBU R128 (and Tech
  3342 for the range): K-weighting (``pyloudnorm``'s filter design), 400 ms blocks, the
  absolute gate at -70 LUFS and the relative gates.
- True peak (dBTP): the sample peak of the signal oversampled four times (BS.1770 Annex 2),
  resampled with ``soxr``.
- Silence: a signal with no 400 ms block above the absolute gate (-70 LUFS) is silent, which is
  what "nothing there" means to the loudness standard; digital silence and noise at -80 dBFS
  both are.
- Clipping (runs of samples at full scale), non-finite samples, and DC offset.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyloudnorm
import soxr
from scipy.signal import lfilter

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
    clean = np.asarray(samples, dtype=np.float32)
    finite = np.isfinite(clean)
    non_finite = int(clean.size - np.count_nonzero(finite))
    if non_finite:
        clean = np.where(finite, clean, np.float32(0.0))
    loudness, loudness_range = _loudness(clean, rate)
    magnitude = np.abs(clean)
    peak = float(magnitude.max()) if clean.size else 0.0
    rms = math.sqrt(float(np.mean(np.square(clean, dtype=np.float64)))) if clean.size else 0.0
    clipped = _clipped_samples(magnitude)
    return Levels(
        loudness_lufs=loudness,
        loudness_range_lu=loudness_range,
        true_peak_dbtp=db(true_peak(clean, rate, sample_peak=peak)),
        peak_dbfs=db(peak),
        rms_dbfs=db(rms),
        silent=loudness is None,
        clipping=clipped > 0,
        clipped_samples=clipped,
        non_finite_samples=non_finite,
        dc_offset=round(float(np.max(np.abs(np.mean(clean, axis=0, dtype=np.float64)))), 5)
        if clean.size
        else 0.0,
    )


def _loudness(samples: np.ndarray, rate: int) -> tuple[float | None, float | None]:
    """(integrated LUFS, loudness range LU); None where no block passes the absolute gate.

    The K-weighting filters are pyloudnorm's design for this rate; the gating is done here, on
    100 ms sub-block energies computed once and in one pass (pyloudnorm loops over blocks in
    Python and filters the signal again for the range): 400 ms blocks with 75 % overlap for the
    integrated loudness (BS.1770-4), 3 s windows every 100 ms for the range (Tech 3342)."""
    step = rate // 10
    if samples.shape[0] < 4 * step:  # shorter than one gating block
        return None, None
    energies = _subblock_energies(samples, rate, step)
    integrated = _gated(_window_loudness(energies, 4))
    if integrated is None or integrated < ABSOLUTE_GATE_LUFS:
        return None, None
    short_term = _window_loudness(energies, 30)
    return round(integrated, 2), _range(short_term)


def _subblock_energies(samples: np.ndarray, rate: int, step: int) -> np.ndarray:
    """K-weighted mean square of every 100 ms sub-block, summed over channels."""
    weighted = samples
    for stage in pyloudnorm.Meter(rate)._filters.values():
        weighted = lfilter(stage.b, stage.a, weighted, axis=0)
    blocks = weighted.shape[0] // step
    squares = np.square(weighted[: blocks * step, 0])
    for channel in range(1, weighted.shape[1]):  # column by column: see decode.mono
        squares += np.square(weighted[: blocks * step, channel])
    return np.asarray(squares.reshape(blocks, step).mean(axis=1))


def _window_loudness(energies: np.ndarray, length: int) -> np.ndarray:
    """Loudness of every window of ``length`` sub-blocks, stepping one sub-block."""
    if energies.size < length:
        return np.empty(0)
    totals = np.cumsum(np.concatenate(([0.0], energies)))
    means = (totals[length:] - totals[:-length]) / length
    with np.errstate(divide="ignore"):
        return np.asarray(-0.691 + 10 * np.log10(means))


def _gated(loudness: np.ndarray) -> float | None:
    """BS.1770 gating: the absolute gate at -70 LUFS, then the relative gate 10 LU below."""
    above = loudness[loudness > ABSOLUTE_GATE_LUFS]
    if not above.size:
        return None
    relative = _power_mean(above) - 10.0
    kept = above[above > relative]
    return _power_mean(kept) if kept.size else None


def _range(short_term: np.ndarray) -> float:
    """Tech 3342: the spread between the 10th and 95th percentiles of short-term loudness
    above the absolute gate and 20 LU under their power mean."""
    above = short_term[short_term > ABSOLUTE_GATE_LUFS]
    if not above.size:
        return 0.0
    kept = above[above > _power_mean(above) - 20.0]
    if not kept.size:
        return 0.0
    low, high = np.percentile(kept, [10, 95])
    return round(float(high - low), 2)


def _power_mean(loudness: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.power(10.0, (loudness + 0.691) / 10))) - 0.691)


def true_peak(samples: np.ndarray, rate: int, *, sample_peak: float | None = None) -> float:
    """The peak of ``samples`` oversampled four times (linear, not dB).

    Only stretches that come within 6 dB of the sample peak can hold the true peak (4x
    oversampling finds at most about 3 dB more), so only those are oversampled: blocks of the
    signal are judged by their own sample peak, and a block kept is oversampled with a margin
    on each side for the filter to settle.
    """
    if not samples.size:
        return 0.0
    data = np.asarray(samples, dtype=np.float32)
    peak = float(np.abs(data).max()) if sample_peak is None else sample_peak
    if peak == 0.0:
        return 0.0
    block, margin = 4096, 256
    frames = data.shape[0]
    starts = range(0, frames, block)
    found = peak
    for start in starts:
        piece = data[start : start + block]
        if float(np.abs(piece).max()) < peak / 2:
            continue
        first = max(0, start - margin)
        window = data[first : start + block + margin]
        upsampled = soxr.resample(window, rate, rate * TRUE_PEAK_OVERSAMPLING, quality="HQ")
        # Only the block's own stretch counts: the window's cut edges ring.
        factor = TRUE_PEAK_OVERSAMPLING
        inner = upsampled[(start - first) * factor : (start - first + len(piece)) * factor]
        if inner.size:
            found = max(found, float(np.abs(inner).max()))
    return found


def _clipped_samples(magnitude: np.ndarray) -> int:
    """Samples in runs of at least CLIP_RUN at full scale, over all channels."""
    at_full = magnitude >= CLIP_LEVEL
    total = 0
    for channel in at_full.T:
        if not channel.any():
            continue
        edges = np.diff(np.concatenate(([0], channel.astype(np.int8), [0])))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        runs = ends - starts
        total += int(runs[runs >= CLIP_RUN].sum())
    return total
