"""Stems against their source: same track, same length, and (for a full split) the same sum.

Both sides are brought to one analysis rate and to mono with ``soxr``. The offset of a stem is
the lag of the peak of its cross-spectrum with the source over the first WINDOW_S seconds (an
MP3 stem starts late by its encoder delay, about 1,105 samples). A stem's duration, less that
offset, must match the source's within a tolerance that allows MP3 delay and padding. The
remix check sums the stems, aligns the sum with the source below a sample, and reports how
much of the source they leave unexplained, in dB.

Whether a stem belongs to the source at all is told by ``match_score``, a number in [0, 1].
The agreement at a lag is the cross-spectrum S·M* turned by that lag, each frequency weighed by
sqrt(|S||M|) (see WHITEN), normalised to 1 when every frequency of the stem is a share of the
same frequency of the source: a band, a gain, a mask, which is what separation does. Its peak
alone does not separate a stem of the source from a foreign one: a stem made of a few steady
tones reaches 0.5 to 0.9 against any source with those tones, at some lag, whatever their
phases. So the same peak is also found for the stem played backwards (the same magnitude
spectrum, its phases no longer tied to the source's): the null. The excess of the true peak
over the null, as a share of what the null leaves, ``(peak - null) / (1 - null)``, is 0.24 to
1 for stems of their source on the labelled set of ``benchmarks/validation.py`` and 0.13 at
most for foreign ones; ``match_score`` is that excess over FULL_EXCESS, capped at 1, and a
stem scoring under MATCH_SCORE is ``stem_not_of_source``. Content below HIGHPASS_HZ (a DC
offset, rumble) is left out: it agrees at every lag.

A stem whose every tone repeats within the searched offsets (a steady hum, a loop shorter
than a second) has nothing to tell its source by and scores near 0, as a foreign one does.
One kind is common enough to be told apart: a stem that is mostly sub-bass (half of its energy
or more under IDENTIFY_HZ, such as an "other" of a split whose bands took everything above
40 Hz). It gets no verdict: its best alignment is reported, ``match_score`` is None (as for a
silent stem), and no problem is raised, so it is neither called foreign nor said to be of the
source.

The join step of a split job (the remix check, the comparison with the source) may run apart
from the hosts that decode the stems: :class:`AnalysisPrint` is what it needs of one signal,
small and storable (:func:`analysis_print`, :meth:`AnalysisPrint.to_bytes`), with
:func:`compare_prints` and :func:`remix_residual_db_of_prints` working on prints.
"""

from __future__ import annotations

import io
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import soxr
from scipy.optimize import minimize_scalar

from vidgo_stems.sound.decode import mono as mono_of

#: High enough to keep a drums band (5 kHz and up) in view, low enough to keep six stems of a
#: long track in memory as float32.
ANALYSIS_RATE = 16000
#: A stem this far below the source (in energy) is too quiet to tell whose it is.
QUIET_DB = -50.0
#: Lags searched for a stem's offset against the source.
MAX_OFFSET_S = 0.5
#: Seconds of each side compared for the offset (enough to lock on, cheap to correlate).
WINDOW_S = 30.0
#: A stem of its source scores this much or more (0.48 and up on the labelled set, a weak
#: or truncated band of it included); a foreign stem less (0.26 at most on that set).
MATCH_SCORE = 0.35
#: An MP3 frame (the unit of its delay and padding), in samples.
MP3_FRAME = 1152
#: Frequencies below this take no part in the match (they agree at every lag).
HIGHPASS_HZ = 20.0
#: A stem with less than IDENTIFIABLE_SHARE of its energy above IDENTIFY_HZ is sub-bass: too
#: little left to tell whose it is.
IDENTIFY_HZ = 45.0
IDENTIFIABLE_SHARE = 0.5
#: Each frequency's share of the agreement is |S||M| to this power (1 - WHITEN): a few loud
#: steady tones no longer outweigh everything else the two signals have in common.
WHITEN = 0.5
#: An excess over the null this large or larger scores 1.
FULL_EXCESS = 0.5


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
    """(lag in analysis samples by which the stem is late, match score in [0, 1]), over the
    first WINDOW_S seconds of each; the score is described in the module's docstring."""
    window = int(WINDOW_S * ANALYSIS_RATE)
    lag, peak, null = _agreement(stem[:window], source[:window])
    return lag, _score(peak, null)


