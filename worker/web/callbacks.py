"""Vidgo's completion callbacks: a hint to poll now, never a source of truth.

Vidgo does not sign callbacks, and their bodies come flat or wrapped, late, repeated or never.
So a callback is only believed to be *from Vidgo about this job* when its URL carries the job's
unguessable callback token (compared in constant time), and even then its body is not trusted:
nothing in it is stored or followed. It wakes the job's poll at once (a fresh step token, so
the countdown poll already queued becomes stale), and that poll asks Vidgo what really happened.
Polling on its own schedule remains the safety net.
"""

from __future__ import annotations

import hmac
import logging
import time
from enum import StrEnum
from typing import Any

from vidgo_stems import jsonsafe
from vidgo_stems.errors import InvalidRequest
from vidgo_stems.jsonsafe import DEFAULT_LIMITS, JsonLimits, JsonRefused
from vidgo_stems.models import validate_job_id
from vidgo_stems.pipeline.ledger import Ledger
from vidgo_stems.pipeline.recovery import kick
from vidgo_stems.pipeline.states import TaskName, states_of
from vidgo_stems.text import neutralise
from vidgo_stems.vidgo.parse import unwrap_data

log = logging.getLogger(__name__)

#: States in which the next step is a poll that a callback can bring forward.
WAKEABLE = states_of(TaskName.POLL)


class CallbackOutcome(StrEnum):
    WOKEN = "woken"  # the poll was brought forward
    DUPLICATE = "duplicate"  # woken moments ago by an earlier copy
    IGNORED = "ignored"  # the job is past polling (downloading, done) or not yet submitted
    REFUSED = "refused"  # unknown job or wrong token: nothing happens

    @property
    def accepted(self) -> bool:
        return self is not CallbackOutcome.REFUSED


def first_callback_within(ledger: Ledger, job_id: str, seconds: float) -> bool:
    """True for the first Vidgo callback of a job within ``seconds`` (later ones repeat it)."""
    key = ledger.keys.callback_debounce(job_id)
    return bool(ledger.redis.set(key, "1", nx=True, px=max(1, int(seconds * 1000))))


def callback_hint(body: bytes, limits: JsonLimits = DEFAULT_LIMITS) -> dict[str, Any]:
    """``task_id`` and ``status`` from a flat or wrapped body, for the log and history only.
    No body, however deep, long or broken, makes this raise."""
    try:
        decoded = jsonsafe.loads(body, limits)
    except JsonRefused:
        return {"body": "unparsable"}
    if not isinstance(decoded, dict):
        return {"body": "not an object"}
    parsed = unwrap_data(decoded)
    hint = {k: parsed.get(k) for k in ("task_id", "status")}
    # Kept for the log and history only, so made printable: no control characters, short.
    return {k: neutralise(v, 64) for k, v in hint.items() if isinstance(v, str)}


def handle_callback(
    ledger: Ledger,
    job_id: str,
    token: str,
    body: bytes,
    *,
    debounce_s: float = 1.0,
    now: float | None = None,
    limits: JsonLimits = DEFAULT_LIMITS,
) -> CallbackOutcome:
    """Check a callback for ``job_id`` and, when genuine and useful, wake the job's poll."""
    now = time.time() if now is None else now
    try:
        validate_job_id(job_id)
    except InvalidRequest:
        return CallbackOutcome.REFUSED
    job = ledger.get(job_id)
    expected = job.callback_token if job is not None else None
    # compare_digest runs in time independent of where the strings differ.
    if job is None or not expected or not hmac.compare_digest(token.encode(), expected.encode()):
        log.warning("refused a Vidgo callback for %s: unknown job or wrong token", job_id)
        return CallbackOutcome.REFUSED
    if job.state not in WAKEABLE:
        return CallbackOutcome.IGNORED
    hint = callback_hint(body, limits)
    if not first_callback_within(ledger, job_id, debounce_s):
        return CallbackOutcome.DUPLICATE
    if not kick(ledger, job, now=now, event="callback", detail={"hint": hint}):
        return CallbackOutcome.IGNORED  # it moved on meanwhile; its own step carries on
    ledger.bump_counter("callbacks_woken")
    log.info("job %s: Vidgo callback (%s) woke the poll", job_id, hint)
    return CallbackOutcome.WOKEN
