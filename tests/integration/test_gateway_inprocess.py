"""The gateway built in process around collaborators the test hands it, over a real Redis.

No worker and no broker: ``dispatch`` is the test's own list, so what the gateway sends is
visible, and the ledger it writes is a private prefix of the session's Redis.
"""

from __future__ import annotations

import asyncio
import secrets

import httpx
import pytest

from worker.celery_app import Producer
from worker.pipeline.ledger import JobState, Ledger
from worker.pipeline.recovery import beat
from worker.pipeline.states import TaskName
from worker.settings import Settings
from worker.web.gateway import create_app

pytestmark = pytest.mark.integration

KEY = "k-" + secrets.token_hex(8)


@pytest.fixture
def gateway(redis_server, redis_client):
    prefix = f"gw-{secrets.token_hex(4)}"
    settings = Settings(redis_url=redis_server.url, redis_key_prefix=prefix, gateway_api_keys=[KEY])
    sent: list = []
    producer = Producer(
        settings,
        redis_client,
        Ledger(redis_client, prefix=prefix),
        dispatch=sent.append,
        dispatch_webhook=lambda job_id, delay: None,
    )
    yield create_app(producer=producer), producer, sent
    for key in redis_client.scan_iter(f"{prefix}:*"):
        redis_client.delete(key)


def call(app, method: str, path: str, **kwargs) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(go())


AUTH = {"Authorization": f"Bearer {KEY}"}


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
