"""Celery settings, mapped from worker.settings; each one says why it is set.

Loaded by ``worker.celery_app`` through ``config_from_object("celeryconfig")``.
"""

from worker.settings import get_settings

_s = get_settings()

# Redis is both broker and result store; the worker refuses to start without REDIS_URL.
broker_url = _s.redis_url
result_backend = _s.redis_url
# Keep retrying the broker at start-up instead of crashing when Redis comes up a bit later.
broker_connection_retry_on_startup = True

# Register the four pipeline tasks in every worker.
imports = ("tasks.pipeline",)
task_default_queue = _s.queue_name

# JSON only: task signatures are a wire format, and pickle from a shared Redis is a hazard.
task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
result_accept_content = ["json"]

# Ack after the task ran, not before: a worker that dies mid-task leaves the message to redo.
task_acks_late = True
# A child killed by SIGKILL or OOM requeues its message instead of acking it as failed.
task_reject_on_worker_lost = True
# Reserve one message per process, so a busy or dying worker holds as little as possible.
worker_prefetch_multiplier = 1
# Redis has no real acks: unacked messages come back after this; it must exceed every countdown
# and every task's runtime, or work runs twice (kombu#337).
broker_transport_options = {"visibility_timeout": _s.visibility_timeout_s}
result_backend_transport_options = {"visibility_timeout": _s.visibility_timeout_s}
# Countdown messages sit in worker memory and ignore prefetch; cap how many one worker holds.
worker_eta_task_limit = _s.worker_eta_task_limit
# A stage that hangs is stopped well before the visibility timeout could re-deliver it.
task_soft_time_limit = _s.task_soft_time_limit_s
task_time_limit = max(_s.task_time_limit_s, _s.task_soft_time_limit_s + 1)
# SIGTERM is a warm shutdown: running stages finish. A cold shutdown (SIGQUIT) still gives them
# 30 s before cancelling them; their messages are requeued (acks_late), and ledger tokens make
# any repeat harmless.
worker_soft_shutdown_timeout = 30.0
# If the broker connection drops, cancel running tasks so they are redelivered, not lost.
worker_cancel_long_running_tasks_on_connection_loss = True
# Results expire by themselves; the job ledger keeps its own, longer, retention.
result_expires = _s.result_expires_s
# Results are only the manifests under the job id; the intermediate stages return nothing useful.
task_ignore_result = False
# Celery's own lost-result warnings and task events are not needed by the pipeline.
worker_send_task_events = False
# Leave the root logger to the process (the CLI configures it).
worker_hijack_root_logger = False
