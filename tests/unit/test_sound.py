"""Post-processing on known signals: loudness and true peak per BS.1770 / R128, the silence
gate, validation against the source, the remix check, every delivery format, tags, peaks."""

from __future__ import annotations

import json
import struct

import lameenc
import numpy as np
import pytest
import soundfile as sf
from scipy.signal import lfilter

from vidgo_stems.errors import InvalidRequest
from vidgo_stems.sound.decode import read_audio
from vidgo_stems.sound.deliver import Delivery, convert, file_name, read_tags, write_tags
from vidgo_stems.sound.measure import measure
from vidgo_stems.sound.peaks import DAT_HEADER, peaks, to_dat, to_json
from vidgo_stems.sound.validate import analysis_signal, compare, remix_residual_db

RATE = 48_000


def sine(freq: float, seconds: float, *, dbfs: float = 0.0, rate: int = RATE, channels: int = 1):
    t = np.arange(int(seconds * rate)) / rate
    tone = np.sin(2 * np.pi * freq * t) * 10 ** (dbfs / 20)
    return np.repeat(tone[:, None], channels, axis=1)


def pink_noise(seconds: float, *, rms_dbfs: float, rate: int = RATE, seed: int = 7):
    """Pink (1/f power) noise scaled to an RMS level, by shaping white noise's spectrum."""
    n = int(seconds * rate)
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / rate)
    spectrum[1:] /= np.sqrt(freqs[1:])
    spectrum[(freqs < 20) | (freqs > 20_000)] = 0
    noise = np.fft.irfft(spectrum, n)
    noise *= 10 ** (rms_dbfs / 20) / np.sqrt(np.mean(noise**2))
    return noise[:, None]


# -- BS.1770 / R128 ------------------------------------------------------------------------


def test_a_full_scale_997_hz_sine_measures_minus_3_01_lufs_and_0_dbtp():
    levels = measure(sine(997, 10), RATE)
    assert levels.loudness_lufs == pytest.approx(-3.01, abs=0.1)  # BS.1770-4, mono, 0 dBFS
    assert levels.true_peak_dbtp == pytest.approx(0.0, abs=0.2)
    assert levels.peak_dbfs == pytest.approx(0.0, abs=0.01)
    assert not levels.silent and levels.loudness_range_lu <= 1.5  # a steady tone


def test_loudness_follows_gain_and_a_stereo_pair_adds_3_db():
    quieter = measure(sine(997, 10, dbfs=-20), RATE)
    assert quieter.loudness_lufs == pytest.approx(-23.01, abs=0.1)
    stereo = measure(sine(997, 10, dbfs=-20, channels=2), RATE)
    assert stereo.loudness_lufs == pytest.approx(-20.0, abs=0.1)


#: BS.1770-4's K-weighting at 48 kHz, as the standard tabulates it (stage 1: the shelf that
#: models the head; stage 2: the RLB high-pass).
K_SHELF = (
    [1.53512485958697, -2.69169618940638, 1.19839281085285],
    [1.0, -1.69065929318241, 0.73248077421585],
)
K_HIGHPASS = ([1.0, -2.0, 1.0], [1.0, -1.99004745483398, 0.99007225036621])


def k_weighted_loudness(signal: np.ndarray) -> float:
    """Ungated BS.1770 loudness straight from the standard's table (for a steady signal every
    block passes both gates, so this is also its integrated loudness)."""
    weighted = lfilter(*K_HIGHPASS, lfilter(*K_SHELF, signal, axis=0), axis=0)
    return -0.691 + 10 * np.log10(np.sum(np.mean(weighted**2, axis=0)))


def test_pink_noise_at_a_known_level_measures_as_the_standards_k_weighting_says():
    # Pink noise band-limited to 20 Hz - 20 kHz at -20 dBFS RMS; the expected loudness comes
    # from the standard's own filter table, independently of the meter under test.
    noise = pink_noise(30, rms_dbfs=-20)
    expected = k_weighted_loudness(noise)
    measured = measure(noise, RATE)
    assert measured.loudness_lufs == pytest.approx(expected, abs=0.1)
    assert -22.0 < measured.loudness_lufs < -19.0
    softer = measure(pink_noise(30, rms_dbfs=-30), RATE)
    assert softer.loudness_lufs == pytest.approx(measured.loudness_lufs - 10, abs=0.05)