def _score(peak: float, null: float) -> float:
    if peak <= null or null >= 1.0:
        return 0.0
    return round(min(1.0, (peak - null) / (1.0 - null) / FULL_EXCESS), 3)


def _agreement(a: np.ndarray, b: np.ndarray, *, null: bool = True) -> tuple[int, float, float]:
    """(best lag, agreement at it, best agreement of ``a`` played backwards, or 0 without
    ``null``) of ``a`` against ``b``, over lags of up to MAX_OFFSET_S either way."""
    if not a.size or not b.size or not np.any(a) or not np.any(b):
        return 0, 0.0, 0.0
    size = 1 << math.ceil(math.log2(a.size + b.size))
    keep = np.fft.rfftfreq(size, 1 / ANALYSIS_RATE) >= HIGHPASS_HZ
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    spec_b = np.conj(np.fft.rfft(b64, size)) * keep
    limit = int(MAX_OFFSET_S * ANALYSIS_RATE)
    found = []
    for signal in (a64, a64[::-1]) if null else (a64,):
        cross = np.fft.rfft(signal, size) * spec_b
        weight = np.abs(cross)
        if WHITEN:
            cross /= np.maximum(weight, 1e-30) ** WHITEN
            weight **= 1 - WHITEN
        norm = float(np.sum(weight)) or 1e-12
        corr = np.fft.irfft(cross, size) * (size / 2) / norm
        lags = np.concatenate((corr[: limit + 1], corr[-limit:]))  # 0..limit, -limit..-1
        best = int(np.argmax(lags))
        found.append((best if best <= limit else best - len(lags), float(lags[best])))
    (lag, peak), (_, backwards) = found if null else (found[0], (0, 0.0))
    return lag, peak, max(backwards, 0.0)


def compare(stem: np.ndarray, rate: int, source: np.ndarray, source_duration_s: float) -> StemCheck:
    """Check one stem (its analysis signal, and its own rate for the tolerance) against the
    source's analysis signal."""
    window = int(WINDOW_S * ANALYSIS_RATE)
    return _check(
        stem[:window],
        stem.shape[0],
        _energy(stem),
        rate,
        source[:window],
        _energy(source),
        source_duration_s,
    )


def _check(
    stem: np.ndarray,
    stem_frames: int,
    stem_energy: float,
    rate: int,
    source: np.ndarray,
    source_energy: float,
    source_duration_s: float,
) -> StemCheck:
    """The verdict on a stem from the first WINDOW_S of both analysis signals, the stem's length
    and both mean energies (all a print holds)."""
    if stem_energy <= 0 or source_energy <= 0:
        return StemCheck(None, None, None, [])
    if 10 * math.log10(stem_energy / source_energy) < QUIET_DB:
        return StemCheck(None, None, None, [])  # silent: nothing to tell its source by
    lag, peak, null = _agreement(stem, source)
    score = _score(peak, null)
    offset_s = lag / ANALYSIS_RATE
    delta_s = (stem_frames / ANALYSIS_RATE - offset_s) - source_duration_s
    if _share_above(stem, IDENTIFY_HZ) < IDENTIFIABLE_SHARE:
        # Sub-bass: nothing to tell whose it is. The best alignment is reported, no verdict.
        return StemCheck(round(offset_s, 4), round(delta_s, 4), None, [])
    problems = []
    if score < MATCH_SCORE:
        problems.append("stem_not_of_source")
    else:
        tolerance = duration_tolerance_s(rate)
        if delta_s < -tolerance:
            problems.append("stem_truncated")
        elif delta_s > tolerance:
            problems.append("stem_too_long")
    return StemCheck(round(offset_s, 4), round(delta_s, 4), score, problems)


def _share_above(signal: np.ndarray, low_hz: float) -> float:
    """The share of ``signal``'s energy at ``low_hz`` and above (Parseval, on its spectrum)."""
    if not signal.size:
        return 0.0
    power = np.abs(np.fft.rfft(signal.astype(np.float64))) ** 2
    total = float(np.sum(power))
    if total <= 0:
        return 0.0
    above = np.fft.rfftfreq(signal.size, 1 / ANALYSIS_RATE) >= low_hz
    return float(np.sum(power[above])) / total


def _energy(signal: np.ndarray) -> float:
    return float(np.mean(np.square(signal, dtype=np.float64))) if signal.size else 0.0


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
    total = np.zeros(max(len(s) for s in stems), dtype=np.float64)
    for signal in stems:
        total[: len(signal)] += signal
    return _residual_db(total, mix.astype(np.float64))


