"""Prometheus metrics: what each process counts, in one place.

Names follow two conventions operators already alert on: celery-exporter's ``celery_task_*``
families for tasks (labels ``name`` and ``hostname``), and ``vidgo_stems_*`` for the pipeline.
Counters and histograms here are counted where the thing happens, in whichever process it
happens; under the prefork pool every child writes its own file in ``PROMETHEUS_MULTIPROC_DIR``
and the host's endpoint (:mod:`vidgo_stems.monitor.serve`) adds them up. What describes the whole
cluster rather than one process (jobs by state, queue depths, pending polls, in-flight slots,
bucket levels) is read from Redis at scrape time by :mod:`vidgo_stems.monitor.cluster`.

Every call here is cheap and never raises into the caller: a metric must not fail a stage.
"""

from __future__ import annotations

import socket

from prometheus_client import Counter, Gauge, Histogram

#: Seconds: from a quick Vidgo answer to a long post-processing run.
_DURATIONS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
#: Seconds the gateway took to answer: most answers are milliseconds, a stem download longer.
_HTTP = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
#: Seconds a poll started after its due time.
_LATENESS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)

HOSTNAME = socket.gethostname()

# --- Celery tasks, as celery-exporter names them -------------------------------------------
TASK_SENT = Counter("celery_task_sent", "Task messages published.", ["name", "hostname"])
TASK_RECEIVED = Counter("celery_task_received", "Task messages received.", ["name", "hostname"])
TASK_STARTED = Counter("celery_task_started", "Tasks started.", ["name", "hostname"])
TASK_SUCCEEDED = Counter("celery_task_succeeded", "Tasks succeeded.", ["name", "hostname"])
TASK_FAILED = Counter("celery_task_failed", "Tasks failed.", ["name", "hostname", "exception"])
TASK_RETRIED = Counter("celery_task_retried", "Tasks retried.", ["name", "hostname"])
TASK_REJECTED = Counter("celery_task_rejected", "Task messages rejected.", ["name", "hostname"])
TASK_REVOKED = Counter("celery_task_revoked", "Tasks revoked.", ["name", "hostname"])
TASK_RUNTIME = Histogram(
    "celery_task_runtime", "Task run time in seconds.", ["name", "hostname"], buckets=_DURATIONS
)
WORKER_UP = Gauge(
    "celery_worker_up",
    "1 while the worker on this host is up.",
    ["hostname"],
    multiprocess_mode="livemax",
)

# --- The pipeline --------------------------------------------------------------------------
JOBS_ENTERED = Counter("vidgo_stems_jobs_entered", "Jobs that moved into a state.", ["state"])
JOBS_FINISHED = Counter("vidgo_stems_jobs_finished", "Jobs that ended, by final state.", ["state"])
STAGE_DURATION = Histogram(
    "vidgo_stems_stage_duration_seconds",
    "Time one run of a stage took, by outcome (success, retry, failure).",
    ["stage", "outcome"],
    buckets=_DURATIONS,
)
VIDGO_REQUESTS = Counter(
    "vidgo_stems_vidgo_requests",
    "Requests to Vidgo by endpoint and outcome (2xx, 4xx, 5xx, 429, timeout, error).",
    ["endpoint", "outcome"],
)
VIDGO_REQUEST_DURATION = Histogram(
    "vidgo_stems_vidgo_request_duration_seconds",
    "Time a Vidgo request took.",
    ["endpoint"],
    buckets=_DURATIONS,
)
VIDGO_TASKS_PAID = Counter("vidgo_stems_vidgo_tasks_paid", "Vidgo tasks created (each is paid).")
VIDGO_RESUBMITS = Counter(
    "vidgo_stems_vidgo_resubmits", "Vidgo tasks submitted again after a failure or stall."
)
AMBIGUOUS_SUBMITS = Counter(
    "vidgo_stems_ambiguous_submits", "Submits whose outcome was unknown (sent, no clear answer)."
)
SUBMITS_HELD_UNREPLICATED = Counter(
    "vidgo_stems_submits_held_unreplicated",
    "Submits held back (nothing paid) because no Redis replica confirmed the move before it.",
)
CREDITS_SPENT = Counter(
    "vidgo_stems_credits_spent",
    "Credits spent on Vidgo tasks (tasks paid x VIDGO_STEMS_CREDITS_PER_TASK).",
)
POLL_LATENESS = Histogram(
    "vidgo_stems_poll_lateness_seconds",
    "How long after its due time a poll started.",
    buckets=_LATENESS,
)
WEBHOOK_DELIVERIES = Counter(
    "vidgo_stems_webhook_deliveries",
    "Completion webhook attempts by outcome (delivered, retry, gave_up).",
    ["outcome"],
)
DOWNLOAD_BYTES = Counter("vidgo_stems_download_bytes", "Stem bytes downloaded from Vidgo.")
RECOVERIES = Counter(
    "vidgo_stems_recoveries", "Jobs the recovery sweep sent on again after a lost message."
)
SCHEDULE_PROMOTED = Counter(
    "vidgo_stems_schedule_promoted",
    "Waiting messages this worker's promoter pushed onto their Celery queue when due.",
)


def vidgo_outcome(status: int | None, *, timeout: bool = False) -> str:
    """The ``outcome`` label of a Vidgo request."""
    if timeout:
        return "timeout"
    if status is None:
        return "error"
    if status == 429:
        return "429"
    return f"{status // 100}xx"


def stage_of(task_name: str) -> str:
    """``vidgo.poll`` -> ``poll``."""
    return task_name.rpartition(".")[2] or task_name


# --- The gateway ---------------------------------------------------------------------------
HTTP_REQUESTS = Counter(
    "vidgo_stems_http_requests",
    "Requests the gateway answered, by route template (never the raw path), method and status.",
    ["route", "method", "status"],
)
HTTP_REQUEST_DURATION = Histogram(
    "vidgo_stems_http_request_duration_seconds",
    "Time the gateway took to answer a request, by route template and method.",
    ["route", "method"],
    buckets=_HTTP,
)


def http_request(route: str, method: str, status: int, seconds: float) -> None:
    """Count one answered request; ``route`` is its template (``/v1/jobs/{job_id}``)."""
    HTTP_REQUESTS.labels(route, method, str(status)).inc()
    HTTP_REQUEST_DURATION.labels(route, method).observe(seconds)
