"""Levels of a signal as broadcasters and players read them.

- Integrated loudness (LUFS) and loudness range (LU) per ITU-R BS.1770-4 / EBU R128 (and Tech
  3342 for the range): K-weighting (BS.1770's filters, designed for the signal's rate) run as
  float32 second-order sections, 100 ms sub-block energies, 400 ms blocks for the integrated
  loudness and 3 s windows for the range, each gated through a fixed histogram of block
  loudness as libebur128 and ffmpeg's ``ebur128`` filter do (0.01 LU bins from -70 to +10
  LUFS).
- True peak (dBTP): the peak of the signal oversampled four times (BS.1770 Annex 2) by a
  polyphase FIR, libebur128's design: a 49-tap Hann-windowed sinc whose phase 0 is the samples
  themselves and whose three other phases have 12 taps each.
- Silence: a signal with no 400 ms block above the absolute gate (-70 LUFS) is silent, which is
  what "nothing there" means to the loudness standard; digital silence and noise at -80 dBFS
  both are.
- Clipping (runs of samples at full scale), non-finite samples, and DC offset.

Everything is derived from the float32 samples as they are: a stereo pair is read as one
complex signal (left + i·right, no copy), so each filter runs over both channels in one pass.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from scipy.signal import sosfilt

#: BS.1770's absolute gate: blocks below it do not count, and a signal with none above is silent.
ABSOLUTE_GATE_LUFS = -70.0
#: A sample this close to full scale counts towards clipping; so many in a row is a clip.
CLIP_LEVEL = 0.999
CLIP_RUN = 3
#: A mean this far from zero (-40 dBFS) is a DC offset worth flagging.
DC_OFFSET_LIMIT = 0.01
TRUE_PEAK_OVERSAMPLING = 4
#: The loudness histogram: bins of 1/HISTOGRAM_GRAIN LU from the absolute gate up to
#: HISTOGRAM_TOP_LUFS (louder blocks fall in the top bin).
HISTOGRAM_GRAIN = 100
HISTOGRAM_TOP_LUFS = 10.0
HISTOGRAM_BINS = int((HISTOGRAM_TOP_LUFS - ABSOLUTE_GATE_LUFS) * HISTOGRAM_GRAIN) + 1
#: True peak: the interpolator's length and the run of frames judged as one by their peak.
TRUE_PEAK_TAPS = 49
TRUE_PEAK_BLOCK = 16


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
    data, non_finite = _clean(samples)
    frames = data.shape[0]
    if not data.size:
        return Levels(None, None, None, None, None, True, False, 0, non_finite, 0.0)
    lanes = _lanes(data)
    peak = max(float(data.max()), -float(data.min()))
    step = max(rate // 10, 1)
    sums, squares = _sums(data, lanes, step)
    loudness, loudness_range = _loudness(lanes, rate, frames)
    clipped = _clipped_samples(data) if peak >= CLIP_LEVEL else 0
    return Levels(
        loudness_lufs=loudness,
        loudness_range_lu=loudness_range,
        true_peak_dbtp=db(_true_peak(lanes, peak)),
        peak_dbfs=db(peak),
        rms_dbfs=db(math.sqrt(squares / data.size)),
        silent=loudness is None,
        clipping=clipped > 0,
        clipped_samples=clipped,
        non_finite_samples=non_finite,
        dc_offset=round(float(np.max(np.abs(sums))) / frames, 5),
    )


def _clean(samples: np.ndarray) -> tuple[np.ndarray, int]:
    """(``samples`` as C-contiguous float32 [frames, channels] with NaN and Inf as 0, how many
    samples were not finite); no copy when they already are."""
    data = np.ascontiguousarray(samples, dtype=np.float32)
    if data.ndim == 1:
        data = data[:, None]
    finite = np.isfinite(data)
    if finite.all():
        return data, 0
    return np.where(finite, data, np.float32(0.0)), int(finite.size - np.count_nonzero(finite))


def _lanes(data: np.ndarray) -> list[np.ndarray]:
    """The channels of ``data`` (C-contiguous float32 [frames, channels]) as 1-D lanes a filter
    runs along: a pair of channels is one complex64 lane (left + i·right, the interleaved
    samples themselves: no copy for stereo), a single channel a float32 one. A filter with real
    coefficients filters both channels of a complex lane at once, in one pass."""
    channels = data.shape[1]
    if channels == 1:
        return [data[:, 0]]
    if channels == 2:
        return [data.view(np.complex64)[:, 0]]
    lanes = [
        np.ascontiguousarray(data[:, i : i + 2]).view(np.complex64)[:, 0]
        for i in range(0, channels - 1, 2)
    ]
    if channels % 2:
        lanes.append(np.ascontiguousarray(data[:, -1]))
    return lanes


def _reals(lane: np.ndarray) -> np.ndarray:
    """A lane's samples as float32 (interleaved for a complex lane)."""
    return lane.view(np.float32)


