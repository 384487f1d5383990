"""Hostile input at the gateway: nothing a client sends can poison a job, a listing, or page an
operator. The gateway runs in process over a real Redis (see ``inprocess_gateway``)."""

from __future__ import annotations

import base64
import json

import pytest

from tests.jobs import move_to
from tests.support import GATEWAY_KEY, call
from vidgo_stems.pipeline.states import JobState

pytestmark = pytest.mark.integration

AUTH = {"Authorization": f"Bearer {GATEWAY_KEY}", "Content-Type": "application/json"}
URL = "https://cdn.example.com/song.mp3"


def post(app, body: str):
    return call(app, "POST", "/v1/jobs", content=body.encode(), headers=AUTH)


def readable(app, job_id: str | None = None) -> None:
    """Every read a client can make answers 200 with JSON that is valid UTF-8."""
    paths = ["/v1/jobs", "/v1/jobs?state=QUEUED", "/v1/jobs?state=FAILED"]
    if job_id:
        paths.append(f"/v1/jobs/{job_id}")
    for path in paths:
        response = call(app, "GET", path, headers=AUTH)
        assert response.status_code == 200, (path, response.text)
        json.loads(response.content.decode("utf-8"))


@pytest.mark.parametrize(
    "body",
    [
        '"metadata": {"x": "\\udfff"}',
        '"metadata": {"\\ud800": 1}',
        '"metadata": {"deep": [{"x": "a\\udc00b"}]}',
        '"title": "\\ud800abc"',
        '"webhook_url": "https://h\\udfff.example.com/"',
        '"title": "x", "audio_url": "https://cdn.example.com/\\udfff.mp3"',
    ],
)
def test_a_lone_surrogate_anywhere_in_a_body_is_refused_and_nothing_is_stored(
    inprocess_gateway, body
):
    app, _, sent = inprocess_gateway
    response = post(app, f'{{"audio_url": "{URL}", {body}}}')
    assert response.status_code in (400, 422), response.text
    assert "surrogate" in response.json()["error"]["message"]
    assert list(sent) == []
    readable(app)


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("metadata", {"k\x1b[2J": 1}, "control character"),
        ("metadata", {"k": "nul\x00"}, "control character"),
        ("title", "a\x1b]0;owned\x07title", "control character"),
        ("audio_url", "https://cdn.example.com:65536/a.mp3", "port"),
        ("audio_url", "https://cdn.example.com:99999/a.mp3", "port"),
        ("audio_url", "https://cdn.example.com:-1/a.mp3", "port"),
        ("audio_url", "https://user:pw@cdn.example.com/a.mp3", "user name"),
        ("webhook_url", "https://ho\x00oks.example.com/", "control character"),
        ("webhook_url", "https://hooks.example.com /", "white space"),
        ("webhook_url", "https://hooks.example.com\t/", "control character"),
        ("webhook_url", "https://hooks.example.com%40evil.example/", "percent-escape"),
        ("webhook_url", "http://[::ffff:0:127.0.0.1]/", "private address"),
    ],
)
def test_malformed_text_and_urls_are_a_4xx_saying_what_is_wrong(
    inprocess_gateway, field, value, why
):
    app, _, sent = inprocess_gateway
    body = {"audio_url": URL, field: value}
    response = post(app, json.dumps(body))
    assert response.status_code == 422, response.text
    assert why in response.json()["error"]["message"]
    assert list(sent) == []


def test_a_job_holding_a_surrogate_written_by_an_older_version_stays_readable(
    inprocess_gateway,
):
    app, producer, _ = inprocess_gateway
    created = post(app, json.dumps({"audio_url": URL, "metadata": {"x": "ok"}}))
    job_id = created.json()["job_id"]
    keys = producer.ledger.keys
    # What a version without the entry checks could store: JSON escapes of lone surrogates.
    producer.redis.hset(keys.job(job_id), "metadata", '{"x": "\\udfff", "\\ud800": 1}')
    producer.redis.rpush(keys.history(job_id), '{"event": "callback", "hint": "\\ud800abc"}')
    for sub_id, raw in producer.redis.hgetall(keys.subscriptions(job_id)).items():
        poisoned = {**json.loads(raw), "metadata": {"y": "\udfff"}}
        producer.redis.hset(keys.subscriptions(job_id), sub_id, json.dumps(poisoned))
    readable(app, job_id)
    view = call(app, "GET", f"/v1/jobs/{job_id}", headers=AUTH).json()
    assert "\ufffd" in json.dumps(view, ensure_ascii=False)


