"""Console actions: a preview first, then an explicit confirmation of exactly that preview.

A retry preview is the plan ``vidgo-stems retry --dry-run`` prints: for each FAILED or
CANCELLED job selected, :func:`vidgo_stems.pipeline.retry.plan_retry` says where it starts again
and whether it may pay for a new Vidgo task; the totals are the jobs, those that may pay, and
up to how many credits (``VIDGO_STEMS_CREDITS_PER_TASK`` each). A cancel preview counts the
active jobs selected and those already billed at Vidgo (which has no cancel). The selection
is stored in Redis for PLAN_TTL_S under a random id; confirming runs it on those jobs only,
each retry or cancel guarded by the ledger as usual, and records who did it.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, cast

from vidgo_stems.celery_app import Producer
from vidgo_stems.errors import InvalidRequest, JobConflict
from vidgo_stems.keys import text
from vidgo_stems.pipeline.listing import list_jobs
from vidgo_stems.pipeline.record import JobRecord
from vidgo_stems.pipeline.retry import RETRYABLE, plan_retry, retry_job
from vidgo_stems.pipeline.states import ACTIVE_STATES, JobState
from vidgo_stems.producer import cancel
from vidgo_stems.web.console.figures import Scope

log = logging.getLogger("vidgo_stems.console")

#: A preview must be confirmed within this many seconds.
PLAN_TTL_S = 900
#: Lines of a preview shown (the totals always count every job).
SHOWN = 20
Action = Literal["retry", "cancel"]


@dataclass
class Selection:
    """What an action applies to: named jobs, or every job of a scope (with those codes)."""

    job_ids: list[str] = field(default_factory=list)
    scope: Scope = field(default_factory=Scope)
    codes: list[str] = field(default_factory=list)


@dataclass
class Preview:
    """What confirming would do: counts, cost, and the first lines of the plan."""

    plan_id: str
    action: Action
    jobs: int
    may_pay: int
    credits: float
    lines: list[str]
    scope: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def preview(producer: Producer, action: Action, selection: Selection, who: str) -> Preview:
    """Plan ``action`` over ``selection`` and keep the plan for confirmation."""
    jobs = _selected(producer, action, selection)
    if action == "retry":
        now = time.time()
        plans = [plan_retry(job, producer.storage, now=now) for job in jobs]
        ids = [plan.job_id for plan in plans]
        lines = [_plan_line(p.job_id, p.error_code, p.to.value, p.reason, p.may_pay) for p in plans]
        paying = sum(plan.may_pay for plan in plans)
        credits = paying * producer.settings.credits_per_task
    else:
        ids = [job.job_id for job in jobs]
        lines = [f"{job.job_id}  {job.state.value} -> CANCELLED" for job in jobs]
        paying, credits = sum(bool(job.vidgo_task_ids) for job in jobs), 0.0
    plan_id = secrets.token_urlsafe(12)
    stored = {"action": action, "job_ids": ids, "who": who}
    producer.redis.set(
        producer.ledger.keys.console_plan(plan_id), json.dumps(stored), ex=PLAN_TTL_S
    )
    scope = (
        "jobs " + ", ".join(selection.job_ids) if selection.job_ids else selection.scope.describe()
    )
    return Preview(plan_id, action, len(ids), paying, credits, lines[:SHOWN], scope)


@dataclass
class Outcome:
    """What a confirmed action did."""

    action: Action
    done: int
    may_pay: int
    refused: list[str]


def confirm(producer: Producer, plan_id: str, who: str) -> Outcome:
    """Run the previewed plan ``plan_id`` once; InvalidRequest when it is unknown or expired."""
    key = producer.ledger.keys.console_plan(plan_id)
    raw = cast(Any, producer.redis.getdel(key)) if plan_id.isprintable() else None
    if raw is None:
        raise InvalidRequest(
            "this preview is unknown, expired or already confirmed: preview the action again"
        )
    plan = json.loads(text(raw))
    action: Action = plan["action"]
    run = _retry_one if action == "retry" else _cancel_one
    done = paying = 0
    refused: list[str] = []
    for job_id in plan["job_ids"]:
        try:
            paying += run(producer, job_id, who)
            done += 1
        except (JobConflict, InvalidRequest) as exc:
            refused.append(f"{job_id}: {exc.message}")
    log.info(
        "console action by %s: %s of %d job(s) confirmed, %d done, %d may pay, %d refused",
        who, action, len(plan["job_ids"]), done, paying, len(refused),
    )  # fmt: skip
    return Outcome(action, done, paying, refused[:SHOWN])


def _retry_one(producer: Producer, job_id: str, who: str) -> int:
    plan = retry_job(
        producer.ledger,
        producer.storage,
        job_id,
        now=time.time(),
        forget_result=producer.forget_result,
        by=f"console {who}",
    )
    return int(plan.may_pay)


def _cancel_one(producer: Producer, job_id: str, who: str) -> int:
    job = producer.ledger.get(job_id)
    if job is None or job.state.is_terminal:
        state = job.state.value if job else "gone"
        raise JobConflict(f"job {job_id} is {state}: only active jobs are cancelled")
    cancel(job_id, force=True, producer=producer)
    log.info("console: %s cancelled job %s", who, job_id)
    return 0


def _plan_line(job_id: str, code: str | None, to: str, reason: str, may_pay: bool) -> str:
    """One line of the plan, as ``vidgo-stems retry --dry-run`` prints it."""
    cost = "may pay for a new Vidgo task" if may_pay else "reuses what was paid"
    return f"{job_id}  [{code}] -> {to}: {reason}; {cost}"


def _selected(producer: Producer, action: Action, selection: Selection) -> list[JobRecord]:
    """The jobs an action over ``selection`` applies to (ended ones for a retry, active ones
    for a cancel)."""
    wanted = set(RETRYABLE) if action == "retry" else set(ACTIVE_STATES)
    if selection.job_ids:
        jobs = [producer.ledger.get(job_id) for job_id in selection.job_ids]
        return [job for job in jobs if job is not None and job.state in wanted]
    codes = set(selection.codes)
    return [
        job
        for job in _in_scope(producer, sorted(wanted), selection.scope)
        if not codes or job.error_code in codes
    ]


def _in_scope(producer: Producer, states: list[JobState], scope: Scope) -> Iterator[JobRecord]:
    for state in states:
        cursor = None
        while True:
            page = list_jobs(
                producer.ledger,
                state=state,
                batch=scope.batch,
                since=scope.since,
                cursor=cursor,
                limit=500,
            )
            yield from page.jobs
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
