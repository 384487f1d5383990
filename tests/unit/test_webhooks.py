"""Completion webhooks: Standard Webhooks signatures, the outbox, retries and SSRF at delivery."""

from __future__ import annotations

import base64
import json
import random
import socket
import time

import httpx
import pytest
import standardwebhooks
from pydantic import SecretStr

from tests.jobs import ManualClock, job_in, move_to
from vidgo_stems.files.storage import FileStorage
from vidgo_stems.models import parse_request
from vidgo_stems.pipeline.outbox import Outbox
from vidgo_stems.pipeline.states import JobState
from vidgo_stems.urlsafety import BlockedAddress
from vidgo_stems.webhooks import (
    WebhookSender,
    WebhookVerificationError,
    announce,
    deliveries,
    event_for,
    redispatch_overdue,
    signed_headers,
    verify,
)

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
REQUEST = parse_request({"audio_url": "https://cdn.example/a.mp3", "title": "A"})


def sign(body: str, *, at: float | None = None, msg_id: str = "msg_1") -> dict[str, str]:
    return signed_headers(SecretStr(SECRET), msg_id, time.time() if at is None else at, body)


def test_signature_verifies_with_the_helper_and_with_the_reference_library():
    body = json.dumps({"type": "job.done", "data": {"job_id": "j1"}})
    headers = sign(body)
    assert verify(SECRET, body.encode(), headers)["data"]["job_id"] == "j1"
    assert standardwebhooks.Webhook(SECRET).verify(body, headers)["type"] == "job.done"


@pytest.mark.parametrize(
    "tamper",
    [
        lambda body, h: (body.replace("j1", "j2"), h),
        lambda body, h: (body, {**h, "webhook-id": "msg_other"}),
        lambda body, h: (body, {**h, "webhook-timestamp": str(int(time.time()) + 1)}),
        lambda body, h: (body, {**h, "webhook-signature": "v1,AAAA"}),
        lambda body, h: (body, {**h, "webhook-signature": "garbage"}),
        lambda body, h: (body, {k: v for k, v in h.items() if k != "webhook-signature"}),
    ],
)
def test_tampered_webhooks_fail_verification(tamper):
    body = json.dumps({"type": "job.done", "data": {"job_id": "j1"}})
    bad_body, bad_headers = tamper(body, sign(body))
    with pytest.raises(WebhookVerificationError):
        verify(SECRET, bad_body.encode(), bad_headers)


def test_old_timestamps_and_wrong_secrets_fail():
    body = "{}"
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify(SECRET, body, sign(body, at=time.time() - 3600))
    other = "whsec_" + base64.b64encode(b"x" * 32).decode()
    with pytest.raises(WebhookVerificationError, match="No matching"):
        verify(other, body, sign(body))
    with pytest.raises(WebhookVerificationError, match="secret"):
        verify("not base64!", body, sign(body))


@pytest.fixture
def world(make_settings, make_fake_ledger):
    clock = ManualClock(time.time())
    ledger = make_fake_ledger(retention_s=1000, clock=clock)
    settings = make_settings(
        webhook_secret=SECRET, webhook_max_attempts=3, webhook_backoff_base_s=10
    )
    received, answers, dispatched = [], [], []

    def handler(request: httpx.Request) -> httpx.Response:
        received.append(request)
        return httpx.Response(answers.pop(0) if answers else 200)

    http = httpx.Client(transport=httpx.MockTransport(handler))
    sender = WebhookSender(
        ledger,
        settings,
        http,
        lambda job_id, delay: dispatched.append((job_id, delay)),
        clock=clock,
        rng=random.Random(1),
        resolve=lambda url: ["93.184.216.34"],
    )
    yield ledger, sender, clock, received, answers, dispatched
    http.close()


def ended_job(ledger, job_id="j1", *, to=JobState.FAILED, webhook="https://hooks.example.com/x"):
    job_in(
        ledger,
        to,
        job_id,
        REQUEST,
        webhook_url=webhook,
        metadata={"order": 7},
        fields={"error_code": "boom", "error_message": "it broke"},
        event="end",
    )


def test_an_ended_job_with_a_webhook_joins_the_outbox_in_the_same_step(world):
    ledger, *_ = world
    ended_job(ledger, "j1")
    ended_job(ledger, "j2", webhook=None)
    due = ledger.redis.zrange(ledger.keys.webhooks_due, 0, -1)
    assert [ledger.keys.outbox_entry(m)[0] for m in due] == ["j1"]


def test_delivery_posts_a_signed_event_and_records_it(world):
    ledger, sender, _, received, _, dispatched = world
    ended_job(ledger)
    assert sender.deliver("j1") == "delivered"
    (request,) = received
    event = verify(SECRET, request.content, dict(request.headers))
    assert event["type"] == "job.failed"
    assert event["data"]["metadata"] == {"order": 7}
    assert event["data"]["error"] == {"code": "boom", "message": "it broke"}
    (sub_id,) = Outbox(ledger).subscriptions("j1")
    assert request.headers["webhook-id"] == f"msg_j1_{sub_id}_failed_0"
    assert event["data"]["subscription_id"] == sub_id
    assert ledger.get("j1").webhook_status == "delivered"
    assert [d["status_code"] for d in deliveries(ledger, "j1")] == [200]
    assert sender.deliver("j1") == "gone"  # a duplicate message sends nothing
    assert len(received) == 1 and dispatched == []


