"""Real audio for the emulator's stems: crude band splits of the input, or synthesis.

When the submitted ``audio_url`` can be fetched and decoded, each stem is a band of the input
(bass 40-200 Hz, piano 200-700 Hz, vocals 700-2500 Hz, guitar 2.5-5 kHz, drums above 5 kHz,
other whatever the bands leave out), so a general split sums back to the input. Otherwise each
stem is synthesised from a seed. Stems are MP3 by default, as Vidgo serves them: encoded by
LAME (``lameenc``) without a gapless header, so a decoder hands back the encoder's delay
(about 1,105 samples) before the audio and padding after it, like many real services. WAV
(16-bit PCM) and FLAC are there too. Output is deterministic for the same input.
"""

from __future__ import annotations

import io
import zlib
from importlib.metadata import version

import lameenc
import numpy as np
import soundfile as sf

#: The formats stems may be served in, and their file extensions and content types.
STEM_FORMATS = {"mp3": "audio/mpeg", "wav": "audio/wav", "flac": "audio/flac"}
MP3_BITRATE_KBPS = 192
MP3_QUALITY = 5
#: What a render's bytes depend on besides its inputs (part of every stem cache key): bump the
#: first part when ``split`` or ``encode`` changes what they make.
RENDER_ID = (
    f"split-1/mp3-{MP3_BITRATE_KBPS}k-q{MP3_QUALITY}/lameenc-{version('lameenc')}"
    f"/libsndfile-{sf.__libsndfile_version__}/numpy-{np.__version__}"
)

BANDS_HZ: dict[str, tuple[float, float]] = {
    "bass": (40.0, 200.0),
    "piano": (200.0, 700.0),
    "vocals": (700.0, 2500.0),
    "guitar": (2500.0, 5000.0),
    "drums": (5000.0, 20000.0),
}
MODEL_GAIN = {"base": 1.0, "enhanced": 1.1, "instrumental": 0.9}


def decode(data: bytes, *, max_s: float) -> tuple[np.ndarray, int]:
    """Decode audio bytes to float32 [frames, channels]; raises ValueError when not audio."""
    try:
        with sf.SoundFile(io.BytesIO(data)) as audio:
            frames = min(audio.frames, int(max_s * audio.samplerate))
            samples = audio.read(frames, dtype="float32", always_2d=True)
            return samples, int(audio.samplerate)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise ValueError(f"not decodable audio: {exc}") from None


def encode_wav(samples: np.ndarray, sample_rate: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(samples, -1.0, 1.0), sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def encode(samples: np.ndarray, sample_rate: int, fmt: str = "wav") -> bytes:
    """Stem bytes in ``fmt`` (mp3, wav or flac)."""
    clipped = np.clip(samples, -1.0, 1.0)
    if fmt == "wav":
        return encode_wav(clipped, sample_rate)
    if fmt == "flac":
        buffer = io.BytesIO()
        sf.write(buffer, clipped, sample_rate, format="FLAC", subtype="PCM_16")
        return buffer.getvalue()
    encoder = lameenc.Encoder()
    encoder.set_bit_rate(MP3_BITRATE_KBPS)
    encoder.set_in_sample_rate(sample_rate)
    encoder.set_channels(int(clipped.shape[1]))
    encoder.set_quality(MP3_QUALITY)
    pcm = (clipped * 32767).astype("<i2").tobytes()
    return bytes(encoder.encode(pcm) + encoder.flush())


def split(
    samples: np.ndarray,
    sample_rate: int,
    stems: list[str],
    model_name: str,
    fmt: str = "wav",
    lost: frozenset[str] = frozenset(),
) -> dict[str, bytes]:
    """Band-split ``samples`` into the named stems (``fmt`` bytes each); ``lost`` stems come
    out silent."""
    gain = MODEL_GAIN.get(model_name, 1.0)
    spectrum = np.fft.rfft(samples, axis=0)
    freqs = np.fft.rfftfreq(samples.shape[0], d=1.0 / sample_rate)
    covered = np.zeros(freqs.shape, dtype=bool)
    for low, high in BANDS_HZ.values():
        covered |= (freqs >= low) & (freqs < high)
    out: dict[str, bytes] = {}
    for stem in stems:
        if stem in BANDS_HZ:
            low, high = BANDS_HZ[stem]
            mask = ((freqs >= low) & (freqs < high)).astype(np.float32)[:, None]
        else:  # "other": what no band took, so a general split sums to the input
            mask = (~covered).astype(np.float32)[:, None]
        if stem in lost:
            mask = np.zeros_like(mask)
        band = np.fft.irfft(spectrum * mask, n=samples.shape[0], axis=0)
        out[stem] = encode((band * gain).astype(np.float32), sample_rate, fmt)
    return out


def synthesise(
    seed_text: str, stems: list[str], *, sample_rate: int, duration_s: float, fmt: str = "wav"
) -> dict[str, bytes]:
    """A distinct, audible signal per stem, deterministic for ``seed_text``."""
    rng = np.random.default_rng(zlib.crc32(seed_text.encode()))
    t = np.arange(int(sample_rate * duration_s), dtype=np.float32) / sample_rate
    out: dict[str, bytes] = {}
    for stem in stems:
        out[stem] = encode(_voice(stem, t, rng)[:, None] * 0.5, sample_rate, fmt)
    return out


def _voice(stem: str, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if stem == "bass":
        return np.sin(2 * np.pi * 55.0 * t) * 0.8
    if stem == "drums":
        beat = (t * 2.0) % 1.0
        envelope = np.exp(-beat * 30.0)
        return (
            rng.standard_normal(t.size).astype(np.float32) * 0.3 + np.sin(2 * np.pi * 60 * t)
        ) * envelope
    if stem == "vocals":
        vibrato = 1.0 + 0.01 * np.sin(2 * np.pi * 5.0 * t)
        return np.sin(2 * np.pi * 220.0 * t * vibrato) * 0.6
    if stem == "piano":
        note = (t * 2.0) % 1.0
        return np.sin(2 * np.pi * 440.0 * t) * np.exp(-note * 4.0)
    if stem == "guitar":
        return np.sign(np.sin(2 * np.pi * 330.0 * t)) * 0.2
    return (
        np.sin(2 * np.pi * 660.0 * t) * 0.2 + rng.standard_normal(t.size).astype(np.float32) * 0.01
    )
