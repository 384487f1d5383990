"""Every robust-reading case of vidgo-api.md §5 that the parsers handle."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from vidgo_stems.errors import VidgoOutputError, VidgoProtocolError
from vidgo_stems.models import ALL_STEMS
from vidgo_stems.vidgo.parse import (
    VidgoStatus,
    body_code,
    error_message_of,
    extract_stem_urls,
    parse_detail,
    parse_status,
    parse_submit,
    parse_time,
    unwrap_data,
)

URLS = {s: f"https://storage.vidgo.ai/audio/{s}.mp3" for s in ALL_STEMS}
DATA = {
    "task_id": "8FDN1I7M7Q68DDG8",
    "status": "finished",
    "files": [{"vocal_removal": json.dumps(URLS)}],
    "created_time": "2025-11-25T08:50:13",
    "error_message": None,
}


def test_unwrap_data_accepts_wrapped_and_flat_bodies():
    assert unwrap_data({"code": 200, "data": DATA}) == DATA
    assert unwrap_data(DATA) == DATA


def test_unwrap_data_refuses_non_objects():
    with pytest.raises(VidgoProtocolError, match="JSON object"):
        unwrap_data(["not", "an", "object"])


def test_parse_detail_wrapped_and_flat_give_the_same_record():
    assert parse_detail({"code": 200, "data": DATA}) == parse_detail(DATA)


def test_parse_submit_without_status_means_not_started():
    result = parse_submit(
        {"code": 200, "data": {"task_id": "abc", "created_time": "2025-11-12T10:30:00"}}
    )
    assert result.status is VidgoStatus.NOT_STARTED
    assert result.task_id == "abc"


def test_parse_submit_without_task_id_is_a_protocol_error():
    with pytest.raises(VidgoProtocolError, match="task_id"):
        parse_submit({"code": 200, "data": {"status": "not_started"}})


def test_parse_time_takes_naive_timestamps_as_utc():
    assert parse_time("2025-11-12T10:30:00") == datetime(2025, 11, 12, 10, 30, tzinfo=UTC)
    assert parse_time("2025-11-12T10:30:00.123456").microsecond == 123456
    assert parse_time("yesterday") is None
    assert parse_time(None) is None


@pytest.mark.parametrize("raw", ["queued", "processing", "succeeded", "", None, 7])
def test_unknown_statuses_are_not_terminal(raw):
    status = parse_status(raw)
    assert status is VidgoStatus.UNKNOWN
    assert not status.is_terminal


def test_documented_statuses_parse_case_and_space_insensitively():
    assert parse_status(" Finished ") is VidgoStatus.FINISHED
    assert parse_status("failed").is_terminal


def test_parse_detail_keeps_failure_message_and_defaults_missing_files():
    detail = parse_detail({"task_id": "t", "status": "failed", "error_message": "policy"})
    assert detail.files == ()
    assert detail.error_message == "policy"


def test_parse_detail_refuses_files_that_are_not_an_array():
    with pytest.raises(VidgoProtocolError, match="array"):
        parse_detail({"task_id": "t", "status": "finished", "files": {"vocal_removal": "{}"}})


def test_stems_from_a_json_string():
    assert extract_stem_urls(DATA["files"], ALL_STEMS).urls == URLS


def test_stems_from_an_already_decoded_object():
    assert extract_stem_urls([{"vocal_removal": URLS}], ALL_STEMS).urls == URLS


def test_stems_from_single_quoted_json_with_stray_spaces_in_keys():
    raw = f"{{'bass ': '{URLS['bass']}', ' vocals': '{URLS['vocals']}'}}"
    found = extract_stem_urls([{"vocal_removal": raw}], ("bass", "vocals"))
    assert found.urls == {"bass": URLS["bass"], "vocals": URLS["vocals"]}


def test_stems_are_collected_from_every_files_element():
    files = [
        {"vocal_removal": json.dumps({"bass": URLS["bass"]})},
        {"vocal_removal": json.dumps({"drums": URLS["drums"]})},
    ]
    assert extract_stem_urls(files, ("bass", "drums")).urls == {
        "bass": URLS["bass"],
        "drums": URLS["drums"],
    }


def test_empty_and_null_values_mean_the_stem_is_absent():
    raw = json.dumps({**URLS, "piano": "", "guitar": None})
    with pytest.raises(VidgoOutputError, match="piano, guitar") as caught:
        extract_stem_urls([{"vocal_removal": raw}], ALL_STEMS)
    assert caught.value.code == "vidgo_missing_stems"


def test_unknown_stem_keys_are_kept_apart():
    raw = json.dumps({"vocals": URLS["vocals"], "strings": "https://storage.vidgo.ai/s.mp3"})
    found = extract_stem_urls([{"vocal_removal": raw}], ("vocals",))
    assert found.urls == {"vocals": URLS["vocals"]}
    assert found.extra == {"strings": "https://storage.vidgo.ai/s.mp3"}


def test_single_stem_output_type_needs_only_its_key():
    raw = json.dumps({"drums": URLS["drums"]})
    assert extract_stem_urls([{"vocal_removal": raw}], ("drums",)).urls == {"drums": URLS["drums"]}


@pytest.mark.parametrize("bad", ["{not json", "[1, 2]", 42])
def test_malformed_vocal_removal_is_an_output_error(bad):
    with pytest.raises(VidgoOutputError) as caught:
        extract_stem_urls([{"vocal_removal": bad}], ALL_STEMS)
    assert caught.value.code == "vidgo_malformed_stems"


def test_finished_with_empty_files_gives_no_urls():
    assert extract_stem_urls([], ALL_STEMS).urls == {}


def test_error_message_of_reads_every_envelope():
    assert (
        error_message_of({"code": 409, "error": {"message": "exists", "type": "conflict_error"}})
        == "exists"
    )
    assert error_message_of({"detail": "Task not found"}) == "Task not found"
    assert error_message_of({"msg": "m"}) == "m"
    assert error_message_of("plain") is None


def test_body_code_ignores_booleans_and_missing_codes():
    assert body_code({"code": 402}) == 402
    assert body_code({"code": True}) is None
    assert body_code({}) is None
