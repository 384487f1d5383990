"""Short real music tracks for the demo and the tests: bass, drums, a melody and a voice-like part.

Each part sits in its own frequency range (bass 55-110 Hz, kick and hats, melody 440-880 Hz,
a formant-shaped voice around 180 Hz), so a separation has something real to separate.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

BEAT_S = 0.5


def _notes(t: np.ndarray, freqs: list[float], step_s: float) -> np.ndarray:
    index = (t // step_s).astype(int) % len(freqs)
    picked: np.ndarray = np.asarray(freqs, dtype=np.float64)[index]
    return picked


def _phase(freq: np.ndarray, rate: int) -> np.ndarray:
    phase: np.ndarray = 2 * np.pi * np.cumsum(freq) / rate
    return phase


def bass(t: np.ndarray, rate: int) -> np.ndarray:
    freq = _notes(t, [55.0, 65.4, 73.4, 82.4], BEAT_S * 2)
    tone: np.ndarray = np.sin(_phase(freq, rate)) * 0.5
    return tone


def drums(t: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    beat = t % BEAT_S
    kick = np.sin(2 * np.pi * 50.0 * beat) * np.exp(-beat * 25.0)
    off = (t + BEAT_S / 2) % BEAT_S
    noise = rng.standard_normal(t.size)
    hats = np.diff(noise, prepend=0.0) * np.exp(-off * 60.0) * 0.25
    return kick * 0.8 + hats


def melody(t: np.ndarray, rate: int) -> np.ndarray:
    freq = _notes(t, [440.0, 523.3, 659.3, 880.0, 659.3, 523.3], BEAT_S)
    phase = _phase(freq, rate)
    envelope = np.exp(-(t % BEAT_S) * 3.0)
    tone = np.zeros_like(t)
    for k in range(1, 5):
        tone += np.sin(phase * k) / k
    out: np.ndarray = tone * envelope * 0.3
    return out


def voice(t: np.ndarray, rate: int) -> np.ndarray:
    vibrato = 1.0 + 0.015 * np.sin(2 * np.pi * 5.5 * t)
    phase = _phase(np.full(t.size, 180.0) * vibrato, rate)
    out = np.zeros_like(t)
    for k in range(1, 16):
        freq = 180.0 * k
        weight = sum(np.exp(-(((freq - f) / 150.0) ** 2)) for f in (700.0, 1200.0, 2600.0))
        out += np.sin(phase * k) * weight
    syllables = 0.5 + 0.5 * np.sin(2 * np.pi * 2.0 * t) ** 2
    shaped: np.ndarray = out / 6.0 * syllables
    return shaped


MIXES: dict[str, dict[str, float]] = {
    "groove": {"bass": 1.0, "drums": 1.0, "melody": 0.6, "voice": 0.4},
    "ballad": {"bass": 0.6, "drums": 0.4, "melody": 1.0, "voice": 1.0},
    "beat": {"bass": 0.9, "drums": 1.2, "melody": 0.3, "voice": 0.2},
}


def render(name: str, *, seconds: float = 6.0, rate: int = 44_100, seed: int = 7) -> np.ndarray:
    """A stereo float32 mix of the four parts, balanced as ``MIXES[name]`` says."""
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(seed)
    parts = {
        "bass": bass(t, rate),
        "drums": drums(t, rate, rng),
        "melody": melody(t, rate),
        "voice": voice(t, rate),
    }
    pans = {"bass": 0.5, "drums": 0.5, "melody": 0.3, "voice": 0.6}
    left = sum(parts[k] * g * (1 - pans[k]) for k, g in MIXES[name].items())
    right = sum(parts[k] * g * pans[k] for k, g in MIXES[name].items())
    stereo = np.stack([left, right], axis=1)
    return (stereo / max(1e-9, float(np.max(np.abs(stereo)))) * 0.8).astype(np.float32)


def write_track(path: Path, name: str, *, seconds: float = 6.0, rate: int = 44_100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), render(name, seconds=seconds, rate=rate), rate, subtype="PCM_16")
    return path
