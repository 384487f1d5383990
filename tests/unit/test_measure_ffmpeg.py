"""Our levels against ffmpeg's ``ebur128=peak=true`` on the same files: true peak within 0.2 dB,
integrated loudness within 0.1 LU, on known signals and on real MP3 stems. Also the pieces the
fast path is made of: the interpolator, the choice of stretches to oversample, the 24-bit PCM
handed to libsndfile, the waveform from a mono mix made once."""

from __future__ import annotations

import math
import re
import subprocess
from pathlib import Path

import imageio_ffmpeg  # the dev extra installs it: these tests never skip for want of ffmpeg
import numpy as np
import pytest
import soundfile as sf

from vidgo_stems.emulator import audio as emulator_audio
from vidgo_stems.devstack import tracks
from vidgo_stems.sound.decode import read_audio
from vidgo_stems.sound.deliver import Delivery, convert, pcm24
from vidgo_stems.sound.measure import _lanes, _true_peak, interpolator, measure
from vidgo_stems.sound.peaks import peaks, peaks_of_mono

RATE = 48_000
STEMS = ["bass", "drums", "piano", "guitar", "vocals", "other"]


def ffmpeg_levels(path: Path) -> tuple[float, float]:
    """(integrated LUFS, true peak dBTP) as ffmpeg's ebur128 filter measures ``path``: the
    integrated loudness from the filter's last metadata (three decimals), the true peak from
    its summary (dBFS, one decimal)."""
    meta = path.with_suffix(".r128.txt")
    run = subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(),
            "-nostdin",
            "-hide_banner",
            "-i",
            str(path),
            "-af",
            f"ebur128=peak=true:metadata=1,ametadata=mode=print:file={meta}",
            "-f",
            "null",
            "-",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    integrated = float(re.findall(r"lavfi\.r128\.I=(-?[\d.]+)", meta.read_text())[-1])
    peak = float(re.findall(r"Peak:\s+(-?[\d.]+|-inf) dBFS", run.stderr)[-1])
    return integrated, peak


def sine(freq: float, seconds: float, *, dbfs: float, channels: int = 2, phase: float = 0.0):
    t = np.arange(int(seconds * RATE)) / RATE
    tone = np.sin(2 * np.pi * freq * t + phase) * 10 ** (dbfs / 20)
    return np.repeat(tone[:, None], channels, axis=1)


def pink(seconds: float, *, rms_dbfs: float, seed: int = 5) -> np.ndarray:
    n = int(seconds * RATE)
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal((n, 2)), axis=0)
    freqs = np.fft.rfftfreq(n, 1 / RATE)
    spectrum[1:] /= np.sqrt(freqs[1:, None])
    spectrum[(freqs < 20) | (freqs > 20_000)] = 0
    noise = np.fft.irfft(spectrum, n, axis=0)
    return noise * 10 ** (rms_dbfs / 20) / np.sqrt(np.mean(noise**2))


def tech_3341_like() -> np.ndarray:
    """Tech 3341 case 3, shortened: a stereo 1 kHz tone at -36, -23, -36 dBFS (5, 20, 5 s);
    the gates leave -23 LUFS."""
    return np.concatenate(
        [sine(1000, 5, dbfs=-36), sine(1000, 20, dbfs=-23), sine(1000, 5, dbfs=-36)]
    )


SIGNALS = {
    "sine 100 Hz -6 dBFS": lambda: sine(100, 8, dbfs=-6),
    "sine 997 Hz -20 dBFS mono": lambda: sine(997, 8, dbfs=-20, channels=1),
    "sine 3 kHz -1 dBFS": lambda: sine(3000, 8, dbfs=-1),
    "sine 10 kHz -12 dBFS": lambda: sine(10_000, 8, dbfs=-12),
    "sine 15 kHz -30 dBFS": lambda: sine(15_000, 8, dbfs=-30),
    "pink noise -20 dBFS": lambda: pink(10, rms_dbfs=-20),
    "white noise -30 dBFS": lambda: (
        np.random.default_rng(9).standard_normal((RATE * 8, 2)) * 10 ** (-30 / 20)
    ),
    "Tech 3341-like -23 LUFS": tech_3341_like,
    # Every sample at 0.707 of a peak that falls between them (Tech 3341 case 15-like).
    "inter-sample peak fs/4": lambda: sine(RATE / 4, 8, dbfs=-3, phase=np.pi / 4),
}


def faded(samples: np.ndarray, seconds: float = 0.02) -> np.ndarray:
    """``samples`` with raised-cosine fades in and out. A signal cut off mid-wave has a true
    peak of its own at the cut (the Gibbs overshoot of its band-limited reconstruction, up to
    9 %), which each interpolator renders by its own length: ffmpeg's resampler reads a 10 kHz
    tone ended mid-wave 0.8 dB over its level, libebur128's filter 0.4 dB. Fades leave the
    signal's own peaks to compare."""
    n = int(seconds * RATE)
    ramp = (0.5 - 0.5 * np.cos(np.linspace(0, np.pi, n)))[:, None]
    out = samples.copy()
    out[:n] *= ramp
    out[-n:] *= ramp[::-1]
    return out


@pytest.mark.parametrize("name", list(SIGNALS))
def test_levels_of_known_signals_agree_with_ffmpeg(tmp_path, name):
    samples = faded(np.asarray(SIGNALS[name](), dtype=np.float64)).astype(np.float32)
    path = tmp_path / "signal.wav"
    sf.write(str(path), samples, RATE, subtype="FLOAT")  # ffmpeg reads the very same floats
    integrated, peak = ffmpeg_levels(path)
    levels = measure(samples, RATE)
    assert levels.loudness_lufs == pytest.approx(integrated, abs=0.1)
    assert levels.true_peak_dbtp == pytest.approx(peak, abs=0.2)


