"""Validation against the source on a small labelled set (the benchmark's, short): foreign stems
are flagged, even those the old cross-spectrum peak passed; own stems pass, weak, late, MP3 or
with their gain changed; prints round-trip and agree with the whole signals."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import validation as bench
from vidgo_stems.sound.validate import (
    ANALYSIS_RATE,
    AnalysisPrint,
    analysis_print,
    analysis_signal,
    compare,
    compare_prints,
    remix_residual_db,
    remix_residual_db_of_prints,
)

RATE = bench.RATE
MP3_DELAY_S = 1105 / RATE


@pytest.fixture(scope="module")
def groove():
    """A 5 s track, its MP3 and WAV stems, and its analysis signal."""
    source = bench.render_track("groove", 5.0)
    return source, bench.split(source, "mp3"), bench.split(source, "wav")


def check(stem: np.ndarray, source: np.ndarray):
    return compare(
        analysis_signal(stem, RATE), RATE, analysis_signal(source, RATE), source.shape[0] / RATE
    )


def old_score(stem: np.ndarray, source: np.ndarray) -> float:
    return bench.old_offset_of(analysis_signal(stem, RATE), analysis_signal(source, RATE))[1]


# -- foreign stems ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["bass", "piano"])
def test_a_synthesised_stem_the_old_peak_passed_is_not_of_the_source(groove, name):
    # A steady 55 Hz sine (or a 440 Hz note) against a track that plays those notes: the old
    # cross-spectrum peak found a lag where the tone lines up (0.73 and 0.40, over 0.3).
    source, _, _ = groove
    stem = bench.synthesised("synth-0-0", 5.0)[name]
    assert old_score(stem, source) >= 0.3
    found = check(stem, source)
    assert found.problems == ["stem_not_of_source"] and found.match_score < 0.35


@pytest.mark.parametrize("name", ["vocals", "bass", "guitar", "drums"])
def test_a_stem_of_another_track_with_the_same_notes_is_not_of_the_source(groove, name):
    source, _, _ = groove
    stem = bench.split(bench.other_track("groove", 5.0, seed=100), "mp3")[name]
    found = check(stem, source)
    assert found.problems == ["stem_not_of_source"], found


def test_the_other_tracks_stems_the_old_peak_passed_are_flagged(groove):
    source, _, _ = groove
    stems = bench.split(bench.other_track("groove", 5.0, seed=100), "mp3")
    passed = [name for name, stem in stems.items() if old_score(stem, source) >= 0.3]
    assert passed  # vocals at 0.38 and more: the old statistic called them of the source
    for name in passed:
        assert check(stems[name], source).problems == ["stem_not_of_source"], name


def test_a_stem_moved_beyond_the_searched_offsets_is_not_of_the_source():
    source = bench.render_track("beat", 10.0)
    drums = bench.split(source, "mp3")["drums"]
    assert check(bench.moved(drums, 3.3), source).problems == ["stem_not_of_source"]


# -- own stems ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["bass", "drums", "piano", "guitar", "vocals"])
def test_an_mp3_stem_is_of_its_source_late_by_the_encoder_delay(groove, name):
    source, mp3, _ = groove
    found = check(mp3[name], source)
    assert found.problems == [] and found.match_score >= 0.35, found
    assert abs(found.offset_vs_source_s - MP3_DELAY_S) <= 1152 / RATE


@pytest.mark.parametrize("name", ["bass", "guitar", "vocals"])
def test_a_weak_stem_is_of_its_source(groove, name):
    source, mp3, _ = groove
    found = check(mp3[name] * 0.1, source)  # 20 dB down
    assert found.problems == [] and found.match_score >= 0.35, found


@pytest.mark.parametrize(("gain", "late_s"), [(0.125, 0.0), (2.0, 0.0), (1.0, 0.4), (0.5, 0.1)])
def test_a_stem_with_its_gain_changed_or_late_is_of_its_source(groove, gain, late_s):
    source, _, wav = groove
    stem = bench.delayed(np.clip(wav["vocals"] * gain, -1, 1), late_s)
    found = check(stem, source)
    assert found.problems == [], found
    assert found.offset_vs_source_s == pytest.approx(late_s, abs=2 / ANALYSIS_RATE)


def test_a_truncated_own_stem_is_truncated_not_foreign(groove):
    source, mp3, _ = groove
    stem = mp3["piano"][: int(3.5 * RATE)]
    assert check(stem, source).problems == ["stem_truncated"]


def test_the_score_is_a_number_in_zero_to_one(groove):
    source, mp3, _ = groove
    scores = [check(stem, source).match_score for stem in mp3.values()]
    assert all(isinstance(s, float) and 0.0 <= s <= 1.0 for s in scores if s is not None)


# -- prints -------------------------------------------------------------------------------


def test_a_print_round_trips_through_bytes_without_pickle(groove):
    _, mp3, _ = groove
    made = analysis_print(mp3["vocals"], RATE)
    data = made.to_bytes()
    back = AnalysisPrint.from_bytes(data)
    assert back.head.dtype == np.float16 and np.array_equal(back.head, made.head)
    assert (back.frames, back.energy, back.rate, back.duration_s) == (
        made.frames,
        made.energy,
        made.rate,
        made.duration_s,
    )
    assert data[:2] == b"PK"  # an .npz, read back with allow_pickle=False


def test_a_print_stays_small_whatever_the_length():
    noise = np.random.default_rng(5).standard_normal((90 * ANALYSIS_RATE, 2)).astype(np.float32)
    short = analysis_print(noise[: 45 * ANALYSIS_RATE] * 0.1, ANALYSIS_RATE).to_bytes()
    long = analysis_print(noise * 0.1, ANALYSIS_RATE).to_bytes()
    assert abs(len(long) - len(short)) < 0.01 * len(short)
    assert len(long) < 31 * ANALYSIS_RATE * 2  # at most 2 bytes per kept analysis sample


def test_verdicts_on_prints_agree_with_the_whole_signals(groove):
    source, mp3, _ = groove
    stems = {
        **{f"own {k}": v for k, v in mp3.items()},
        "late": bench.delayed(mp3["vocals"], 0.2),
        "truncated": mp3["piano"][: int(3.5 * RATE)],
        "synthesised": bench.synthesised("synth-0-0", 5.0)["bass"],
        "other track": bench.split(bench.other_track("groove", 5.0, seed=100), "mp3")["vocals"],
    }
    source_print = analysis_print(source, RATE)
    for name, stem in stems.items():
        whole = check(stem, source)
        printed = compare_prints(
            AnalysisPrint.from_bytes(analysis_print(stem, RATE).to_bytes()), source_print
        )
        assert printed.problems == whole.problems, name
        assert printed.offset_vs_source_s == pytest.approx(whole.offset_vs_source_s, abs=1e-4)
        assert printed.duration_delta_s == pytest.approx(whole.duration_delta_s, abs=1e-4)
        if whole.match_score is not None:
            assert printed.match_score == pytest.approx(whole.match_score, abs=0.02), name


def test_the_remix_residual_on_prints_agrees_with_the_whole_signals(groove):
    source, mp3, _ = groove
    mix = analysis_signal(source, RATE)
    signals = {name: analysis_signal(stem, RATE) for name, stem in mp3.items()}
    prints = {name: analysis_print(stem, RATE) for name, stem in mp3.items()}
    mix_print = analysis_print(source, RATE)
    for left_out in (None, "bass"):
        names = [n for n in mp3 if n != left_out]
        whole = remix_residual_db([signals[n] for n in names], mix)
        printed = remix_residual_db_of_prints([prints[n] for n in names], mix_print)
        assert printed == pytest.approx(whole, abs=0.3), (left_out, whole, printed)
    assert remix_residual_db_of_prints([prints[n] for n in mp3], mix_print) < -20
    assert remix_residual_db_of_prints([prints[n] for n in mp3 if n != "bass"], mix_print) > -6


def test_a_sub_bass_other_of_its_own_split_is_not_called_foreign(groove):
    # A split whose bands take everything above 40 Hz leaves "other" a sub-bass hum: nothing in
    # it ties it to this source, so it gets no verdict either way (a 55 Hz foreign tone, above
    # IDENTIFY_HZ, still does: see the synthesised bass above).
    source, mp3, _ = groove
    found = check(mp3["other"], source)
    assert found.match_score is None and found.problems == []
    assert abs(found.offset_vs_source_s - MP3_DELAY_S) <= 1152 / RATE  # its alignment, still