def _residual_db(total: np.ndarray, mix: np.ndarray) -> float | None:
    energy = float(np.sum(np.square(mix)))
    if energy == 0.0:
        return None
    window = int(WINDOW_S * ANALYSIS_RATE)
    lag, _, _ = _agreement(total[:window], mix[:window], null=False)
    delay = _refined_delay(total, mix, lag)
    size = 1 << math.ceil(math.log2(max(len(total), len(mix)) + abs(lag) + 2))
    spectrum = np.fft.rfft(total, size) * _advance(size, delay)
    aligned = np.fft.irfft(spectrum, size)[: len(mix)]
    residual = float(np.sum(np.square(mix - aligned)))
    return round(10 * math.log10(residual / energy), 2) if residual > 0 else -200.0


# -- prints: what the join step needs of a signal -------------------------------------------

#: Seconds of the analysis signal a print keeps: the compared window and room for the largest
#: offset after it, so a late stem still covers the whole window of the source.
PRINT_S = WINDOW_S + MAX_OFFSET_S


@dataclass(frozen=True)
class AnalysisPrint:
    """What the checks need of one signal, made once where it is decoded: the first PRINT_S
    seconds of its analysis signal (float16), its length at ANALYSIS_RATE, its mean energy
    there, its own sample rate and duration. About 1 MB whatever the signal's length.

    :func:`compare_prints` gives the same verdict, offset and score (to within float16
    rounding) as :func:`compare` on the whole analysis signals. :func:`remix_residual_db_of_prints`
    measures the residual over the first WINDOW_S seconds: the same number as
    :func:`remix_residual_db` for a track of up to WINDOW_S, an estimate from its first
    WINDOW_S for a longer one.
    """

    head: np.ndarray
    frames: int
    energy: float
    rate: int
    duration_s: float

    def to_bytes(self) -> bytes:
        """An ``.npz`` (deflated, no pickle) of the print."""
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer,
            head=np.asarray(self.head, dtype="<f2"),
            frames=np.int64(self.frames),
            energy=np.float64(self.energy),
            rate=np.int64(self.rate),
            duration_s=np.float64(self.duration_s),
            analysis_rate=np.int64(ANALYSIS_RATE),
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> AnalysisPrint:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            if int(archive["analysis_rate"]) != ANALYSIS_RATE:
                raise ValueError("a print made at another analysis rate")
            return cls(
                head=np.asarray(archive["head"], dtype=np.float16),
                frames=int(archive["frames"]),
                energy=float(archive["energy"]),
                rate=int(archive["rate"]),
                duration_s=float(archive["duration_s"]),
            )


def analysis_print(samples: np.ndarray, rate: int) -> AnalysisPrint:
    """The print of a decoded signal ([frames, channels] at ``rate``)."""
    return print_of_analysis(analysis_signal(samples, rate), rate, samples.shape[0] / rate)


def print_of_analysis(analysis: np.ndarray, rate: int, duration_s: float) -> AnalysisPrint:
    """The print of an analysis signal already made (``rate`` and ``duration_s`` are those of
    the signal it was made from)."""
    head = np.asarray(analysis[: int(PRINT_S * ANALYSIS_RATE)], dtype=np.float16)
    return AnalysisPrint(head, int(analysis.shape[0]), _energy(analysis), rate, duration_s)


def compare_prints(stem: AnalysisPrint, source: AnalysisPrint) -> StemCheck:
    """:func:`compare` on prints."""
    window = int(WINDOW_S * ANALYSIS_RATE)
    return _check(
        stem.head[:window].astype(np.float32),
        stem.frames,
        stem.energy,
        stem.rate,
        source.head[:window].astype(np.float32),
        source.energy,
        source.duration_s,
    )


def remix_residual_db_of_prints(stems: list[AnalysisPrint], mix: AnalysisPrint) -> float | None:
    """:func:`remix_residual_db` on prints, over the first WINDOW_S seconds of the source."""
    if not stems or not mix.head.size:
        return None
    total = np.zeros(max(s.head.size for s in stems), dtype=np.float64)
    for each in stems:
        total[: each.head.size] += each.head
    window = int(WINDOW_S * ANALYSIS_RATE)
    return _residual_db(total, mix.head[:window].astype(np.float64))


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