def test_loudness_range_of_the_tech_3342_step_signal_is_10_lu():
    # EBU Tech 3342 test 1: a stereo 1 kHz sine, 20 s at -20 dBFS then 20 s at -30 dBFS.
    signal = np.concatenate(
        [sine(1000, 20, dbfs=-20, channels=2), sine(1000, 20, dbfs=-30, channels=2)]
    )
    assert measure(signal, RATE).loudness_range_lu == pytest.approx(10.0, abs=1.0)


def test_true_peak_sees_an_inter_sample_peak_the_samples_miss():
    # A sine at a quarter of the rate, phased so every sample sits at 0.707 of the peak.
    rate = 48_000
    t = np.arange(rate) / rate
    tone = np.sin(2 * np.pi * (rate / 4) * t + np.pi / 4)[:, None]
    levels = measure(tone, rate)
    assert levels.peak_dbfs == pytest.approx(-3.01, abs=0.05)
    assert levels.true_peak_dbtp == pytest.approx(0.0, abs=0.3)


@pytest.mark.parametrize(
    "signal",
    [
        np.zeros((RATE * 5, 2)),
        np.random.default_rng(3).standard_normal((RATE * 5, 2)) * 10 ** (-80 / 20),
    ],
    ids=["digital silence", "noise at -80 dBFS"],
)
def test_nothing_above_the_gate_is_silent(signal):
    levels = measure(signal, RATE)
    assert levels.silent and levels.loudness_lufs is None


def test_clipping_non_finite_samples_and_dc_offset_are_flagged():
    clipped = np.clip(sine(100, 2) * 2, -1, 1)
    assert measure(clipped, RATE).clipping
    broken = sine(100, 2)
    broken[100:110] = np.nan
    assert measure(broken, RATE).non_finite_samples == 10
    assert measure(sine(100, 2, dbfs=-20) + 0.05, RATE).dc_offset == pytest.approx(0.05, abs=1e-3)


# -- validation against the source ---------------------------------------------------------


