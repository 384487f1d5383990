"""The gateway built in process around collaborators the test hands it, over a real Redis.

No worker and no broker: messages go to the test's own queue, so what the gateway sends is
visible, and the ledger it writes is a private prefix of the session's Redis.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.support import GATEWAY_KEY, call
from vidgo_stems.celery_app import Producer
from vidgo_stems.heartbeat import beat
from vidgo_stems.pipeline.ledger import Ledger
from vidgo_stems.pipeline.states import JobState, TaskName
from vidgo_stems.settings import Settings
from vidgo_stems.web.gateway import create_app

pytestmark = pytest.mark.integration

AUTH = {"Authorization": f"Bearer {GATEWAY_KEY}"}


@pytest.fixture
def gateway(inprocess_gateway):
    return inprocess_gateway


def test_gateway_in_process_enqueues_reads_and_cancels_through_the_given_ledger(gateway):
    app, producer, sent = gateway
    created = call(
        app, "POST", "/v1/jobs", json={"audio_url": "https://cdn.example/a.mp3"}, headers=AUTH
    )
    assert created.status_code == 202, created.text
    job_id = created.json()["job_id"]
    assert producer.ledger.get(job_id).state is JobState.QUEUED
    assert [(s.task, s.job_id) for s in sent] == [(TaskName.SUBMIT, job_id)]

    read = call(app, "GET", f"/v1/jobs/{job_id}", headers=AUTH)
    assert read.status_code == 200 and read.json()["stage"] == "submit"

    cancelled = call(app, "DELETE", f"/v1/jobs/{job_id}", headers=AUTH)
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "CANCELLED"
    assert producer.ledger.get(job_id).state is JobState.CANCELLED


def test_gateway_in_process_is_ready_only_once_a_worker_beats(gateway):
    app, producer, _ = gateway
    assert call(app, "GET", "/readyz").json()["error"]["code"] == "no_workers"
    beat(producer.redis, producer.settings.redis_key_prefix, "w1@test")
    ready = call(app, "GET", "/readyz")
    assert ready.status_code == 200 and ready.json()["workers"] == ["w1@test"]


# -- hostile input over the gateway -------------------------------------------------------------


def test_the_key_is_checked_before_the_body_is_read(gateway):
    app, _, sent = gateway
    for body in (b"{not json", b"\xff\xfe", b"[" * 5000):
        response = call(app, "POST", "/v1/jobs", content=body)
        assert response.status_code == 401, response.text
    assert sent == []


@pytest.mark.parametrize(
    ("body", "headers", "says"),
    [
        (b'{"audio_url": "https://cdn.example/a.mp3",}', {}, "not valid JSON"),
        (b"\xff\xfe\x00", {}, "not UTF-8 text"),
        (b"[" * 5000 + b"]" * 5000, {}, "VIDGO_STEMS_MAX_JSON_DEPTH"),
        (b'{"audio_url": "https://cdn.example/a.mp3", "n": ' + b"9" * 5000 + b"}", {}, "digits"),
        (b"", {}, "the body is empty"),
        (b'["https://cdn.example/a.mp3"]', {}, "the body is a JSON list"),
        (b'{"audio_url": "https://cdn.example/a\\u0000.mp3"}', {}, "control character"),
        (
            b'{"audio_url": "https://cdn.example/a.mp3", "title": "x\\u0000"}',
            {},
            "control character",
        ),
    ],
)
def test_malformed_bodies_get_422_saying_what_was_wrong_and_what_to_send(
    gateway, body, headers, says
):
    app, _, sent = gateway
    response = call(
        app, "POST", "/v1/jobs", content=body, headers={**AUTH, "content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and says in error["message"]
    assert sent == []


def test_a_json_body_without_a_content_type_is_read_as_json(gateway):
    app, _, sent = gateway
    response = call(
        app,
        "POST",
        "/v1/jobs",
        content=b'{"audio_url": "https://cdn.example/plain.mp3"}',
        headers=AUTH,
    )
    assert response.status_code == 202, response.text
    assert len(sent) == 1


def test_a_huge_job_id_is_not_echoed_back_in_full(gateway):
    app, _, _ = gateway
    response = call(app, "GET", "/v1/jobs/" + "x" * 60_000, headers=AUTH)  # httpx caps at 64 KiB
    assert response.status_code == 422  # not a valid id: say so, without repeating it
    message = response.json()["error"]["message"]
    assert len(message) < 300 and "x" * 100 not in message and "job_id" in message


def test_a_deep_callback_body_with_the_real_token_gets_an_answer_not_a_500(gateway):
    app, producer, _ = gateway
    created = call(
        app, "POST", "/v1/jobs", json={"audio_url": "https://cdn.example/cb.mp3"}, headers=AUTH
    ).json()
    token = producer.ledger.get(created["job_id"]).callback_token
    response = call(
        app,
        "POST",
        f"/v1/vidgo/callback/{created['job_id']}?token={token}",
        content=b"[" * 1000 + b"]" * 1000,
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"ok": True, "outcome": "ignored"}  # QUEUED: nothing to wake


def test_an_empty_key_beside_a_real_one_never_opens_the_api(redis_server, redis_client):
    settings = Settings(
        redis_url=redis_server.url, redis_key_prefix="gw-empty", gateway_api_keys=["k1", ""]
    )
    producer = Producer(settings, redis_client, Ledger(redis_client, prefix="gw-empty"))
    app = create_app(producer=producer)
    for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer"}):
        assert call(app, "GET", "/v1/jobs/j1", headers=headers).status_code == 401


def test_a_body_that_never_arrives_is_answered_408_within_the_timeout(redis_server, redis_client):
    settings = Settings(
        redis_url=redis_server.url, gateway_api_keys=[GATEWAY_KEY], gateway_body_timeout_s=0.3
    )
    producer = Producer(settings, redis_client, Ledger(redis_client, prefix="gw-slow"))
    app = create_app(producer=producer)
    sent: list[dict] = []

    async def stalled_receive() -> dict:
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def record(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/jobs",
        "raw_path": b"/v1/jobs",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"content-length", b"100"),
            (b"authorization", f"Bearer {GATEWAY_KEY}".encode()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    asyncio.run(asyncio.wait_for(app(scope, stalled_receive, record), timeout=5))
    assert sent[0]["status"] == 408
    assert b"VIDGO_STEMS_GATEWAY_BODY_TIMEOUT_S" in sent[1]["body"]


def test_gateway_metrics_show_the_ledger_s_jobs_by_state_without_a_key(gateway):
    from prometheus_client.parser import text_string_to_metric_families

    app, producer, _ = gateway
    for n in range(3):
        response = call(
            app,
            "POST",
            "/v1/jobs",
            json={"audio_url": f"https://cdn.example/{n}.mp3"},
            headers=AUTH,
        )
        assert response.status_code in (200, 201, 202), response.text
    scraped = call(app, "GET", "/metrics")
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(scraped.text)
        for s in family.samples
    }
    assert samples[("vidgo_stems_cluster_scrape_ok", ())] == 1
    assert samples[("vidgo_stems_jobs", (("state", "QUEUED"),))] == 3
    assert samples[("vidgo_stems_jobs", (("state", "DONE"),))] == 0
    assert samples[("vidgo_stems_inflight_slots_cap", ())] == producer.settings.max_in_flight
    # This process created the jobs, so its own counter saw them enter QUEUED.
    assert samples[("vidgo_stems_jobs_entered_total", (("state", "QUEUED"),))] >= 3
