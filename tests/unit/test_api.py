"""The Python API for web backends: enqueue with a webhook and metadata, cancel, the job view."""

from __future__ import annotations

import base64
import json

import pytest

from vidgo_stems import producer as api
from vidgo_stems.celery_app import Producer
from vidgo_stems.errors import ConfigError, InvalidRequest
from vidgo_stems.pipeline.recovery import active_job_ids
from vidgo_stems.pipeline.states import JobState, TaskName

SECRET = "whsec_" + base64.b64encode(b"s" * 32).decode()
URL = "https://cdn.example/a.mp3"


@pytest.fixture
def world(make_settings, fake_redis, fake_ledger, step_log):
    hooks, ends = [], []
    settings = make_settings(webhook_secret=SECRET)
    producer = Producer(
        settings,
        fake_redis,
        fake_ledger,
        dispatch_webhook=lambda job_id, delay: hooks.append(job_id),
        record_end=lambda job_id, code, message, cancelled=False: ends.append((job_id, code)),
        forget_result=lambda job_id: None,
    )
    producer.ends = ends
    return producer, settings, step_log, hooks


def _with(producer, settings):
    """The same collaborators under other settings."""
    return Producer(
        settings,
        producer.redis,
        producer.ledger,
        producer.dispatch_webhook,
        producer.record_end,
        producer.forget_result,
    )


def test_enqueue_keeps_webhook_and_metadata_on_the_job(world):
    p, settings, steps, _ = world
    ledger = p.ledger
    job_id = api.enqueue(
        URL,
        webhook_url="https://hooks.example.com/done",
        metadata={"upload": 42, "user": "ann"},
        producer=_with(p, settings),
    )
    view = api.get_job(job_id, producer=p)
    assert view.metadata == {"upload": 42, "user": "ann"}
    assert view.webhook.url == "https://hooks.example.com/done"
    assert view.webhook.status == "pending" and view.webhook.attempts == []
    assert [s.task for s in steps] == [TaskName.SUBMIT]
    assert "callback_token" not in json.dumps(view.model_dump(mode="json"))
    assert ledger.get(job_id).callback_token not in json.dumps(view.model_dump(mode="json"))


def test_the_default_webhook_url_applies_when_none_is_given(world, make_settings):
    p, _, _, _ = world
    settings = make_settings(webhook_secret=SECRET, default_webhook_url="https://h.example.com/")
    job_id = api.enqueue(URL, producer=_with(p, settings))
    assert api.get_job(job_id, producer=p).webhook.url == "https://h.example.com"


def test_a_webhook_without_a_signing_secret_is_refused_with_the_fix(world, make_settings):
    p, _, steps, _ = world
    ledger = p.ledger
    with pytest.raises(ConfigError, match="vidgo-stems webhook-secret"):
        api.enqueue(
            URL, webhook_url="https://hooks.example.com/", producer=_with(p, make_settings())
        )
    assert steps == [] and active_job_ids(ledger) == []


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"webhook_url": "http://127.0.0.1:8000/hook"}, "private address"),
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
    p, settings, steps, _ = world
    ledger = p.ledger
    with pytest.raises(InvalidRequest, match=match):
        api.enqueue(URL, producer=_with(p, settings), **kwargs)
    assert steps == [] and active_job_ids(ledger) == []


def test_cancel_ends_the_job_and_makes_its_messages_stale(world):
    p, settings, steps, hooks = world
    ledger = p.ledger
    job_id = api.enqueue(URL, webhook_url="https://hooks.example.com/", producer=_with(p, settings))
    token_in_flight = steps[0].token
    view = api.cancel(job_id, producer=p)
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
    assert p.ends == [(job_id, "cancelled")]  # and AsyncResult(job_id).get() raises


def test_cancel_leaves_an_ended_job_alone(world):
    p, settings, _, hooks = world
    job_id = api.enqueue(URL, producer=_with(p, settings))
    api.cancel(job_id, producer=p)
    again = api.cancel(job_id, producer=p)
    assert again.state is JobState.CANCELLED
    assert [e["event"] for e in again.history].count("cancelled") == 1
    assert api.cancel("unknown", producer=p) is None
    assert hooks == []  # no webhook URL, no webhook


def test_enqueue_keeps_the_delivery_choice_and_it_makes_another_job(world):
    p, settings, _, _ = world
    plain = api.enqueue(URL, producer=_with(p, settings))
    flac = api.enqueue(
        URL, format="flac", sample_rate=48000, normalize_lufs=-14, producer=_with(p, settings)
    )
    assert flac != plain
    request = p.ledger.get(flac).request
    assert (request.format.value, request.sample_rate, request.normalize_lufs) == (
        "flac",
        48000,
        -14,
    )
    with pytest.raises(InvalidRequest, match="format 'aiff' is not one of: original, wav16"):
        api.enqueue(URL, format="aiff", producer=_with(p, settings))
