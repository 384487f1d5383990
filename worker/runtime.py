"""The consumer side: the collaborators every stage uses, the worker's signals and its sweep.

Clients are built lazily, once per process, and rebuilt after a fork (``worker_process_init``),
never at import. Only worker processes import this module (through ``tasks/``); producers use
:mod:`vidgo_stems.celery_app` alone.
"""

from __future__ import annotations

import logging
import os
import random
import threading
from functools import cached_property

import httpx
import redis
from celery.signals import (
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)

from vidgo_stems.celery_app import (
    dispatch_purge,
    dispatch_webhook,
    make_ledger,
    redis_client,
    worker_queues,
)
from vidgo_stems.files.links import open_configured_storage
from vidgo_stems.files.scratch import StemStore
from vidgo_stems.files.storage import Storage
from vidgo_stems.monitor.serve import mark_process_dead, serve_worker_metrics
from vidgo_stems.observe import metrics
from vidgo_stems.observe.tracing import init_tracing, shutdown_tracing
from vidgo_stems.pipeline.ledger import Ledger
from vidgo_stems.pipeline.pacing import PollPacing
from vidgo_stems.pipeline.recovery import SweepThread
from vidgo_stems.pipeline.schedule import Promoter
from vidgo_stems.pipeline.stages.context import StageContext
from vidgo_stems.settings import Settings, get_settings
from vidgo_stems.vidgo import VidgoClient
from vidgo_stems.vidgo.client import http_timeout
from vidgo_stems.vidgo.gate import VidgoGate
from vidgo_stems.vidgo.limits import VidgoLimits
from vidgo_stems.webhooks import WebhookSender

log = logging.getLogger(__name__)


class Runtime:
    """The collaborators of one worker process. Attributes are built on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()

    @cached_property
    def redis(self) -> redis.Redis:
        return redis_client(self.settings)

    @cached_property
    def ledger(self) -> Ledger:
        return make_ledger(self.redis, self.settings)

    @cached_property
    def gate(self) -> VidgoGate:
        return VidgoGate(self.redis, prefix=self.settings.redis_key_prefix)

    @cached_property
    def pacing(self) -> PollPacing:
        return PollPacing(self.redis, self.settings)

    @cached_property
    def limits(self) -> VidgoLimits:
        return VidgoLimits(self.redis, self.settings)

    @cached_property
    def vidgo(self) -> VidgoClient:
        return VidgoClient(self.settings, limits=self.limits)

    @cached_property
    def http(self) -> httpx.Client:
        """Client for stem downloads: no Vidgo credentials, long read timeout, no redirects."""
        return httpx.Client(
            timeout=http_timeout(self.settings, read_s=self.settings.download_read_timeout_s),
            follow_redirects=False,
            headers={"User-Agent": "vidgo-stems/0.1"},
        )

    @cached_property
    def webhook_http(self) -> httpx.Client:
        """Client for caller webhooks: short timeouts, no redirects (a redirect could lead
        anywhere), no credentials."""
        return httpx.Client(
            timeout=httpx.Timeout(self.settings.webhook_timeout_s),
            follow_redirects=False,
            trust_env=False,
        )

    @cached_property
    def storage(self) -> Storage:
        return open_configured_storage(self.settings)

    @cached_property
    def webhooks(self) -> WebhookSender:
        return WebhookSender(
            self.ledger, self.settings, self.webhook_http, dispatch_webhook, storage=self.storage
        )

    def stage_context(self, worker_name: str = "") -> StageContext:
        with self._lock:
            return StageContext(
                settings=self.settings,
                ledger=self.ledger,
                gate=self.gate,
                storage=self.storage,
                scratch=StemStore(self.settings.scratch_root),
                worker_name=worker_name,
                vidgo_factory=lambda: self.vidgo,
                http_factory=lambda: self.http,
                rng=random.Random(),
                limits=self.limits,
                pacing=self.pacing,
            )

    def close(self) -> None:
        self.__dict__.pop("webhooks", None)
        for name in ("vidgo", "http", "webhook_http"):
            client = self.__dict__.pop(name, None)
            if client is not None:
                client.close()
        conn = self.__dict__.pop("redis", None)
        if conn is not None:
            conn.close()


_runtime: Runtime | None = None
_runtime_pid: int | None = None
_runtime_lock = threading.Lock()


def runtime() -> Runtime:
    """This process's Runtime; a forked child gets its own."""
    global _runtime, _runtime_pid
    with _runtime_lock:
        if _runtime is None or _runtime_pid != os.getpid():
            _runtime = Runtime(get_settings())
            _runtime_pid = os.getpid()
        return _runtime


@worker_init.connect
def _check_config(**_: object) -> None:
    settings = get_settings()
    settings.require_redis_url()
    settings.require_api_key()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # it logs full URLs at INFO
    # The shared-storage check runs in `vidgo-stems worker` before Celery starts, not here:
    # obstore's runtime must not be started in a process that then forks pool children.


@worker_process_init.connect
def _init_process(**_: object) -> None:
    global _runtime, _runtime_pid
    with _runtime_lock:
        _runtime, _runtime_pid = None, None
    runtime()
    init_tracing(get_settings())  # after the fork: its exporter thread must not be forked


@worker_process_shutdown.connect
def _close_process(**_: object) -> None:
    if _runtime is not None and _runtime_pid == os.getpid():
        _runtime.close()
    shutdown_tracing()
    mark_process_dead(os.getpid())


_sweeper: SweepThread | None = None
_promoter: Promoter | None = None


@worker_ready.connect
def _start_sweep(sender: object = None, **_: object) -> None:
    """Every worker beats, sweeps for lost jobs and webhooks (one sweep at a time) and runs
    a schedule promoter (one active at a time)."""
    global _sweeper, _promoter
    rt = runtime()
    hostname = str(getattr(sender, "hostname", "") or "")
    metrics.WORKER_UP.labels(hostname or metrics.HOSTNAME).set(1)
    serve_worker_metrics(rt.redis, rt.ledger, rt.settings, worker_queues(rt.settings))
    _sweeper = SweepThread(
        rt.redis,
        rt.ledger,
        rt.settings,
        dispatch_webhook=dispatch_webhook,
        dispatch_purge=dispatch_purge,
        hostname=hostname,
        heartbeat_file=rt.settings.heartbeat_file,
        read_balance=lambda: rt.vidgo.balance(),
    )
    _sweeper.start()
    _promoter = Promoter(
        rt.redis,
        rt.settings.redis_key_prefix,
        max_depth=rt.settings.schedule_queue_depth,
        hostname=hostname,
    )
    _promoter.start()


@worker_shutdown.connect
def _stop_sweep(**_: object) -> None:
    if _sweeper is not None:
        _sweeper.stop()
    if _promoter is not None:
        _promoter.stop()
