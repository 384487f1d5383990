"""Celery signals that count tasks the way celery-exporter does, from inside the worker.

Connected by importing this module: :mod:`vidgo_stems.celery_app` imports it, so publishing counts in
every process that sends (gateway, batch feeder, pool children), and the worker's own signals
count in the processes that receive (the main process) and run (the pool children) tasks.
"""

from __future__ import annotations

import time
from typing import Any

from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    after_task_publish,
    task_failure,
    task_postrun,
    task_prerun,
    task_received,
    task_rejected,
    task_retry,
    task_revoked,
    task_success,
)

from vidgo_stems.errors import ConfigError
from vidgo_stems.observe import logs
from vidgo_stems.observe import metrics as m
from vidgo_stems.settings import get_settings

#: Start times of the tasks running in this process, by task id.
_started: dict[str, float] = {}


@after_setup_logger.connect
@after_setup_task_logger.connect
def _log_format(logger: Any = None, **_: Any) -> None:
    """Celery set up its handlers: give them our format (plain or JSON) and secret scrubbing."""
    try:
        settings = get_settings()
    except ConfigError:
        return  # the worker refuses to start with its own message; keep Celery's format
    logs.apply_to(logger, settings)


def _host(request: Any) -> str:
    return str(getattr(request, "hostname", None) or m.HOSTNAME)


@after_task_publish.connect
def _sent(sender: str | None = None, **_: Any) -> None:
    m.TASK_SENT.labels(name=sender or "unknown", hostname=m.HOSTNAME).inc()


@task_received.connect
def _received(request: Any = None, **_: Any) -> None:
    m.TASK_RECEIVED.labels(name=getattr(request, "name", "unknown"), hostname=_host(request)).inc()


@task_prerun.connect
def _prerun(task_id: str = "", task: Any = None, **_: Any) -> None:
    _started[task_id] = time.monotonic()
    logs.stage_started(m.stage_of(task.name), int(task.request.retries or 0) + 1)
    m.TASK_STARTED.labels(name=task.name, hostname=_host(task.request)).inc()


@task_postrun.connect
def _postrun(task_id: str = "", task: Any = None, state: str | None = None, **_: Any) -> None:
    started = _started.pop(task_id, None)
    logs.stage_finished()
    if started is None:
        return
    elapsed = time.monotonic() - started
    m.TASK_RUNTIME.labels(name=task.name, hostname=_host(task.request)).observe(elapsed)
    outcome = {"SUCCESS": "success", "RETRY": "retry"}.get(state or "", "failure")
    m.STAGE_DURATION.labels(stage=m.stage_of(task.name), outcome=outcome).observe(elapsed)


@task_success.connect
def _succeeded(sender: Any = None, **_: Any) -> None:
    m.TASK_SUCCEEDED.labels(name=sender.name, hostname=_host(sender.request)).inc()


@task_failure.connect
def _failed(sender: Any = None, exception: BaseException | None = None, **_: Any) -> None:
    m.TASK_FAILED.labels(
        name=sender.name, hostname=_host(sender.request), exception=type(exception).__name__
    ).inc()


@task_retry.connect
def _retried(sender: Any = None, request: Any = None, **_: Any) -> None:
    m.TASK_RETRIED.labels(name=sender.name, hostname=_host(request)).inc()


@task_rejected.connect
def _rejected(message: Any = None, **_: Any) -> None:
    headers = getattr(message, "headers", None) or {}
    m.TASK_REJECTED.labels(name=str(headers.get("task", "unknown")), hostname=m.HOSTNAME).inc()


@task_revoked.connect
def _revoked(request: Any = None, **_: Any) -> None:
    m.TASK_REVOKED.labels(name=getattr(request, "name", "unknown"), hostname=_host(request)).inc()
