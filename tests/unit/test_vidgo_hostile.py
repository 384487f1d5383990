"""A hostile Vidgo: answers no parser can crash on, text that never reaches a log or terminal
raw, stems read by their bytes, unfetchable URLs and callback tokens kept out of every log."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import sys

import httpx
import numpy as np
import pytest

from vidgo_stems.emulator.audio import encode
from tests.jobs import create_job
from tests.unit.test_stages import (
    Harness,
    detail,
    postprocess,
    submitted,
    to_downloading,
    to_polling,
    wav_bytes,
)
from vidgo_stems import errors
from vidgo_stems.files.sniff import audio_suffix
from vidgo_stems.models import parse_request
from vidgo_stems.observe.logs import JsonLineFormatter, PlainFormatter, mask_tokens
from vidgo_stems.pipeline.stages import run_download, run_poll, run_submit
from vidgo_stems.pipeline.stages.stem import fetch_source
from vidgo_stems.pipeline.states import JobState
from vidgo_stems.text import MAX_TEXT_CHARS, is_plain, neutralise
from vidgo_stems.vidgo import VidgoClient
from vidgo_stems.vidgo.client import encode_body, submit_payload
from vidgo_stems.vidgo.parse import extract_stem_urls, parse_detail

HUGE = "9" * 5000
DEEP = "[" * 100_000 + "]" * 100_000
HOSTILE_MESSAGE = (
    "\x1b]0;pwned\x07\x1b[2Jfailed\r\n[2026-01-01 00:00:00,000: ERROR/MainProcess] forged line"
    + "A" * 100_000
)
UNSAFE = ("\x1b", "\x07", "\r", "\n", "\x7f", "\x9b", "\udfff")


@pytest.fixture
def h(make_settings, tmp_path):
    harness = Harness(make_settings(poll_initial_s=3, poll_min_interval_s=2), tmp_path)
    yield harness
    for close in harness.closers:
        close()


def raw(text: str) -> httpx.Response:
    return httpx.Response(200, content=text.encode(), headers={"content-type": "application/json"})


def detail_text(status: str = '"running"', task_id: str = '"v1"', extra: str = "") -> str:
    return f'{{"code": 200, "data": {{"task_id": {task_id}, "status": {status}{extra}}}}}'


HOSTILE_DETAILS = {
    "deep": f'{{"code": 200, "data": {{"task_id": "v1", "files": {DEEP}}}}}',
    "huge progress": detail_text(extra=f', "progress": {HUGE}'),
    "huge number in vocal_removal": detail_text(
        '"finished"', extra=', "files": [{"vocal_removal": "{\\"vocals\\": ' + HUGE + '}"}]'
    ),
    "deep vocal_removal": detail_text(
        '"finished"', extra=', "files": [{"vocal_removal": "' + "[" * 5000 + '"}]'
    ),
    "surrogate status": detail_text('"\\udfff"'),
    "escape in status": detail_text('"running\\u001b[2J"'),
    "surrogate task_id": detail_text(task_id='"v\\udfff1"'),
    "newline in task_id": detail_text(task_id='"v1\\r\\nforged"'),
}


@pytest.mark.parametrize("body", HOSTILE_DETAILS.values(), ids=HOSTILE_DETAILS.keys())
def test_a_hostile_detail_answer_fails_a_paid_job_with_a_stable_code(h, body):
    job_id = to_polling(h)
    h.vidgo.detail_answers.append(raw(body))
    with pytest.raises(errors.PermanentError) as caught:
        run_poll(h.ctx, job_id, h.last_token())
    assert caught.value.code in ("vidgo_malformed_response", "vidgo_malformed_stems")
    assert len(caught.value.message) < 1000
    job = h.ledger.get(job_id)
    assert job.vidgo_status == "not_started"  # nothing from the answer was stored


@pytest.mark.parametrize("task_id", ['"t\\udfff"', '"t\\u001b]0;x\\u0007"', '"t\\u0000"'])
def test_a_submit_answer_with_an_unplain_task_id_is_a_protocol_error(h, task_id):
    h.vidgo.submit_answers.append(raw(detail_text('"not_started"', task_id=task_id)))
    with pytest.raises(errors.VidgoProtocolError, match=r"task_id holds control|lone surrogate"):
        run_submit(h.ctx, h.enqueue(), "t0")


def test_an_out_of_range_progress_is_ignored():
    parsed = parse_detail({"data": {"task_id": "v1", "status": "running", "progress": 10**30}})
    assert parsed.progress is None


def test_vocal_removal_within_the_limits_still_parses_as_json_or_single_quoted():
    json_form = {"vocal_removal": json.dumps({"vocals": "https://s.example/v.mp3"})}
    quoted = {"vocal_removal": "{'vocals ': 'https://s.example/v.mp3'}"}
    for files in ([json_form], [quoted]):
        assert extract_stem_urls(files, ("vocals",)).urls == {"vocals": "https://s.example/v.mp3"}


def test_a_stem_url_with_control_characters_is_refused():
    files = [{"vocal_removal": json.dumps({"vocals": "https://s.example/v.mp3\x1b[2J"})}]
    with pytest.raises(errors.VidgoOutputError, match="control characters"):
        extract_stem_urls(files, ("vocals",))


def test_extra_stem_keys_are_neutralised_and_bounded():
    urls = {"vocals": "https://s.example/v.mp3"}
    urls.update({f"k{i}\x1b[2J" + "x" * 500: "https://s.example/x" for i in range(50)})
    extra = extract_stem_urls([{"vocal_removal": json.dumps(urls)}], ("vocals",)).extra
    assert len(extra) <= 16
    assert all(is_plain(key, 200) for key in extra)


def test_neutralise_makes_controls_visible_replaces_surrogates_and_cuts():
    assert neutralise("a\x1b]0;t\x07b") == "a\\x1b]0;t\\x07b"
    assert neutralise("line\r\nnext\tx") == "line  next x"
    assert neutralise("\x9b\x7f\u202e\udfff") == "\\x9b\\x7f\\u202e\ufffd"
    long = neutralise("é" * 10_000)
    assert long.startswith("é" * MAX_TEXT_CHARS) and long.endswith("[cut: 10000 characters in all]")
    assert neutralise("plain text, kept") == "plain text, kept"


def test_a_failed_task_stores_its_error_message_bounded_and_neutralised(h):
    job_id = to_polling(h)
    message = HOSTILE_MESSAGE.replace("failed", "The audio violates our content policy")
    h.vidgo.detail_answers.append(detail("failed", error_message=message))
    with pytest.raises(errors.VidgoTaskFailed) as caught:
        run_poll(h.ctx, job_id, h.last_token())
    text = caught.value.message
    assert not any(ch in text for ch in UNSAFE)
    assert len(text) < MAX_TEXT_CHARS + 200
    assert "\\x1b]0;pwned\\x07" in text and "[cut: " in text


def test_an_error_answer_with_escapes_gives_a_neutralised_message(h):
    h.vidgo.submit_answers.append(
        httpx.Response(400, json={"code": 400, "error": {"message": HOSTILE_MESSAGE}})
    )
    with pytest.raises(errors.VidgoBadRequest) as caught:
        run_submit(h.ctx, h.enqueue(), "t0")
    assert not any(ch in caught.value.message for ch in UNSAFE)
    assert len(caught.value.message) < MAX_TEXT_CHARS + 200


def test_a_non_json_error_answer_with_escapes_gives_a_neutralised_message(make_settings):
    transport = httpx.MockTransport(lambda r: httpx.Response(502, content=b"\x1b[2J\r\nbad"))
    with (
        VidgoClient(make_settings(), transport=transport) as client,
        pytest.raises(errors.VidgoUnavailable) as caught,
    ):
        client.music_detail("v1")
    assert "\\x1b[2J" in caught.value.message and "\x1b" not in caught.value.message


SIGNATURES = {
    ".wav": wav_bytes()[:64],
    ".flac": b"fLaC\x00\x00\x00\x22",
    ".mp3": b"ID3\x04\x00\x00",
    ".ogg": b"OggS\x00\x02" + b"\x00" * 22 + b"\x01vorbis",
    ".opus": b"OggS\x00\x02" + b"\x00" * 22 + b"OpusHead",
    ".aiff": b"FORM\x00\x00\x10\x00AIFF",
    ".aac": b"\xff\xf1\x50\x80",
    ".m4a": b"\x00\x00\x00\x20ftypM4A ",
}


@pytest.mark.parametrize(("suffix", "head"), SIGNATURES.items(), ids=SIGNATURES.keys())
def test_audio_formats_are_told_by_their_first_bytes(suffix, head):
    assert audio_suffix(head) == suffix


@pytest.mark.parametrize("head", [b"", b"<html>", b"RIFF\x00\x00\x00\x00AVI ", b"\xff\xff\xff"])
def test_bytes_of_no_audio_format_are_told_apart(head):
    assert audio_suffix(head) is None


def mp3_bytes(seconds=0.5, rate=22050):
    t = np.arange(int(seconds * rate), dtype=np.float32) / rate
    return encode((0.4 * np.sin(2 * np.pi * 330 * t))[:, None], rate, "mp3")


def test_a_wav_url_serving_mp3_is_stored_as_mp3_and_the_job_is_done(h):
    h.stems["vocals.wav"] = mp3_bytes()
    job_id = to_downloading(h)
    run_download(h.ctx, job_id, h.last_token())
    stem = h.ledger.get(job_id).stems["vocals"]
    assert (stem.file, stem.content_type) == ("vocals.mp3", "audio/mpeg")
    manifest = postprocess(h, job_id)
    assert h.ledger.get(job_id).state is JobState.DONE
    assert manifest["stems"]["vocals"]["original"]["format"] == "mp3"


def test_a_stem_that_is_no_audio_fails_with_a_stable_code(h):
    h.stems["vocals.wav"] = b"<html>an error page, not audio</html>"
    job_id = to_downloading(h)
    with pytest.raises(errors.StemUndecodable) as caught:
        run_download(h.ctx, job_id, h.last_token())
    assert caught.value.code == "stem_not_audio"


@pytest.mark.parametrize("port", ["65536", "99999", "-1"])
def test_a_source_url_with_a_port_out_of_range_is_unchecked_not_a_crash(
    make_settings, tmp_path, port
):
    h = Harness(make_settings(validate_source=True), tmp_path)
    job_id = to_downloading(h)
    job = h.ledger.get(job_id)
    url = f"https://cdn.example:{port}/a.wav"
    hostile = job.request.model_copy(update={"audio_url": url})  # past the entry check
    source = fetch_source(h.ctx, dataclasses.replace(job, request=hostile))
    assert not source.checked
    assert "port" in (source.reason or "")


# -- callback tokens --------------------------------------------------------------------------

TOKEN = "cbTOKEN-0123456789abcdefXYZ"
CALLBACK = f"https://hooks.example/v1/vidgo/callback/job1?token={TOKEN}"


def test_a_submit_body_that_cannot_be_encoded_fails_clearly_and_names_no_token():
    request = parse_request({"audio_url": "https://cdn.example/a.mp3"})
    hostile = request.model_copy(update={"title": "A\udfffB"})  # past the entry check
    payload = submit_payload(hostile, callback_url=CALLBACK)
    with pytest.raises(errors.PermanentError) as caught:
        encode_body(payload)
    assert caught.value.code == "invalid_request"
    assert TOKEN not in str(caught.value)


def test_a_job_an_older_version_stored_with_a_surrogate_is_submitted_scrubbed(
    make_settings, tmp_path
):
    h = Harness(make_settings(public_callback_base_url="https://hooks.example"), tmp_path)
    request = parse_request({"audio_url": "https://cdn.example/a.mp3"})
    create_job(h.ledger, "job1", request.model_copy(update={"title": "A\udfffB"}), token="t0")
    assert h.ledger.get("job1").request.title == "A\ufffdB"  # read back scrubbed
    h.vidgo.submit_answers.append(submitted("v1"))
    run_submit(h.ctx, "job1", "t0")
    assert h.vidgo.count("submit") == 1 and h.ledger.get("job1").vidgo_task_id == "v1"


def crash_record() -> logging.LogRecord:
    """A record as Celery logs a task that raised: the exception carries the request body."""
    body = json.dumps({"callback_url": CALLBACK, "input": {"title": "A\udfff"}}, ensure_ascii=False)
    try:
        body.encode()
    except UnicodeEncodeError:
        info = sys.exc_info()
    return logging.LogRecord(
        "celery.app.trace",
        logging.ERROR,
        __file__,
        1,
        "Task vidgo.submit[x] raised unexpected: %r",
        (info[1],),
        info,
    )


@pytest.mark.parametrize("formatter", [PlainFormatter([]), JsonLineFormatter([])])
def test_a_crash_carrying_the_callback_url_logs_no_token(formatter):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.emit(crash_record())
    line = stream.getvalue()
    assert "raised unexpected" in line and "token=***" in line
    assert TOKEN not in line


@pytest.mark.parametrize(
    "text",
    [
        CALLBACK,
        CALLBACK.replace("?", "%3F").replace("=", "%3D"),
        json.dumps({"callback_token": TOKEN}),
        json.dumps(json.dumps({"callback_token": TOKEN})),
    ],
)
def test_callback_tokens_are_masked_in_every_spelling(text):
    assert TOKEN not in mask_tokens(text)
