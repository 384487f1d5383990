"""Where metrics are served: one endpoint per worker host, and the gateway's ``/metrics``.

Under the prefork pool each child counts in its own files in ``PROMETHEUS_MULTIPROC_DIR``;
``vidgo-stems worker`` points that variable at a fresh folder before Celery starts (it must be
set before ``prometheus_client`` is imported anywhere), the worker's main process serves the
sum of every child's files, and a child that exits is marked dead so its live gauges go away
while its counters still count.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import redis
from prometheus_client import REGISTRY, CollectorRegistry, multiprocess, start_http_server
from prometheus_client.registry import Collector

from vidgo_stems.monitor.cluster import ClusterCollector
from vidgo_stems.observe.multiproc import ENV, multiproc_enabled
from vidgo_stems.pipeline.ledger import Ledger
from vidgo_stems.settings import Settings

log = logging.getLogger(__name__)


class _Forward(Collector):
    """This process's own metrics (the default registry), inside another registry."""

    def collect(self) -> Iterator[Any]:
        yield from REGISTRY.collect()


def build_registry(
    client: redis.Redis, ledger: Ledger, settings: Settings, queues: list[str]
) -> CollectorRegistry:
    """The process counters (summed over every process when multiprocess mode is on) plus the
    cluster gauges read from Redis at scrape time."""
    # No auto-describe: registering must not read Redis (it may be down at start).
    registry = CollectorRegistry(auto_describe=False)
    if multiproc_enabled():
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(_Forward())
    registry.register(ClusterCollector(client, ledger, settings, queues))
    return registry


def serve_worker_metrics(
    client: redis.Redis, ledger: Ledger, settings: Settings, queues: list[str]
) -> bool:
    """Serve this host's metrics on ``metrics_port``; False (and one log line) when it cannot."""
    if not settings.metrics_port:
        return False
    if not multiproc_enabled():
        log.warning(
            "metrics endpoint off: %s is not set (start the worker with `vidgo-stems worker`, "
            "which sets it, or set it to an empty writable folder)",
            ENV,
        )
        return False
    registry = build_registry(client, ledger, settings, queues)
    try:
        start_http_server(settings.metrics_port, addr=settings.metrics_addr, registry=registry)
    except OSError as exc:
        log.warning(
            "metrics endpoint off: cannot listen on %s:%d (%s); set VIDGO_STEMS_METRICS_PORT to "
            "a free port, or 0 to turn it off",
            settings.metrics_addr,
            settings.metrics_port,
            exc.strerror or exc,
        )
        return False
    log.info("metrics on http://%s:%d/metrics", settings.metrics_addr, settings.metrics_port)
    return True


def mark_process_dead(pid: int) -> None:
    """A pool child is exiting: drop its live gauges, keep its counters."""
    if multiproc_enabled():
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
