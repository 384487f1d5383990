"""The Celery app and message encoding: all that producers (api, gateway, batch) need.

Importing this module reads no setting and opens no connection: Celery's configuration is a
promise resolved from :func:`vidgo_stems.settings.get_settings` on first use. :class:`Producer`
bundles what the producer side works with (settings, Redis, the ledger, which sends each job's
messages itself, and the webhook dispatch); code that enqueues takes one as an argument, and
:func:`producer` gives the process's default one. The consumer side (stage clients, worker
signals, the sweep) lives in :mod:`vidgo_stems.runtime`, which producers never import.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from celery import Celery, signals

from vidgo_stems.celeryconfig import celery_config
from vidgo_stems.errors import JobCancelled, JobFailed
from vidgo_stems.files.links import open_configured_storage
from vidgo_stems.files.storage import Storage
from vidgo_stems.observe import tasks as _task_metrics  # noqa: F401  (connects the task signals)
from vidgo_stems.pipeline.ledger import Ledger
from vidgo_stems.pipeline.schedule import Schedule
from vidgo_stems.pipeline.states import Step, TaskName
from vidgo_stems.redisconn import connect
from vidgo_stems.settings import Settings, get_settings

app = Celery("vidgo_stems")
app.add_defaults(lambda: celery_config(get_settings()))


def encode_step(step: Step, settings: Settings) -> tuple[str, str]:
    """The queue and the message for ``step``, so that the ledger can push it (or schedule it)
    in the same script that moves the job."""
    post = step.task in (TaskName.POSTPROCESS, TaskName.POSTPROCESS_STEM)
    queue = settings.postprocess_queue if post and settings.postprocess_queue else None
    queue = queue or settings.queue_name
    kwargs = {"job_id": step.job_id, "token": step.token}
    if step.part is not None:
        kwargs["part"] = step.part
    message = encode_message(step.task.value, kwargs, queue=queue, retries=step.retries)
    return queue, message


def encode_message(
    name: str,
    kwargs: dict[str, Any],
    *,
    queue: str,
    task_id: str | None = None,
    ignore_result: bool = True,
    retries: int = 0,
) -> str:
    """A task message exactly as ``send_task`` would push it onto a Redis list: Celery builds
    the message, kombu's Redis envelope goes around it, and the publish signals fire as for
    any sent task (task counters, trace context)."""
    task_id = task_id or str(uuid.uuid4())
    headers, properties, body, _ = app.amqp.create_task_message(
        task_id, name, (), kwargs, retries=retries, ignore_result=ignore_result, root_id=task_id
    )
    signals.before_task_publish.send(
        sender=name,
        body=body,
        exchange="",
        routing_key=queue,
        declare=[],
        headers=headers,
        properties=properties,
        retry_policy=None,
    )
    envelope = {
        "body": base64.b64encode(json.dumps(body).encode()).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": {
            **properties,
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    signals.after_task_publish.send(
        sender=name, body=body, headers=headers, exchange="", routing_key=queue
    )
    return json.dumps(envelope)


def record_end(job_id: str, code: str, message: str, *, cancelled: bool = False) -> None:
    """Store a FAILED or CANCELLED job's outcome as the Celery result under its id, so that
    ``AsyncResult(job_id).get()`` raises JobFailed / JobCancelled instead of waiting."""
    error = (JobCancelled if cancelled else JobFailed)(code, message)
    app.backend.mark_as_failure(job_id, error)


def record_done(job_id: str, manifest: dict[str, Any]) -> None:
    """Store a DONE job's manifest as the Celery result under its id, so that
    ``AsyncResult(job_id).get()`` returns it (the join stores it; no step's own result is
    kept)."""
    app.backend.mark_as_done(job_id, manifest)


def forget_result(job_id: str) -> None:
    """Drop the stored outcome of a job that starts again (a retry)."""
    app.backend.forget(job_id)
    # Celery's Redis result consumer keeps the last outcome it heard for an id in a buffer
    # that ``forget`` leaves alone; a later AsyncResult(job_id).get() in this process would
    # answer with it. Drop it too (a private part of Celery, hence the guard).
    consumer = getattr(app.backend, "result_consumer", None)
    pending = getattr(consumer, "_pending_messages", None)
    if pending is not None and hasattr(pending, "pop"):
        pending.pop(job_id, None)


def worker_queues(settings: Settings) -> list[str]:
    """The queues a worker consumes by default: the main one, and post-processing's own."""
    return [q for q in dict.fromkeys([settings.queue_name, settings.postprocess_queue]) if q]


def dispatch_webhook(job_id: str, countdown_s: float) -> None:
    """Send the message that delivers a job's completion webhook, now or (a later attempt)
    through the schedule."""
    queue = str(app.conf.task_default_queue)
    if countdown_s <= 0:
        app.send_task(
            TaskName.WEBHOOK.value, kwargs={"job_id": job_id}, queue=queue, ignore_result=True
        )
        return
    settings = get_settings()
    message = encode_message(TaskName.WEBHOOK.value, {"job_id": job_id}, queue=queue)
    schedule = Schedule(producer().redis, settings.redis_key_prefix)
    entry = f"{schedule.keys.job(job_id)}#webhook"
    schedule.add(entry, time.time() + countdown_s, queue, message)


def dispatch_purge() -> None:
    """Send the message that applies retention (``VIDGO_STEMS_PURGE_AFTER_S``) once."""
    app.send_task(TaskName.PURGE.value, queue=app.conf.task_default_queue, ignore_result=True)


def redis_client(settings: Settings) -> redis.Redis:
    """A client for the shared Redis (its primary, under Sentinel)."""
    return connect(settings)


def make_ledger(client: redis.Redis, settings: Settings) -> Ledger:
    return Ledger(
        client,
        prefix=settings.redis_key_prefix,
        retention_s=settings.job_retention_s,
        durable_replicas=settings.redis_durable_replicas,
        durable_timeout_s=settings.redis_durable_timeout_s,
        encode=functools.partial(encode_step, settings=settings),
    )


@dataclass
class Producer:
    """What code that enqueues and reads jobs works with; pass your own in tests."""

    settings: Settings
    redis: redis.Redis
    ledger: Ledger
    dispatch_webhook: Callable[[str, float], None] = dispatch_webhook
    record_end: Callable[..., None] = record_end
    forget_result: Callable[[str], None] = forget_result
    _storage: Storage | None = None

    @property
    def storage(self) -> Storage:
        """Where stems are stored, for minting caller links (opened on first use)."""
        if self._storage is None:
            self._storage = open_configured_storage(self.settings)
        return self._storage

    @classmethod
    def from_settings(cls, settings: Settings) -> Producer:
        client = redis_client(settings)
        return cls(settings=settings, redis=client, ledger=make_ledger(client, settings))

    def close(self) -> None:
        self.redis.close()


_default: Producer | None = None
_default_pid: int | None = None
_default_lock = threading.Lock()


def producer() -> Producer:
    """This process's default Producer, built from the environment on first use (and again in
    a forked child, which must not share its parent's connections)."""
    global _default, _default_pid
    with _default_lock:
        if _default is None or _default_pid != os.getpid():
            _default = Producer.from_settings(get_settings())
            _default_pid = os.getpid()
        return _default