def music(seconds: float, rate: int, seed: int) -> np.ndarray:
    """A source with content in every band, different per seed."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    parts = [
        np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) * a
        for f, a in ((70, 0.3), (330, 0.2), (1200, 0.1))
    ]
    noise = rng.standard_normal(t.size) * 0.03
    return np.stack([sum(parts) + noise] * 2, axis=1).astype(np.float32)


def mp3_round_trip(samples: np.ndarray, rate: int, tmp_path, name: str) -> np.ndarray:
    encoder = lameenc.Encoder()
    encoder.set_bit_rate(192)
    encoder.set_in_sample_rate(rate)
    encoder.set_channels(samples.shape[1])
    data = (
        encoder.encode((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()) + encoder.flush()
    )
    path = tmp_path / f"{name}.mp3"
    path.write_bytes(bytes(data))
    return read_audio(path).samples


def band(samples: np.ndarray, rate: int, low: float, high: float) -> np.ndarray:
    spectrum = np.fft.rfft(samples, axis=0)
    freqs = np.fft.rfftfreq(samples.shape[0], 1 / rate)
    mask = ((freqs >= low) & (freqs < high))[:, None]
    return np.fft.irfft(spectrum * mask, n=samples.shape[0], axis=0).astype(np.float32)


def check(stem, source, rate=22_050):
    return compare(
        analysis_signal(stem, rate), rate, analysis_signal(source, rate), source.shape[0] / rate
    )


def test_an_mp3_stem_is_aligned_within_one_frame_of_its_encoder_delay_and_not_called_truncated(
    tmp_path,
):
    rate = 22_050
    source = music(6, rate, seed=1)
    stem = mp3_round_trip(band(source, rate, 200, 2000), rate, tmp_path, "vocals")
    found = check(stem, source)
    assert abs(found.offset_vs_source_s - 1105 / rate) <= 1152 / rate  # LAME: 576 + 529
    assert found.problems == [] and found.match_score > 0.9


def test_a_truncated_stem_is_caught(tmp_path):
    rate = 22_050
    source = music(6, rate, seed=1)
    stem = band(source, rate, 200, 2000)[: int(4.5 * rate)]
    assert check(stem, source).problems == ["stem_truncated"]


def test_a_stem_of_another_track_is_caught():
    rate = 22_050
    source = music(6, rate, seed=1)
    other = pink_noise(6, rms_dbfs=-20, rate=rate, seed=11).repeat(2, axis=1).astype(np.float32)
    found = check(band(other, rate, 200, 2000), source)
    assert found.problems == ["stem_not_of_source"] and found.match_score < 0.3


def test_the_remix_check_is_low_when_stems_sum_to_the_mix_and_high_when_one_is_missing(tmp_path):
    rate = 22_050
    source = music(6, rate, seed=1)
    edges = [(0, 200), (200, 2000), (2000, rate)]
    stems = [
        mp3_round_trip(band(source, rate, lo, hi), rate, tmp_path, str(lo)) for lo, hi in edges
    ]
    mix = analysis_signal(source, rate)
    signals = [analysis_signal(s, rate) for s in stems]
    whole = remix_residual_db(signals, mix)
    missing = remix_residual_db(signals[1:], mix)  # the bass stem left out
    assert whole < -20 and missing > -6, (whole, missing)


# -- delivery ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "rate_out", "subtype"),
    [
        ("wav16", 44_100, "PCM_16"),
        ("wav24", 44_100, "PCM_24"),
        ("flac", 44_100, "PCM_24"),
        ("mp3", 44_100, None),
        ("opus", 48_000, "OPUS"),
    ],
)
def test_each_format_decodes_back_with_the_right_rate_channels_duration_and_tags(
    tmp_path, fmt, rate_out, subtype
):
    samples = sine(440, 2, dbfs=-6, rate=44_100, channels=2)
    ext = {"wav16": "wav", "wav24": "wav"}.get(fmt, fmt)
    dest = tmp_path / f"vocals.{ext}"
    written_rate, gain, _ = convert(samples, 44_100, Delivery(format=fmt), dest)
    tags = {"title": "Song (vocals)", "stem": "vocals", "source_title": "Song", "job_id": "j1"}
    write_tags(dest, tags)
    back = read_audio(dest)
    assert (written_rate, back.rate, back.channels) == (rate_out, rate_out, 2) and gain is None
    assert back.duration_s == pytest.approx(2.0, abs=0.01)
    if subtype:
        assert sf.info(str(dest)).subtype == subtype
    assert read_tags(dest) == tags


_MPEG1_KBPS = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
_MPEG2_KBPS = (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)
_MPEG_RATES = {3: (44_100, 48_000, 32_000), 2: (22_050, 24_000, 16_000), 0: (11_025, 12_000, 8_000)}


def mp3_frames(data: bytes) -> list[tuple[int, int]]:
    """(bitrate kbps, sample rate) of every MPEG audio frame, read from the frame headers; the
    frames must run to the end of the file."""
    at, frames = 0, []
    if data[:3] == b"ID3":
        at = 10 + sum((b & 0x7F) << (7 * (3 - i)) for i, b in enumerate(data[6:10]))
    while at < len(data):
        (header,) = struct.unpack(">I", data[at : at + 4])
        assert header >> 21 == 0x7FF, f"no frame header at byte {at}"
        version, index = (header >> 19) & 3, (header >> 12) & 0xF
        kbps = (_MPEG1_KBPS if version == 3 else _MPEG2_KBPS)[index]
        rate = _MPEG_RATES[version][(header >> 10) & 3]
        frames.append((kbps, rate))
        at += (144 if version == 3 else 72) * kbps * 1000 // rate + ((header >> 9) & 1)
    return frames


@pytest.mark.parametrize(
    ("rate", "kbps", "rate_out"),
    [
        (44_100, 256, 44_100),
        (48_000, 320, 48_000),
        (44_100, 32, 44_100),
        (32_000, 128, 32_000),
        (22_050, 128, 22_050),
        (22_050, 256, 44_100),  # MPEG-2 carries at most 160 kbps: written at 44.1 kHz
        (24_000, 192, 48_000),
        (96_000, 256, 48_000),
    ],
)
def test_mp3_is_written_at_the_constant_bitrate_asked(tmp_path, rate, kbps, rate_out):
    dest = tmp_path / "vocals.mp3"
    noise = np.random.default_rng(3).standard_normal((rate * 2, 2)) * 0.2
    written_rate, _, _ = convert(noise, rate, Delivery(format="mp3", mp3_bitrate_kbps=kbps), dest)
    frames = mp3_frames(dest.read_bytes())
    assert written_rate == rate_out and len(frames) > 50
    assert set(frames) == {(kbps, rate_out)}
    # Within the encoder's delay and last frame (a decoder trims them only when LAME's header
    # frame has room for the gapless figures, which it lacks at the lowest bitrates).
    assert read_audio(dest).duration_s == pytest.approx(2.0, abs=0.06)


def test_a_chosen_sample_rate_and_loudness_target_with_a_true_peak_ceiling(tmp_path):
    dest = tmp_path / "x.flac"
    rate, gain, written = convert(
        sine(440, 5, dbfs=-30, rate=44_100, channels=2),
        44_100,
        Delivery(
            format="flac", sample_rate=22_050, normalize_lufs=-14.0, true_peak_ceiling_dbtp=-1.0
        ),
        dest,
    )
    levels = measure(written, rate)
    assert rate == 22_050 and read_audio(dest).rate == 22_050
    assert levels.loudness_lufs == pytest.approx(-14.0, abs=0.2) and gain > 0
    loud = convert(
        sine(440, 5, dbfs=-3, rate=44_100),
        44_100,
        Delivery(format="flac", normalize_lufs=-5.0),
        dest,
    )
    assert measure(loud[2], loud[0]).true_peak_dbtp <= -0.9  # the ceiling wins over the target


def test_names_follow_the_template_sanitised():
    name = file_name(
        "{title} - {stem}.{ext}", stem="vocals", title="Héllo / ../wörld", job_id="j1", ext="mp3"
    )
    assert name == "Hello_._world_-_vocals.mp3" or (
        "/" not in name and name.endswith("-_vocals.mp3")
    )
    assert (
        file_name("{stem}.{ext}", stem="vocals", title=None, job_id="j", ext="flac")
        == "vocals.flac"
    )
    with pytest.raises(InvalidRequest, match=r"\{artist\} is unknown"):
        Delivery(name_template="{artist}.{ext}").check()


# -- waveform peaks ------------------------------------------------------------------------


def test_peaks_files_parse_with_the_documented_header_and_length():
    samples = sine(100, 3, dbfs=-6, rate=44_100)
    per_pixel, pairs = peaks(samples, 44_100, pixels_per_second=50)
    dat = to_dat(44_100, per_pixel, pairs)
    version, flags, rate, spp, length, channels = DAT_HEADER.unpack_from(dat)
    assert (version, flags, rate, spp, channels) == (2, 1, 44_100, 882, 1)
    assert length == 150 and len(dat) == DAT_HEADER.size + length * 2
    values = struct.unpack_from(f"<{length * 2}b", dat, DAT_HEADER.size)
    assert max(values) == 64 and min(values) == -64  # -6 dBFS of 127
    document = json.loads(to_json(44_100, per_pixel, pairs))
    assert document["version"] == 2 and document["bits"] == 8 and document["channels"] == 1
    assert len(document["data"]) == 2 * document["length"] == 300
