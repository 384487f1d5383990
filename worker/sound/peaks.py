"""Waveform peaks for players, in the BBC audiowaveform formats that peaks.js and
wavesurfer.js read: ``.json`` and binary ``.dat`` version 2 (one channel, 8-bit).

Each pixel holds the minimum and the maximum of ``samples_per_pixel`` samples of the mono mix,
scaled to -128..127.

``.dat`` v2 header (little-endian): int32 version = 2, uint32 flags (1 = 8-bit), int32 sample
rate, int32 samples per pixel, uint32 length (pixels), int32 channels; then length x channels
x (min, max) int8 pairs.
"""

from __future__ import annotations

import json
import struct

import numpy as np

from vidgo_stems.sound.decode import mono as mono_of

DAT_HEADER = struct.Struct("<iIiiIi")
FLAG_8_BIT = 1


def peaks(samples: np.ndarray, rate: int, pixels_per_second: int) -> tuple[int, np.ndarray]:
    """(samples per pixel, int8 array [pixels, 2] of min and max) of the mono mix."""
    return peaks_of_mono(mono_of(samples), rate, pixels_per_second)


def peaks_of_mono(mono: np.ndarray, rate: int, pixels_per_second: int) -> tuple[int, np.ndarray]:
    """:func:`peaks` of a mono mix already made (float32 [frames], finite)."""
    per_pixel = max(1, round(rate / max(pixels_per_second, 1)))
    pixels = max(1, int(np.ceil(mono.size / per_pixel)))
    whole = mono.size // per_pixel
    pairs = np.zeros((pixels, 2), dtype=np.float32)
    if whole:
        blocks = mono[: whole * per_pixel].reshape(whole, per_pixel)
        pairs[:whole, 0] = blocks.min(axis=1)
        pairs[:whole, 1] = blocks.max(axis=1)
    rest = mono[whole * per_pixel :]
    if rest.size:  # the last pixel, short: its missing samples count as zeros
        pairs[whole] = (min(float(rest.min()), 0.0), max(float(rest.max()), 0.0))
    return per_pixel, np.clip(np.round(pairs * 127), -128, 127).astype(np.int8)


def to_dat(rate: int, per_pixel: int, pairs: np.ndarray) -> bytes:
    header = DAT_HEADER.pack(2, FLAG_8_BIT, rate, per_pixel, len(pairs), 1)
    return header + pairs.astype(np.int8).tobytes()


def to_json(rate: int, per_pixel: int, pairs: np.ndarray) -> bytes:
    document = {
        "version": 2,
        "channels": 1,
        "sample_rate": rate,
        "samples_per_pixel": per_pixel,
        "bits": 8,
        "length": len(pairs),
        "data": pairs.astype(int).ravel().tolist(),
    }
    return json.dumps(document, separators=(",", ":")).encode()
