"""The completion-webhook outbox, seen from the pipeline: announce a job that just ended, and
re-send the message of any webhook left overdue.

The outbox itself is a sorted set the ledger keeps (a job joins it in the same Lua step that
ends it); the sending is :mod:`worker.web.webhooks`, run by the ``vidgo.webhook`` task.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from worker.pipeline.ledger import Ledger


def deliveries(ledger: Ledger, job_id: str) -> list[dict[str, Any]]:
    """The job's delivery attempts, oldest first."""
    return ledger.deliveries(job_id)


def announce(ledger: Ledger, dispatch: Callable[[str, float], None], job_id: str) -> bool:
    """Send the webhook message of a job that just ended, if it has a webhook waiting."""
    if ledger.webhook_due_at(job_id) is None:
        return False
    dispatch(job_id, 0.0)
    return True


def redispatch_overdue(
    ledger: Ledger,
    dispatch: Callable[[str, float], None],
    *,
    now: float,
    grace_s: float,
    limit: int = 1000,
) -> list[str]:
    """Re-send the message of every webhook overdue by ``grace_s`` (its message was lost)."""
    job_ids = ledger.webhooks_due_before(now - grace_s, limit=limit)
    for job_id in job_ids:
        dispatch(job_id, 0.0)
    return job_ids