def test_a_callback_holding_surrogates_leaves_the_job_readable(inprocess_gateway):
    app, producer, _ = inprocess_gateway
    job_id = post(app, json.dumps({"audio_url": URL})).json()["job_id"]
    move_to(producer.ledger, job_id, JobState.RUNNING, fields={"vidgo_task_id": "t1"})
    token = producer.ledger.get(job_id).callback_token
    body = '{"task_id": "\\ud800abc", "status": "\\udfff"}'
    answer = call(app, "POST", f"/v1/vidgo/callback/{job_id}?token={token}", content=body.encode())
    assert answer.status_code < 500, answer.text
    assert answer.json()["outcome"] == "woken"  # the poll is brought forward all the same
    readable(app, job_id)
    history = json.dumps(producer.ledger.history(job_id), ensure_ascii=False)
    history.encode("utf-8")  # nothing in it that UTF-8 cannot hold


def test_a_caller_chosen_job_id_names_one_request(inprocess_gateway):
    app, producer, sent = inprocess_gateway
    first = post(app, json.dumps({"audio_url": URL, "job_id": "mine-1"}))
    assert first.status_code == 202, first.text
    again = post(app, json.dumps({"audio_url": URL, "job_id": "mine-1", "title": "relabelled"}))
    assert again.status_code == 200 and again.json()["created"] is False
    other = post(
        app, json.dumps({"audio_url": "https://cdn.example.com/other.mp3", "job_id": "mine-1"})
    )
    assert other.status_code == 409, other.text
    message = other.json()["error"]["message"]
    assert "already names another request" in message and "job_id" in message
    for changed in ({"output_type": "vocals"}, {"format": "flac"}, {"model_name": "enhanced"}):
        body = {"audio_url": URL, "job_id": "mine-1", **changed}
        assert post(app, json.dumps(body)).status_code == 409, changed
    subs = producer.redis.hlen(producer.ledger.keys.subscriptions("mine-1"))
    assert subs == 2  # the creator and the same request again; no one else joined
    assert len(list(sent)) == 1


@pytest.mark.parametrize("since", ["nan", "NaN", "inf", "-Infinity", "yesterday", "1e999"])
def test_since_must_be_a_time(inprocess_gateway, since):
    app, _, _ = inprocess_gateway
    response = call(app, "GET", f"/v1/jobs?since={since}", headers=AUTH)
    assert response.status_code == 422, response.text
    assert "ISO 8601" in response.json()["error"]["message"]


@pytest.mark.parametrize("decoded", ["nan|x", "inf|x", "1.0|", "abc|x", "no-bar"])
def test_a_cursor_that_does_not_decode_is_a_422(inprocess_gateway, decoded):
    app, _, _ = inprocess_gateway
    cursor = base64.urlsafe_b64encode(decoded.encode()).decode().rstrip("=")
    response = call(app, "GET", f"/v1/jobs?cursor={cursor}", headers=AUTH)
    assert response.status_code == 422, response.text
    assert "next_cursor" in response.json()["error"]["message"]


def test_since_takes_unix_seconds_or_an_iso_time(inprocess_gateway):
    app, _, _ = inprocess_gateway
    job_id = post(app, json.dumps({"audio_url": URL})).json()["job_id"]
    for since in ("0", "2001-01-01T00:00:00Z", "2001-01-01T00:00:00%2B02:00", "2001-01-01"):
        page = call(app, "GET", f"/v1/jobs?since={since}", headers=AUTH)
        assert page.status_code == 200, page.text
        assert job_id in [j["job_id"] for j in page.json()["jobs"]]
    later = call(app, "GET", "/v1/jobs?since=2999-01-01T00:00:00Z", headers=AUTH).json()
    assert later["jobs"] == []
