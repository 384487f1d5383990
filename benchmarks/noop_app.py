"""The baseline of the overhead benchmark: a bare Celery chain of four no-op tasks."""

from __future__ import annotations

import os

from celery import Celery

app = Celery("bench_noop", broker=os.environ["REDIS_URL"], backend=os.environ["REDIS_URL"])
app.conf.update(
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_default_queue=os.environ.get("BENCH_QUEUE", "bench-noop"),
)


@app.task(name="bench.noop")
def noop(value: int = 0) -> int:
    return value
