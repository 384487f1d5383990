"""The Celery app and dispatch: all that producers (api, gateway, batch) need.

Importing this module reads no setting and opens no connection: Celery's configuration is a
promise resolved from :func:`worker.settings.get_settings` on first use. :class:`Producer`
bundles what the producer side works with (settings, Redis, the ledger and the two dispatch
functions); code that enqueues takes one as an argument, and :func:`producer` gives the
process's default one. The consumer side (stage clients, worker signals, the sweep) lives in
:mod:`worker.runtime`, which producers never import.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

import redis
from celery import Celery

from celeryconfig import celery_config
from worker.errors import JobCancelled, JobFailed
from worker.files.links import open_configured_storage
from worker.files.storage import Storage
from worker.observe import tasks as _task_metrics  # noqa: F401  (connects the task signals)
from worker.pipeline.ledger import Ledger
from worker.pipeline.states import Step, TaskName
from worker.redisconn import connect
from worker.settings import Settings, get_settings

app = Celery("vidgo_stems")
app.add_defaults(lambda: celery_config(get_settings()))


def dispatch(step: Step) -> None:
    """Send the next pipeline message. Post-processing runs under the job id, so its result
    (the manifest) can be read from the result store by job id, and on its own queue when
    ``VIDGO_STEMS_POSTPROCESS_QUEUE`` is set."""
    post = step.task is TaskName.POSTPROCESS
    app.send_task(
        step.task.value,
        kwargs={"job_id": step.job_id, "token": step.token},
        countdown=step.countdown_s or None,
        task_id=step.job_id if post else None,
        queue=queue_for(step.task, get_settings()),
        # The message's own flag wins over the task's: only the final step stores a result.
        ignore_result=not post,
    )


def record_end(job_id: str, code: str, message: str, *, cancelled: bool = False) -> None:
    """Store a FAILED or CANCELLED job's outcome as the Celery result under its id, so that
    ``AsyncResult(job_id).get()`` raises JobFailed / JobCancelled instead of waiting."""
    error = (JobCancelled if cancelled else JobFailed)(code, message)
    app.backend.mark_as_failure(job_id, error)


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


def queue_for(task: TaskName, settings: Settings) -> str:
    """The queue a task's messages go to."""
    if task is TaskName.POSTPROCESS and settings.postprocess_queue:
        return settings.postprocess_queue
    return str(app.conf.task_default_queue)


def worker_queues(settings: Settings) -> list[str]:
    """The queues a worker consumes by default: the main one, and post-processing's own."""
    return [q for q in dict.fromkeys([settings.queue_name, settings.postprocess_queue]) if q]


def dispatch_webhook(job_id: str, countdown_s: float) -> None:
    """Send the message that delivers a job's completion webhook."""
    app.send_task(
        TaskName.WEBHOOK.value,
        kwargs={"job_id": job_id},
        countdown=countdown_s or None,
        queue=app.conf.task_default_queue,
        ignore_result=True,
    )


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
    )


@dataclass
class Producer:
    """What code that enqueues and reads jobs works with; pass your own in tests."""

    settings: Settings
    redis: redis.Redis
    ledger: Ledger
    dispatch: Callable[[Step], None] = dispatch
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
