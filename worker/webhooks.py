"""Completion webhooks: a signed POST to the caller when a job ends, retried until it lands.

The outbox is a Redis sorted set (``<prefix>:webhooks:due``, score = when the next attempt is
due). A job joins it in the same Lua step that makes it DONE, FAILED or CANCELLED, so an ended
job's webhook cannot be lost between the end and the send. ``vidgo.webhook`` messages do the
sending; one is sent at once when a job ends, one with a countdown after each failed attempt,
and the recovery sweep re-sends the message for any entry left overdue (a lost message).

Events follow the Standard Webhooks convention (https://www.standardwebhooks.com): headers
``webhook-id`` (stable per event, so receivers can drop repeats), ``webhook-timestamp`` and
``webhook-signature`` = ``v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` under the shared
secret. Delivery is at least once. Receivers verify with :func:`verify`, or with any Standard
Webhooks library.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import standardwebhooks
from pydantic import SecretStr

from vidgo_stems.backoff import backoff_s
from vidgo_stems.errors import ConfigError, WebhookVerificationError
from vidgo_stems.files.links import link, open_configured_storage, stem_links
from vidgo_stems.files.storage import Storage
from vidgo_stems.models import STEMS_STORED
from vidgo_stems.observe import metrics
from vidgo_stems.pipeline.ledger import Ledger
from vidgo_stems.pipeline.outbox import (
    PROGRESS,
    Outbox,
    announce,
    deliveries,
    entry_of,
    redispatch_overdue,
)
from vidgo_stems.pipeline.record import JobRecord, Subscription
from vidgo_stems.pipeline.states import JobState
from vidgo_stems.settings import Settings, secret_bytes
from vidgo_stems.urlsafety import BlockedAddress, connectable, webhook_policy

__all__ = [
    "WebhookSender",
    "WebhookVerificationError",
    "announce",
    "deliveries",
    "event_for",
    "redispatch_overdue",
    "verify",
]

log = logging.getLogger(__name__)

EVENT_TYPES = {
    JobState.DONE: "job.done",
    JobState.FAILED: "job.failed",
    JobState.CANCELLED: "job.cancelled",
}
#: Standard Webhooks' replay window: a receiver refuses events older or newer than this.
TOLERANCE_S = 300


def verify(secret: str, body: bytes | str, headers: Mapping[str, str]) -> dict[str, Any]:
    """Check a received webhook and return its event; raise WebhookVerificationError if forged.

    ``secret`` is the shared ``whsec_...`` secret, ``body`` the raw request body (before any
    JSON parsing: re-serialised JSON does not verify), ``headers`` the request headers.
    Timestamps more than five minutes off are refused, which stops replays.
    """
    try:
        key = secret_bytes(SecretStr(secret))
    except ValueError as exc:
        raise WebhookVerificationError(f"the webhook secret {exc}") from None
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    try:
        event = standardwebhooks.Webhook(key).verify(text, dict(headers))
    except standardwebhooks.WebhookVerificationError as exc:
        raise WebhookVerificationError(f"webhook refused: {exc}") from None
    except (ValueError, TypeError) as exc:  # malformed signature header or body
        raise WebhookVerificationError(f"webhook refused: malformed ({exc})") from None
    if not isinstance(event, dict):
        raise WebhookVerificationError("webhook refused: the body is not a JSON object")
    return event


def message_id(job: JobRecord, sub_id: str, event: str | None = None) -> str:
    """Stable per event and subscriber: a receiver that saw this id already can drop the
    repeat. A job retried after it ended ends (and stores its stems) again under a new id."""
    what = (event or job.state.value).removeprefix("job.").lower()
    return f"msg_{job.job_id}_{sub_id}_{what}_{job.retry_count}"


def event_for(
    job: JobRecord,
    storage: Storage,
    ttl_s: int,
    subscription: Subscription | None = None,
    event: str | None = None,
) -> dict[str, Any]:
    """The event body, as one subscriber sees it (its own metadata): no secrets; links minted
    now (they live ``ttl_s`` seconds: GET the job for fresh ones). The job's end, or
    ``job.stems_stored``: the stems as Vidgo served them, stored and linkable while
    post-processing goes on."""
    if event == STEMS_STORED:
        # The stems as Vidgo served them, verified and stored: their links stay valid for
        # their whole life, whatever the job does meanwhile.
        stems = stem_links(storage, job.stems, ttl_s)
        return _event(STEMS_STORED, job.downloaded_at or job.updated_at, job, subscription, stems)
    error = {"code": job.error_code, "message": job.error_message or ""} if job.error_code else None
    done = job.state is JobState.DONE
    return _event(
        EVENT_TYPES[job.state],
        job.updated_at,
        job,
        subscription,
        stem_links(storage, job.outputs or job.stems, ttl_s) if done else {},
        manifest_url=link(storage, job.manifest_key, ttl_s) if done else None,
        error=error,
    )


def _event(
    kind: str,
    at: float,
    job: JobRecord,
    subscription: Subscription | None,
    stems: dict[str, Any],
    *,
    manifest_url: str | None = None,
    error: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "type": kind,
        "timestamp": datetime.fromtimestamp(at, UTC).isoformat(),
        "data": {
            "job_id": job.job_id,
            "subscription_id": subscription.sub_id if subscription else None,
            "state": job.state.value,
            "request": job.request.model_dump(mode="json"),
            "metadata": subscription.metadata if subscription else job.metadata,
            "vidgo_task_ids": list(job.vidgo_task_ids),
            "stems": stems,
            "manifest_url": manifest_url,
            "error": error,
        },
    }


def signed_headers(secret: SecretStr, msg_id: str, timestamp: float, body: str) -> dict[str, str]:
    """The Standard Webhooks headers for ``body``."""
    signer = standardwebhooks.Webhook(secret_bytes(secret))
    when = datetime.fromtimestamp(int(timestamp), UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp)),
        "webhook-signature": signer.sign(msg_id, when, body),
    }


@dataclass(frozen=True)
class Attempt:
    """One delivery attempt, as kept on the job."""

    attempt: int
    at: float
    url_host: str
    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class WebhookSender:
    """Delivers the due webhook of one job per call; safe under duplicate messages."""

    def __init__(
        self,
        ledger: Ledger,
        settings: Settings,
        http: httpx.Client,
        dispatch: Callable[[str, float], None],
        *,
        storage: Storage | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        resolve: Callable[[str], object] | None = None,
    ) -> None:
        self._ledger = ledger
        self._outbox = Outbox(ledger)
        self._storage = storage or open_configured_storage(settings)
        self._settings = settings
        self._http = http
        self._dispatch = dispatch
        self._clock = clock
        self._rng = rng or random.Random()
        # Every address of the receiver is judged before each attempt, by the same policy as
        # at enqueue (a test may pass its own resolver).
        policy = webhook_policy(settings)
        self._resolve = resolve or (lambda url: connectable(url, policy))

    def deliver(self, job_id: str) -> str:
        """Attempt every webhook of the job that is due; returns what happened (one word per
        subscriber, comma-separated), for logs and tests."""
        due = self._outbox.due_for(job_id)
        if not due:
            return "gone"  # delivered or given up already
        # A subscription's stems-stored event goes before its end.
        order = sorted(due, key=lambda e: (entry_of(e)[0], entry_of(e)[1] is None))
        return ",".join(self._deliver_one(job_id, entry) for entry in order)

    def _deliver_one(self, job_id: str, sub_id: str) -> str:
        lock = self._outbox.lock(job_id, sub_id, self._settings.webhook_timeout_s + 30)
        if not lock.acquire():
            return "busy"  # another worker is delivering it right now
        try:
            outcome = self._deliver_locked(job_id, sub_id)
        finally:
            lock.release()
        if outcome in ("delivered", "retry", "gave_up"):  # an attempt was made
            metrics.WEBHOOK_DELIVERIES.labels(outcome).inc()
        return outcome

    def _deliver_locked(self, job_id: str, entry: str) -> str:
        """Deliver one outbox entry (``entry``: an entry id, see :mod:`vidgo_stems.pipeline.outbox`)
        if it is due and still wanted."""
        due_at = self._outbox.due_at(job_id, entry)
        if due_at is None:
            return "gone"
        now = self._clock()
        if due_at > now + 1.0:
            return "not_due"  # an early or duplicate message; the scheduled one will come
        sub_id, event = entry_of(entry)
        job = self._ledger.get(job_id)
        sub = self._outbox.subscription(job_id, sub_id)
        if job is None or sub is None or not sub.webhook_url or not _deliverable(job, event):
            self._outbox.clear(job_id, entry)
            return "gone"
        if event is None and EVENT_TYPES[job.state] not in sub.events:
            self._finish(job_id, entry, "not_asked")
            return "not_asked"
        earlier = self._outbox.due_at(job_id, sub_id + PROGRESS) if event is None else None
        if earlier is not None:  # the stems-stored event is still on its way: the end waits
            self._outbox.schedule(job_id, entry, earlier + 0.5)
            return "held"
        return self._attempt(job, sub, entry, event, now)

    def _attempt(
        self, job: JobRecord, sub: Subscription, entry: str, event: str | None, now: float
    ) -> str:
        """POST one event; then done, retried later, or given up."""
        job_id = job.job_id
        attempt = self._post(job, sub, len(self._outbox.deliveries(job_id, entry)) + 1, event)
        self._outbox.record(job_id, entry, asdict(attempt))
        if attempt.ok:
            self._finish(job_id, entry, "delivered")
            log.info("job %s: webhook %s delivered (attempt %d)", job_id, entry, attempt.attempt)
            return "delivered"
        give_up = attempt.attempt >= self._settings.webhook_max_attempts or (
            attempt.error is not None and attempt.error.startswith("blocked:")
        )
        if give_up:
            self._finish(job_id, entry, "failed")
            log.error(
                "job %s: webhook to %s given up after %d attempt(s): %s",
                job_id,
                attempt.url_host,
                attempt.attempt,
                attempt.error or f"HTTP {attempt.status_code}",
            )
            return "gave_up"
        delay = self.backoff_s(attempt.attempt)
        self._outbox.schedule(job_id, entry, now + delay)
        self._outbox.set_status(job_id, entry, "retrying")
        self._dispatch(job_id, delay)
        log.warning(
            "job %s: webhook attempt %d to %s failed (%s); next in %.1fs",
            job_id,
            attempt.attempt,
            attempt.url_host,
            attempt.error or f"HTTP {attempt.status_code}",
            delay,
        )
        return "retry"

    def backoff_s(self, attempt: int) -> float:
        """Exponential from webhook_backoff_base_s, capped, with +-20% jitter."""
        s = self._settings
        return backoff_s(
            attempt - 1,
            base_s=s.webhook_backoff_base_s,
            max_s=s.webhook_backoff_max_s,
            jitter=(0.8, 1.2),
            rng=self._rng,
        )

    def _post(
        self, job: JobRecord, sub: Subscription, number: int, event: str | None = None
    ) -> Attempt:
        url = sub.webhook_url or ""
        parts = urlsplit(url)
        host = parts.hostname or ""
        started = self._clock()

        def attempt(status: int | None, error: str | None) -> Attempt:
            elapsed = int((self._clock() - started) * 1000)
            return Attempt(number, started, host, status, error, elapsed)

        try:
            self._resolve(url)
        except BlockedAddress as exc:
            return attempt(None, f"blocked: {host} {exc}")
        try:
            secret = self._settings.require_webhook_secret()
        except ConfigError as exc:
            return attempt(None, f"not signed: {exc}")
        payload = event_for(job, self._storage, self._settings.url_ttl_s, sub, event)
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True)
        headers = {
            "content-type": "application/json",
            "user-agent": "vidgo-stems-webhooks/1",
            **signed_headers(secret, message_id(job, sub.sub_id, event), self._clock(), body),
        }
        try:
            # Streamed and never read: a receiver's answer body is not our business.
            with self._http.stream("POST", url, content=body.encode(), headers=headers) as resp:
                return attempt(resp.status_code, None)
        except httpx.HTTPError as exc:
            return attempt(None, f"{type(exc).__name__}: {exc}"[:300])

    def _finish(self, job_id: str, sub_id: str, status: str) -> None:
        self._outbox.clear(job_id, sub_id)
        self._outbox.set_status(job_id, sub_id, status)


def _deliverable(job: JobRecord, event: str | None) -> bool:
    """Whether the job can still tell this event: its end once it ended, its stems once they
    are stored (and the job not sent back to download them again)."""
    if event is None:
        return job.state.is_terminal
    return bool(job.stems) and job.state is not JobState.DOWNLOADING
