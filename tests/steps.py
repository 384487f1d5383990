"""A message encoder for unit tests: steps go through the ledger's script as small JSON
messages, and the log reads back, from Redis, those that were really sent (pushed onto the
queue) or are waiting in the schedule, in the order they were handed off."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Mapping
from typing import Any

from vidgo_stems.keys import Keys
from vidgo_stems.models import JobRequest
from vidgo_stems.pipeline.ledger import Ledger
from vidgo_stems.pipeline.record import JobRecord, Subscription
from vidgo_stems.pipeline.states import Step, TaskName

QUEUE = "test-steps"


class StepLog:
    """``Ledger(client, encode=StepLog(client, prefix))``; then use it like a list of steps."""

    def __init__(self, client: Any, prefix: str) -> None:
        self._client = client
        self._keys = Keys(prefix)
        self._seq = itertools.count()
        self.queue = f"{prefix}:{QUEUE}"

    def __call__(self, step: Step) -> tuple[str, str]:
        return self.queue, json.dumps(
            {
                "seq": next(self._seq),
                "task": step.task.value,
                "job_id": step.job_id,
                "token": step.token,
                "countdown_s": step.countdown_s,
                "retries": step.retries,
                "part": step.part,
            }
        )

    def _read(self) -> list[Step]:
        raw = list(self._client.lrange(self.queue, 0, -1))
        for value in self._client.hvals(self._keys.schedule_messages):
            raw.append(value.split(b"\n", 1)[1] if isinstance(value, bytes) else value)
        decoded = sorted((json.loads(m) for m in raw), key=lambda m: m["seq"])
        return [
            Step(
                TaskName(m["task"]),
                m["job_id"],
                m["token"],
                m["countdown_s"],
                m["retries"],
                m.get("part"),
            )
            for m in decoded
        ]

    def queued(self) -> list[Step]:
        """Only the steps pushed onto the queue (due at once), oldest first."""
        return [s for s in self._read() if s.countdown_s <= 0]

    def __iter__(self) -> Iterator[Step]:
        return iter(self._read())

    def __len__(self) -> int:
        return len(self._read())

    def __getitem__(self, index: Any) -> Any:
        return self._read()[index]

    def __eq__(self, other: object) -> bool:
        return self._read() == other

    __hash__ = None  # type: ignore[assignment]


def create_job(
    ledger: Ledger,
    job_id: str,
    request: JobRequest,
    *,
    token: str,
    webhook_url: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> tuple[JobRecord, bool]:
    """Create a QUEUED job unless one exists (no first message sent); returns the job and
    whether it is new. A webhook URL or metadata subscribes the caller."""
    subscription = None
    if webhook_url is not None or metadata:
        subscription = Subscription.new(webhook_url=webhook_url, metadata=metadata)
    found = ledger.enqueue(job_id, request, token=token, subscription=subscription)
    return found.job, found.created
