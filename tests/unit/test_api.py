"""The Python API for web backends: enqueue with a webhook and metadata, cancel, the job view."""

from __future__ import annotations

import base64
import json

import fakeredis
import pytest

from worker.errors import ConfigError, InvalidRequest
from worker.pipeline.ledger import JobState, Ledger
from worker.pipeline.stages.context import TaskName
from worker.web import api

SECRET = "whsec_" + base64.b64encode(b"s" * 32).decode()
URL = "https://cdn.example/a.mp3"


@pytest.fixture
def world(monkeypatch, make_settings):
    client = fakeredis.FakeRedis()
    ledger = Ledger(client, prefix="t", retention_s=100)
    steps, hooks = [], []
    monkeypatch.setattr(api, "dispatch", steps.append)
    monkeypatch.setattr(api, "dispatch_webhook", lambda job_id, delay: hooks.append(job_id))
    settings = make_settings(webhook_secret=SECRET)
    yield ledger, settings, steps, hooks
    client.close()


def test_enqueue_keeps_webhook_and_metadata_on_the_job(world):
    ledger, settings, steps, _ = world
    job_id = api.enqueue(
        URL,
        webhook_url="https://hooks.example.com/done",
        metadata={"upload": 42, "user": "ann"},
        ledger=ledger,
        settings=settings,
    )
    view = api.get_job(job_id, ledger=ledger)
    assert view.metadata == {"upload": 42, "user": "ann"}
    assert view.webhook.url == "https://hooks.example.com/done"
    assert view.webhook.status == "pending" and view.webhook.attempts == []
    assert [s.task for s in steps] == [TaskName.SUBMIT]
    assert "callback_token" not in json.dumps(view.model_dump(mode="json"))
    assert ledger.get(job_id).callback_token not in json.dumps(view.model_dump(mode="json"))


def test_the_default_webhook_url_applies_when_none_is_given(world, make_settings):
    ledger, _, _, _ = world
    settings = make_settings(webhook_secret=SECRET, default_webhook_url="https://h.example.com/")
    job_id = api.enqueue(URL, ledger=ledger, settings=settings)
    assert api.get_job(job_id, ledger=ledger).webhook.url == "https://h.example.com"


def test_a_webhook_without_a_signing_secret_is_refused_with_the_fix(world, make_settings):
    ledger, _, steps, _ = world
    with pytest.raises(ConfigError, match="vidgo-stems webhook-secret"):
        api.enqueue(
            URL, webhook_url="https://hooks.example.com/", ledger=ledger, settings=make_settings()
        )
    assert steps == [] and ledger.active_job_ids() == []


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"webhook_url": "http://127.0.0.1:8000/hook"}, "public hosts only"),
        ({"metadata": ["not", "an", "object"]}, "JSON object"),
        ({"metadata": {"k": "v" * 5000}}, "limit is 4096"),
        ({"metadata": {"x" * 65: 1}}, "keys must be strings"),
        ({"metadata": {"n": float("nan")}}, "plain JSON"),
        ({"job_id": "../../etc/passwd"}, "invalid job id"),
        ({"job_id": "a/b"}, "invalid job id"),
        ({"job_id": ".hidden"}, "invalid job id"),
    ],
)
def test_hostile_input_is_refused_before_anything_is_stored(world, kwargs, match):
    ledger, settings, steps, _ = world
    with pytest.raises(InvalidRequest, match=match):
        api.enqueue(URL, ledger=ledger, settings=settings, **kwargs)
    assert steps == [] and ledger.active_job_ids() == []


def test_cancel_ends_the_job_and_makes_its_messages_stale(world):
    ledger, settings, steps, hooks = world
    job_id = api.enqueue(
        URL, webhook_url="https://hooks.example.com/", ledger=ledger, settings=settings
    )
    token_in_flight = steps[0].token
    view = api.cancel(job_id, ledger=ledger)
    assert view.state is JobState.CANCELLED and view.stage == "cancelled"
    assert view.error.code == "cancelled" and "billed" in view.error.message
    assert ledger.get(job_id).token != token_in_flight
    assert not ledger.advance(
        job_id,
        expect=JobState.QUEUED,
        token=token_in_flight,
        to=JobState.SUBMITTING,
        event="late message",
    )
    assert hooks == [job_id]  # the caller hears about it too


def test_cancel_leaves_an_ended_job_alone(world):
    ledger, settings, _, hooks = world
    job_id = api.enqueue(URL, ledger=ledger, settings=settings)
    api.cancel(job_id, ledger=ledger)
    again = api.cancel(job_id, ledger=ledger)
    assert again.state is JobState.CANCELLED
    assert [e["event"] for e in again.history].count("cancelled") == 1
    assert api.cancel("unknown", ledger=ledger) is None
    assert hooks == []  # no webhook URL, no webhook