def _block_squares(lane: np.ndarray, step: int) -> np.ndarray:
    """The sum of squares of every whole block of ``step`` frames of a lane, over its
    channels (float32 within a block, float64 out)."""
    width = step * (2 if np.iscomplexobj(lane) else 1)
    reals = _reals(lane)
    blocks = reals[: reals.size // width * width].reshape(-1, width)
    squares: np.ndarray = np.einsum("bs,bs->b", blocks, blocks)
    return squares.astype(np.float64)


def _sums(data: np.ndarray, lanes: list[np.ndarray], step: int) -> tuple[np.ndarray, float]:
    """(the sum of each channel, the sum of squares of all samples), float64: float32 within
    short blocks (pairwise, exact enough), float64 across them."""
    sums = []
    for lane in lanes:
        whole = lane.size // step * step
        total = complex(lane[:whole].reshape(-1, step).sum(axis=1).sum(dtype=np.complex128))
        total += complex(lane[whole:].sum(dtype=np.complex128))
        sums += [total.real, total.imag] if np.iscomplexobj(lane) else [total.real]
    squares = float(sum(_block_squares(lane, step).sum() for lane in lanes))
    flat = data.reshape(-1)
    rest = flat[flat.size // (step * data.shape[1]) * step * data.shape[1] :]
    squares += float(np.dot(rest.astype(np.float64), rest))
    return np.asarray(sums), squares


#: K-weighting's two stages as analogue prototypes (libebur128's parameters): a high shelf
#: (centre Hz, gain dB, Q) and the RLB high-pass (corner Hz, Q). Through the bilinear transform
#: at 48 kHz they give BS.1770-4's tabulated coefficients to 1e-14; at other rates, the same
#: curve.
SHELF = (1681.974450955533, 3.999843853973347, 0.7071752369554196)
SHELF_BANDWIDTH = 0.4996667741545416
HIGHPASS = (38.13547087602444, 0.5003270373238773)


@lru_cache(maxsize=16)
def k_weighting(rate: int) -> np.ndarray:
    """BS.1770's K-weighting for ``rate`` as float32 second-order sections [2, 6]: the shelf,
    then the RLB high-pass."""
    centre, gain_db, q = SHELF
    k = math.tan(math.pi * centre / rate)
    high = 10 ** (gain_db / 20)
    band = high**SHELF_BANDWIDTH
    norm = 1 + k / q + k * k
    shelf = [
        (high + band * k / q + k * k) / norm,
        2 * (k * k - high) / norm,
        (high - band * k / q + k * k) / norm,
        1.0,
        2 * (k * k - 1) / norm,
        (1 - k / q + k * k) / norm,
    ]
    corner, q = HIGHPASS
    k = math.tan(math.pi * corner / rate)
    norm = 1 + k / q + k * k
    highpass = [1.0, -2.0, 1.0, 1.0, 2 * (k * k - 1) / norm, (1 - k / q + k * k) / norm]
    return np.asarray([shelf, highpass], dtype=np.float32)


def _loudness(lanes: list[np.ndarray], rate: int, frames: int) -> tuple[float | None, float | None]:
    """(integrated LUFS, loudness range LU); None where no block passes the absolute gate.

    400 ms blocks with 75 % overlap for the integrated loudness (BS.1770-4), 3 s windows every
    100 ms for the range (Tech 3342), both from 100 ms sub-block energies computed once."""
    step = rate // 10
    if frames < 4 * step:  # shorter than one gating block
        return None, None
    energies = _subblock_energies(lanes, rate, step)
    integrated = _integrated(_window_loudness(energies, 4))
    if integrated is None or integrated < ABSOLUTE_GATE_LUFS:
        return None, None
    return round(integrated, 2), _range(_window_loudness(energies, 30))


def _subblock_energies(lanes: list[np.ndarray], rate: int, step: int) -> np.ndarray:
    """K-weighted mean square of every 100 ms sub-block, summed over channels (float64)."""
    sections = k_weighting(rate)
    totals = np.zeros(lanes[0].size // step)
    for lane in lanes:
        weighted = sosfilt(sections.astype(lane.dtype), lane)
        totals += _block_squares(weighted, step)
    return totals / step


def _window_loudness(energies: np.ndarray, length: int) -> np.ndarray:
    """Loudness of every window of ``length`` sub-blocks, stepping one sub-block."""
    if energies.size < length:
        return np.empty(0)
    totals = np.cumsum(np.concatenate(([0.0], energies)))
    means = np.maximum((totals[length:] - totals[:-length]) / length, 0.0)
    with np.errstate(divide="ignore"):
        return np.asarray(-0.691 + 10 * np.log10(means))


def _energy(loudness: np.ndarray | float) -> np.ndarray:
    return np.power(10.0, (np.asarray(loudness, dtype=np.float64) + 0.691) / 10)


def _loudness_of(energy: float) -> float:
    return -0.691 + 10 * math.log10(energy)


def _histogram_bins(loudness: np.ndarray | float) -> np.ndarray:
    """The histogram bin of each loudness (at or above the absolute gate)."""
    scaled = np.floor((np.asarray(loudness) - ABSOLUTE_GATE_LUFS) * HISTOGRAM_GRAIN)
    return np.clip(scaled, 0, HISTOGRAM_BINS - 1).astype(np.intp)


def _integrated(loudness: np.ndarray) -> float | None:
    """BS.1770 gating through the histogram: blocks above the absolute gate (-70 LUFS) are
    counted into 0.01 LU bins with their energies; the relative gate, 10 LU under their power
    mean, keeps the bins from its own bin up."""
    above = loudness[loudness >= ABSOLUTE_GATE_LUFS]
    if not above.size:
        return None
    bins = _histogram_bins(above)
    energy = _energy(above)
    counts = np.bincount(bins, minlength=HISTOGRAM_BINS)
    energies = np.bincount(bins, weights=energy, minlength=HISTOGRAM_BINS)
    gate = int(_histogram_bins(_loudness_of(float(energy.mean())) - 10.0))
    kept = int(counts[gate:].sum())
    return _loudness_of(float(energies[gate:].sum()) / kept) if kept else None


def _range(short_term: np.ndarray) -> float:
    """Tech 3342 through the histogram: the spread between the 10th and 95th percentiles of
    short-term loudness above the absolute gate and 20 LU under their power mean, each read as
    the centre of the bin that holds it."""
    above = short_term[short_term >= ABSOLUTE_GATE_LUFS]
    if not above.size:
        return 0.0
    counts = np.bincount(_histogram_bins(above), minlength=HISTOGRAM_BINS)
    gate = int(_histogram_bins(_loudness_of(float(_energy(above).mean())) - 20.0))
    cumulative = np.cumsum(counts[gate:])
    kept = int(cumulative[-1]) if cumulative.size else 0
    if not kept:
        return 0.0
    low_rank, high_rank = (int((kept - 1) * share + 0.5) for share in (0.10, 0.95))
    low, high = np.searchsorted(cumulative, [low_rank + 1, high_rank + 1])
    return round(float(high - low) / HISTOGRAM_GRAIN, 2)


@lru_cache(maxsize=1)
def interpolator() -> tuple[np.ndarray, float]:
    """(the three fractional phases of the 4x interpolator as float32 [3, 12], each reversed to
    apply to a window of 12 frames oldest first; the largest sum of |taps| of a phase, the most
    an interpolated value can exceed the largest sample in its window)."""
    index = np.arange(TRUE_PEAK_TAPS)
    offset = (index - (TRUE_PEAK_TAPS - 1) / 2) / TRUE_PEAK_OVERSAMPLING
    window = 0.5 * (1 - np.cos(2 * np.pi * index / (TRUE_PEAK_TAPS - 1)))
    taps = np.sinc(offset) * window
    per_phase = (TRUE_PEAK_TAPS - 1) // TRUE_PEAK_OVERSAMPLING
    phases = np.stack(
        [taps[p::TRUE_PEAK_OVERSAMPLING][:per_phase] for p in range(1, TRUE_PEAK_OVERSAMPLING)]
    )
    return phases[:, ::-1].astype(np.float32), float(np.abs(phases).sum(axis=1).max())


def true_peak(samples: np.ndarray, rate: int, *, sample_peak: float | None = None) -> float:
    """The peak of ``samples`` ([frames, channels]) oversampled four times (linear, not dB).

    The interpolator does not depend on ``rate``; BS.1770 asks for 4x below 96 kHz."""
    data, _ = _clean(samples)
    if not data.size:
        return 0.0
    peak = max(float(data.max()), -float(data.min())) if sample_peak is None else sample_peak
    return _true_peak(_lanes(data), peak)


def _true_peak(lanes: list[np.ndarray], peak: float) -> float:
    """The 4x true peak of ``lanes`` (see :func:`_lanes`) whose sample peak is ``peak``.

    An interpolated value is at most the largest of the 12 samples under the filter times the
    phase's sum of |taps|, so only stretches of TRUE_PEAK_BLOCK frames holding a sample that
    could beat ``peak`` that way, and their neighbours, are interpolated: a few percent of a
    typical stem. Phase 0 is the samples themselves, whose peak is ``peak``."""
    if peak <= 0.0:
        return 0.0
    phases, gain = interpolator()
    taps, block = phases.shape[1], TRUE_PEAK_BLOCK
    # The frames under one block's windows: each window ends the interval before a frame of
    # the block, from 6 frames before the block to 5 after it.
    reach = np.arange(block + taps - 1, dtype=np.intp) - taps // 2
    found = peak
    for lane in lanes:
        # Blocks up to the last interval the signal reaches (zeros after it), as bit masks:
        # a block is loud when any of its samples could beat ``found``.
        reals = _reals(lane)
        width = block * (reals.size // lane.size)  # samples per block: 16 or 32
        count = -(-(lane.size + taps // 2) // block)
        loud_samples = np.zeros(count * width, dtype=np.bool_)
        np.greater(np.abs(reals), found / gain, out=loud_samples[: reals.size])
        words = loud_samples.view(np.uint64).reshape(count, width // 8)
        loud = np.bitwise_or.reduce(words, axis=1) != 0
        if not loud.any():
            continue
        candidates = loud.copy()
        candidates[1:] |= loud[:-1]
        candidates[:-1] |= loud[1:]
        starts = np.flatnonzero(candidates) * block
        for first in range(0, starts.size, 8192):
            index = reach[:, None] + starts[first : first + 8192]  # [frames, blocks]
            outside = (index < 0) | (index >= lane.size)
            frames = lane[np.clip(index, 0, lane.size - 1)]
            frames[outside] = 0.0  # silence before and after the signal
            for phase in phases:
                found = max(found, _phase_peak(frames, phase, block))
    return found


def _phase_peak(frames: np.ndarray, phase: np.ndarray, block: int) -> float:
    """The largest |value| of one interpolator phase over gathered ``frames``
    ([block + taps - 1, blocks], float32 or complex64), multiply-adds over whole rows."""
    values = frames[:block] * phase[0]
    scratch = np.empty_like(values)
    for k in range(1, phase.size):
        np.multiply(frames[k : k + block], phase[k], out=scratch)
        values += scratch
    reals = _reals(values)
    return max(float(reals.max()), -float(reals.min()))


def _clipped_samples(data: np.ndarray) -> int:
    """Samples in runs of at least CLIP_RUN at full scale, over all channels."""
    total = 0
    for channel in data.T:
        at_full = np.abs(channel) >= CLIP_LEVEL
        if not at_full.any():
            continue
        edges = np.diff(np.concatenate(([0], at_full.astype(np.int8), [0])))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        runs = ends - starts
        total += int(runs[runs >= CLIP_RUN].sum())
    return total
