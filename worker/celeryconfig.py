"""Celery settings, mapped from vidgo_stems.settings; each one says why it is set.

Nothing is read at import: ``vidgo_stems.celery_app`` hands :func:`celery_config` to Celery as a
promise, which Celery resolves from :func:`vidgo_stems.settings.get_settings` when the app is first
configured (and so after a test or a process has set its environment).
"""

from __future__ import annotations

from typing import Any

from vidgo_stems.redisconn import is_sentinel, sentinel_kwargs
from vidgo_stems.settings import Settings


def celery_config(s: Settings) -> dict[str, Any]:
    """The Celery configuration for these settings."""
    return {**_base(s), **_sentinel(s)}


def _sentinel(s: Settings) -> dict[str, Any]:
    """Broker and result store through Redis Sentinel when REDIS_URL is sentinel://...

    Both ask the sentinels for the current primary on every new connection, so after a
    failover they reconnect to the promoted replica. The socket timeouts and keepalive make a
    vanished primary (SIGKILL, a partition: no RST) fail fast instead of hanging on TCP.
    """
    if not s.redis_url or not is_sentinel(s.redis_url):
        return {}
    # kombu passes these to every broker connection; its Sentinel pool drops
    # health_check_interval, so keepalive and the timeouts are what notice a dead primary.
    options = {
        "master_name": s.require_sentinel_master(),
        "sentinel_kwargs": sentinel_kwargs(s),  # the sentinels' own timeouts and password
        "socket_timeout": s.redis_socket_timeout_s,
        "socket_connect_timeout": s.redis_socket_timeout_s,
        "socket_keepalive": True,
        "retry_on_timeout": True,
    }
    return {
        # The result store takes its socket options from the redis_* settings, not from its
        # transport options.
        "redis_socket_timeout": s.redis_socket_timeout_s,
        "redis_socket_connect_timeout": s.redis_socket_timeout_s,
        "redis_socket_keepalive": True,
        "redis_retry_on_timeout": True,
        # Storing a manifest during a failover retries (with backoff) instead of failing.
        "result_backend_always_retry": True,
        "result_backend_max_retries": 30,
        # A primary demoted while its connections stay up answers READONLY, which kombu reports
        # as a channel error; without this the consumer gives up instead of reconnecting
        # (celery#7946).
        "broker_channel_error_retry": True,
        "broker_transport_options": {"visibility_timeout": s.visibility_timeout_s, **options},
        "result_backend_transport_options": {
            "visibility_timeout": s.visibility_timeout_s,
            **options,
        },
    }


def _base(s: Settings) -> dict[str, Any]:
    return {
        # Redis is both broker and result store; the worker refuses to start without REDIS_URL.
        "broker_url": s.redis_url,
        "result_backend": s.redis_url,
        # Keep retrying the broker at start-up instead of crashing when Redis comes up later.
        "broker_connection_retry_on_startup": True,
        # Register the pipeline tasks in every worker.
        "imports": ("vidgo_stems.tasks.pipeline",),
        "task_default_queue": s.queue_name,
        # JSON only: task signatures are a wire format, and pickle from a shared Redis is a hazard.
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        # Ack after the task ran, not before: a worker that dies mid-task leaves the message.
        "task_acks_late": True,
        # A child killed by SIGKILL or OOM requeues its message instead of acking it as failed.
        "task_reject_on_worker_lost": True,
        # Reserve one message per process, so a busy or dying worker holds as little as possible.
        "worker_prefetch_multiplier": 1,
        # Redis has no real acks: unacked messages come back after this; it must exceed every
        # countdown and every task's runtime, or work runs twice (kombu#337).
        "broker_transport_options": {"visibility_timeout": s.visibility_timeout_s},
        "result_backend_transport_options": {"visibility_timeout": s.visibility_timeout_s},
        # Countdown messages sit in worker memory and ignore prefetch; cap how many one holds.
        "worker_eta_task_limit": s.worker_eta_task_limit,
        # A stage that hangs is stopped well before the visibility timeout could re-deliver it.
        "task_soft_time_limit": s.task_soft_time_limit_s,
        "task_time_limit": max(s.task_time_limit_s, s.task_soft_time_limit_s + 1),
        # SIGTERM is a warm shutdown: running stages finish. A cold shutdown (SIGQUIT) still
        # gives them 30 s before cancelling them; their messages are requeued (acks_late), and
        # ledger tokens make any repeat harmless.
        "worker_soft_shutdown_timeout": 30.0,
        # A broker connection that drops (a failover) does not cancel running stages: a submit
        # that has paid must live to record its task on the new primary. Their messages come
        # back (they cannot be acknowledged on the lost connection) and a copy that runs
        # meanwhile finds a stale token or a finished step, as any duplicate does.
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        # Results expire by themselves; the job ledger keeps its own, longer, retention.
        "result_expires": s.result_expires_s,
        # Results are only the manifests under the job id; the other stages store nothing.
        "task_ignore_result": False,
        # Celery's own lost-result warnings and task events are not needed by the pipeline.
        "worker_send_task_events": False,
        # Leave the root logger to the process (the CLI configures it).
        "worker_hijack_root_logger": False,
    }