@pytest.fixture(scope="module")
def mp3_stems(tmp_path_factory) -> list[Path]:
    """A 15 s track split into six MP3 stems, as the emulator serves them."""
    folder = tmp_path_factory.mktemp("stems")
    source = tracks.write_track(folder / "source.wav", "groove", seconds=15, rate=44_100)
    samples, rate = sf.read(str(source), dtype="float32", always_2d=True)
    paths = []
    for name, data in emulator_audio.split(samples, rate, STEMS, "base", "mp3").items():
        path = folder / f"{name}.mp3"
        path.write_bytes(data)
        paths.append(path)
    return paths


@pytest.mark.parametrize("index", range(len(STEMS)), ids=STEMS)
def test_levels_of_real_mp3_stems_agree_with_ffmpeg(mp3_stems, index):
    path = mp3_stems[index]
    integrated, peak = ffmpeg_levels(path)
    decoded = read_audio(path)
    levels = measure(decoded.samples, decoded.rate)
    assert levels.loudness_lufs is not None and integrated > -70
    assert levels.loudness_lufs == pytest.approx(integrated, abs=0.1)
    assert levels.true_peak_dbtp == pytest.approx(peak, abs=0.2)


# -- the pieces -----------------------------------------------------------------------------


def test_the_interpolator_is_libebur128s_four_phase_design():
    phases, gain = interpolator()
    assert phases.shape == (3, 12) and phases.dtype == np.float32
    # Each phase passes DC at unit gain, the middle one is symmetric, the outer two mirror.
    np.testing.assert_allclose(phases.sum(axis=1), 1.0, atol=2e-3)
    np.testing.assert_allclose(phases[1], phases[1][::-1], atol=1e-7)
    np.testing.assert_allclose(phases[0], phases[2][::-1], atol=1e-7)
    assert 1.8 < gain < 1.9


def brute_true_peak(samples: np.ndarray) -> float:
    """Every phase of the interpolator over every frame (zeros around the signal)."""
    phases, _ = interpolator()
    found = float(np.abs(samples).max())
    for channel in samples.T:
        padded = np.concatenate((np.zeros(12), channel, np.zeros(12)))
        for phase in phases.astype(np.float64):
            found = max(found, float(np.abs(np.convolve(padded, phase[::-1], "valid")).max()))
    return found


@pytest.mark.parametrize("channels", [1, 2, 3])
def test_oversampling_only_the_loud_stretches_finds_the_same_true_peak_as_oversampling_all(
    channels,
):
    rng = np.random.default_rng(4)
    samples = (rng.standard_normal((20_000, channels)) * 0.05).astype(np.float32)
    # Inter-sample peaks at block edges, near the start and at the very end, in one channel.
    for at in (3, 15, 16, 4_095, 10_001, 19_998):
        samples[at : at + 2, channels - 1] = (0.6, 0.6)
    data = np.ascontiguousarray(samples)
    found = _true_peak(_lanes(data), float(np.abs(data).max()))
    assert found == pytest.approx(brute_true_peak(data), rel=1e-5)
    assert found > 0.7  # well above the 0.6 of the samples


def test_24_bit_pcm_handed_to_libsndfile_writes_the_same_flac_as_its_float_conversion(tmp_path):
    rng = np.random.default_rng(1)
    edges = np.array([1.0, -1.0, 0.99999994, -0.99999994, 0.5 / 2**23, 1.5 / 2**23, 0.0])
    signal = np.concatenate((edges, rng.uniform(-1, 1, 50_000))).astype(np.float32)
    samples = np.stack((signal, signal[::-1]), axis=1)
    ours, theirs = tmp_path / "ours.flac", tmp_path / "theirs.flac"
    convert(samples, 44_100, Delivery(format="flac"), ours)
    sf.write(str(theirs), samples, 44_100, format="FLAC", subtype="PCM_24")
    a = sf.read(str(ours), dtype="int32")[0]
    b = sf.read(str(theirs), dtype="int32")[0]
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(pcm24(samples) >> 8, b >> 8)


@pytest.mark.parametrize("frames", [0, 1, 881, 882, 44_100, 44_101])
def test_peaks_from_a_mono_mix_made_once_match_peaks_from_the_samples(frames):
    samples = np.random.default_rng(2).uniform(-1, 1, (frames, 2)).astype(np.float32)
    mono = samples.mean(axis=1, dtype=np.float32)
    per_pixel, pairs = peaks(samples, 44_100, 50)
    same_per_pixel, same_pairs = peaks_of_mono(mono, 44_100, 50)
    assert per_pixel == same_per_pixel == 882
    np.testing.assert_array_equal(pairs, same_pairs)
    assert len(pairs) == max(1, math.ceil(frames / 882))


def test_three_and_four_channels_add_up_like_one():
    one = measure(sine(997, 5, dbfs=-20, channels=1), RATE).loudness_lufs
    three = measure(sine(997, 5, dbfs=-20, channels=3), RATE).loudness_lufs
    four = measure(sine(997, 5, dbfs=-20, channels=4), RATE).loudness_lufs
    assert three == pytest.approx(one + 10 * math.log10(3), abs=0.02)
    assert four == pytest.approx(one + 10 * math.log10(4), abs=0.02)
