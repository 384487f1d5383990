"""Stems against their source: same track, same length, and (for a full split) the same sum.

Both sides are brought to one analysis rate and to mono with ``soxr``. The offset of a stem is
the lag of the peak of its cross-spectrum with the source (an MP3 stem starts late by its
encoder delay, about 1,105 samples), and how well the two agree at that lag says whether the
stem belongs to this source at all (see :func:`offset_of`). A stem's duration, less that
offset, must match the source's within a tolerance that allows MP3 delay and padding. The
remix check sums the stems, aligns the sum with the source below a sample, and reports how
much of the source they leave unexplained, in dB.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import soxr
from scipy.optimize import minimize_scalar

from worker.sound.decode import mono as mono_of

#: High enough to keep a drums band (5 kHz and up) in view, low enough to keep six stems of a
#: long track in memory as float32.
ANALYSIS_RATE = 16000
#: A stem this far below the source (in energy) is too quiet to tell whose it is.
QUIET_DB = -50.0
#: Lags searched for a stem's offset against the source.
MAX_OFFSET_S = 0.5
#: Seconds of each side compared for the offset (enough to lock on, cheap to correlate).
WINDOW_S = 30.0
#: A stem scores this much or more against the source it was separated from (a stem of
#: another track scores about 0.1 to 0.2, a weak "other" of its own track about 0.4).
MATCH_SCORE = 0.3
#: An MP3 frame (the unit of its delay and padding), in samples.
MP3_FRAME = 1152


@dataclass(frozen=True)
class StemCheck:
    """What validation found for one stem; ``problems`` hold stable codes."""

    offset_vs_source_s: float | None
    duration_delta_s: float | None
    match_score: float | None
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def analysis_signal(samples: np.ndarray, rate: int) -> np.ndarray:
    """Mono at ANALYSIS_RATE, float32."""
    mono: np.ndarray = mono_of(samples)
    if rate == ANALYSIS_RATE:
        return mono
    resampled: np.ndarray = np.asarray(
        soxr.resample(mono, rate, ANALYSIS_RATE, quality="HQ"), dtype=np.float32
    )
    return resampled


def duration_tolerance_s(rate: int) -> float:
    """Room for MP3 delay and padding (three frames at the stem's rate), and at least 50 ms."""
    return max(0.05, 3 * MP3_FRAME / max(rate, 1))


def offset_of(stem: np.ndarray, source: np.ndarray) -> tuple[int, float]:
    """(lag in analysis samples by which the stem is late, match score in [0, 1]).

    The score is the cross-spectrum S·M* at the best lag, normalised by Σ|S||M|: 1 when every
    frequency of the stem is a share of the same frequency of the source (a band, a gain, a
    mask: what separation does), near 0 when their phases are unrelated (another track).
    """
    window = int(WINDOW_S * ANALYSIS_RATE)
    a, b = stem[:window], source[:window]
    if not a.size or not b.size or not np.any(a) or not np.any(b):
        return 0, 0.0
    size = 1 << math.ceil(math.log2(a.size + b.size))
    spec_a, spec_b = np.fft.rfft(a, size), np.fft.rfft(b, size)
    cross = spec_a * np.conj(spec_b)
    norm = float(np.sum(np.abs(spec_a) * np.abs(spec_b))) or 1e-12
    corr = np.fft.irfft(cross, size) * (size / 2) / norm
    limit = int(MAX_OFFSET_S * ANALYSIS_RATE)
    lags = np.concatenate((corr[: limit + 1], corr[-limit:]))  # lags 0..limit, -limit..-1
    best = int(np.argmax(lags))
    lag = best if best <= limit else best - len(lags)
    return lag, round(float(lags[best]), 3)


def compare(stem: np.ndarray, rate: int, source: np.ndarray, source_duration_s: float) -> StemCheck:
    """Check one stem (its analysis signal, and its own rate for the tolerance) against the
    source's analysis signal."""
    lag, score = offset_of(stem, source)
    offset_s = lag / ANALYSIS_RATE
    delta_s = (stem.shape[0] / ANALYSIS_RATE - offset_s) - source_duration_s
    problems = []
    if _level_db(stem, source) < QUIET_DB:
        return StemCheck(None, None, None, [])  # silent: nothing to tell its source by
    if score < MATCH_SCORE:
        problems.append("stem_not_of_source")
    else:
        tolerance = duration_tolerance_s(rate)
        if delta_s < -tolerance:
            problems.append("stem_truncated")
        elif delta_s > tolerance:
            problems.append("stem_too_long")
    return StemCheck(round(offset_s, 4), round(delta_s, 4), score, problems)


def _level_db(stem: np.ndarray, source: np.ndarray) -> float:
    stem_energy = float(np.mean(np.square(stem, dtype=np.float64))) if stem.size else 0.0
    source_energy = float(np.mean(np.square(source, dtype=np.float64))) if source.size else 0.0
    if stem_energy <= 0 or source_energy <= 0:
        return -math.inf
    return 10 * math.log10(stem_energy / source_energy)


def remix_residual_db(stems: list[np.ndarray], mix: np.ndarray) -> float | None:
    """How much of the source the stems leave unexplained: 10*log10(energy of (source - sum of
    stems) / energy of source), on analysis signals.

    The stems of one separation share one timeline, so they are summed as they are and the sum
    is aligned with the source once. The alignment is refined below a sample: an MP3 delay of
    1,105 samples at 44.1 kHz is 400.9 analysis samples, and half a sample off is enough to
    leave -15 dB of a mix unexplained where the stems really sum to it.
    """
    if not stems or not mix.size:
        return None
    energy = float(np.sum(np.square(mix, dtype=np.float64)))
    if energy == 0.0:
        return None
    total = np.zeros(max(len(s) for s in stems), dtype=np.float64)
    for signal in stems:
        total[: len(signal)] += signal
    lag, _ = offset_of(total.astype(np.float32), mix)
    delay = _refined_delay(total, mix, lag)
    size = 1 << math.ceil(math.log2(max(len(total), len(mix)) + abs(lag) + 2))
    spectrum = np.fft.rfft(total, size) * _advance(size, delay)
    aligned = np.fft.irfft(spectrum, size)[: len(mix)]
    residual = float(np.sum(np.square(mix - aligned)))
    return round(10 * math.log10(residual / energy), 2) if residual > 0 else -200.0


def _advance(size: int, delay: float) -> np.ndarray:
    """The spectrum factor that moves a signal ``delay`` samples earlier."""
    advance: np.ndarray = np.exp(2j * np.pi * np.fft.rfftfreq(size) * delay)
    return advance


def _refined_delay(total: np.ndarray, mix: np.ndarray, lag: int) -> float:
    """The delay of ``total`` against ``mix``, within a sample of ``lag``, that leaves the least
    residual over the first WINDOW_S seconds (found on their spectra, no resampling)."""
    window = int(WINDOW_S * ANALYSIS_RATE)
    a, b = total[: window + abs(lag)], mix[:window]
    size = 1 << math.ceil(math.log2(max(len(a), len(b)) + abs(lag) + 2))
    spec_a, spec_b = np.fft.rfft(a, size), np.fft.rfft(b, size)
    freqs = np.fft.rfftfreq(size)

    def residual(delay: float) -> float:
        diff = spec_b - spec_a * np.exp(2j * np.pi * freqs * delay)
        return float(np.sum(np.abs(diff) ** 2))

    found = minimize_scalar(residual, bounds=(lag - 1.0, lag + 1.0), method="bounded")
    return float(found.x)