def test_the_event_holds_no_token_and_no_stem_url(world, tmp_path):
    ledger, *_ = world
    ended_job(ledger)
    job = ledger.get("j1")
    text = json.dumps(event_for(job, FileStorage(tmp_path), 60))
    assert job.callback_token not in text
    assert "stem_urls" not in text


def test_a_done_event_links_every_stem_and_the_manifest(world, tmp_path):
    ledger, *_ = world
    storage = FileStorage(
        tmp_path, url_signer=lambda key, ttl: f"https://files.example/{key}?t={ttl}"
    )
    stored = storage.put_bytes("j1/vocals.mp3", b"ID3 audio", content_type="audio/mpeg")
    job_in(ledger, JobState.POSTPROCESSING, "j1", REQUEST)
    stem = {"file": "vocals.mp3", "key": stored.key, "sha256": stored.sha256, "bytes": 9}
    move_to(
        ledger,
        "j1",
        JobState.DONE,
        fields={
            "stems": {"vocals": {**stem, "content_type": "audio/mpeg"}},
            "manifest_key": "j1/manifest.json",
        },
        event="done",
    )
    data = event_for(ledger.get("j1"), storage, 60)["data"]
    assert data["stems"] == {
        "vocals": {
            "url": "https://files.example/j1/vocals.mp3?t=60",
            "sha256": stored.sha256,
            "bytes": 9,
            "content_type": "audio/mpeg",
        }
    }
    assert data["manifest_url"] == "https://files.example/j1/manifest.json?t=60"


def test_a_failing_receiver_is_retried_with_backoff_then_gets_it(world):
    ledger, sender, clock, received, answers, dispatched = world
    ended_job(ledger)
    answers.extend([500, 503])
    assert sender.deliver("j1") == "retry"
    assert sender.deliver("j1") == "not_due"  # an early duplicate message does nothing
    clock.now += dispatched[-1][1]
    assert sender.deliver("j1") == "retry"
    clock.now += dispatched[-1][1]
    assert sender.deliver("j1") == "delivered"
    delays = [d for _, d in dispatched]
    assert 8 <= delays[0] <= 12 and 16 <= delays[1] <= 24  # 10 s, then 20 s, +-20%
    assert [d["status_code"] for d in deliveries(ledger, "j1")] == [500, 503, 200]
    assert len({r.headers["webhook-id"] for r in received}) == 1  # receivers can dedupe


def test_delivery_gives_up_after_the_last_attempt(world):
    ledger, sender, clock, _, answers, dispatched = world
    ended_job(ledger)
    answers.extend([500, 500, 500])
    for _ in range(2):
        assert sender.deliver("j1") == "retry"
        clock.now += dispatched[-1][1]
    assert sender.deliver("j1") == "gave_up"
    assert ledger.get("j1").webhook_status == "failed"
    assert ledger.redis.zcard(ledger.keys.webhooks_due) == 0


def test_a_host_resolving_to_a_private_address_is_never_contacted(world, make_settings):
    ledger, sender, _, received, _, _ = world

    def rebinding(url):
        raise BlockedAddress("resolves to a non-public address (10.0.0.8)")

    sender._resolve = rebinding
    ended_job(ledger)
    assert sender.deliver("j1") == "gave_up"
    assert received == []
    assert deliveries(ledger, "j1")[0]["error"].startswith("blocked:")


@pytest.mark.parametrize(
    ("address", "contacted"), [("127.0.0.1", True), ("169.254.169.254", False), ("fe80::1", False)]
)
def test_allowing_private_receivers_never_opens_link_local_or_metadata_addresses(
    world, make_settings, monkeypatch, address, contacted
):
    ledger, _, clock, received, _, _ = world
    settings = make_settings(
        webhook_secret=SECRET, webhook_max_attempts=1, allow_private_webhook_hosts=True
    )

    def resolving(host, port, **_):
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", resolving)
    http = httpx.Client(
        transport=httpx.MockTransport(lambda r: (received.append(r), httpx.Response(200))[1])
    )
    sender = WebhookSender(ledger, settings, http, lambda job_id, delay: None, clock=clock)
    ended_job(ledger, webhook="http://receiver.example.com/x")
    sender.deliver("j1")
    assert bool(received) is contacted
    if not contacted:
        error = deliveries(ledger, "j1")[0]["error"]
        assert "link-local" in error and "DANGEROUSLY_ALLOW_LINK_LOCAL_HOSTS" in error


def test_lost_messages_are_sent_again_by_the_sweep_and_announce_only_when_due(world):
    ledger, _, clock, _, _, _ = world
    ended_job(ledger)
    sent = []
    assert announce(ledger, lambda j, d: sent.append(j), "j1")
    assert not announce(ledger, lambda j, d: sent.append(j), "nope")
    assert redispatch_overdue(ledger, lambda j, d: sent.append(j), now=clock.now, grace_s=60) == []
    redispatch_overdue(ledger, lambda j, d: sent.append(j), now=clock.now + 61, grace_s=60)
    assert sent == ["j1", "j1"]
