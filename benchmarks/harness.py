"""A private stack for a benchmark: Redis, the emulator, worker processes, measurements.

Environment variables are set before ``vidgo_stems.celery_app`` is imported, so the benchmark process
(which enqueues) and the workers it starts share one configuration.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import redis

from vidgo_stems.emulator import EmulatorConfig
from vidgo_stems.emulator.server import BackgroundEmulator
from vidgo_stems.devstack.local import WorkerProcess, wait_for
from vidgo_stems.devstack.redis_server import RedisServer, free_port

#: Limits out of the way: a benchmark measures the pipeline, not the brakes.
UNLIMITED = {
    "VIDGO_STEMS_VIDGO_SUBMIT_RATE_PER_S": "100000",
    "VIDGO_STEMS_VIDGO_SUBMIT_BURST": "100000",
    "VIDGO_STEMS_VIDGO_QUERY_RATE_PER_S": "100000",
    "VIDGO_STEMS_VIDGO_QUERY_BURST": "100000",
    "VIDGO_STEMS_MAX_IN_FLIGHT": "1000000",
    "VIDGO_STEMS_WORKER_ETA_TASK_LIMIT": "20000",
}


class Bench:
    """Everything one benchmark run needs; use as a context manager."""

    def __init__(self, folder: Path, emulator: EmulatorConfig, **env: str) -> None:
        self.folder = folder
        self.emulator_config = emulator
        self.extra_env = env
        self.workers: list[WorkerProcess] = []
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Bench:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.redis_server = self._stack.enter_context(RedisServer())
        self.emulator = self._stack.enter_context(
            BackgroundEmulator(self.emulator_config, free_port())
        )
        self.prefix = f"vidgo-stems-bench-{secrets.token_hex(3)}"
        self.env = {
            "REDIS_URL": self.redis_server.url,
            "VIDGO_API_KEY": self.emulator_config.api_key or "bench-key",
            "VIDGO_BASE_URL": self.emulator.url,
            "STEMS_DIR": str(self.folder / "stems"),
            "VIDGO_STEMS_REDIS_KEY_PREFIX": self.prefix,
            "VIDGO_STEMS_QUEUE_NAME": f"vidgo-bench-{secrets.token_hex(3)}",
            **UNLIMITED,
            **self.extra_env,
        }
        os.environ.update(self.env)
        from vidgo_stems.settings import get_settings

        get_settings.cache_clear()
        self.redis = redis.Redis.from_url(self.redis_server.url)
        return self

    def __exit__(self, *exc: object) -> None:
        for worker in self.workers:
            worker.stop(timeout_s=30)
        self.redis.close()
        self._stack.close()

    def start_worker(self, concurrency: int, name: str = "bench") -> WorkerProcess:
        from vidgo_stems.heartbeat import workers_seen

        log = self._stack.enter_context((self.folder / f"{name}.log").open("wb"))
        worker = WorkerProcess(self.env, concurrency=concurrency, name=name, log=log).start()
        self.workers.append(worker)
        wait_for(
            lambda: any(
                w.startswith(worker.hostname) for w in workers_seen(self.redis, self.prefix)
            ),
            timeout_s=60,
            what=f"worker {name} to beat",
        )
        return worker

    @property
    def producer(self) -> Any:
        from vidgo_stems.celery_app import producer

        return producer()

    @property
    def ledger(self) -> Any:
        return self.producer.ledger

    def wait_all_ended(self, job_ids: list[str], timeout_s: float) -> float:
        """Wait until no job is active (one cheap command per look); returns when, after
        checking that every job ended DONE."""
        from vidgo_stems.batch.store import job_states

        active = self.ledger.keys.active
        wait_for(
            lambda: self.redis.zcard(active) == 0,
            timeout_s=timeout_s,
            interval_s=0.1,
            what="every job to end",
        )
        ended = time.perf_counter()
        states = job_states(self.ledger, job_ids)
        failed = {j: s for j, s in states.items() if s != "DONE"}
        assert not failed, f"{len(failed)} job(s) did not end DONE: {list(failed.items())[:5]}"
        return ended

    def emulator_admin(self, what: str) -> list[dict[str, Any]]:
        """The emulator's own record (``record``) or tasks, over its admin API."""
        response = httpx.get(f"{self.emulator.url}/_emulator/{what}", timeout=30)
        response.raise_for_status()
        data: list[dict[str, Any]] = response.json()
        return data

    def redis_used_memory(self) -> int:
        return int(self.redis.info("memory")["used_memory"])


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of a process and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo.extend(children.get(current, []))
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[max(0, min(98, int(q) - 1))]


def table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


@contextlib.contextmanager
def timed() -> Iterator[list[float]]:
    box: list[float] = []
    start = time.perf_counter()
    try:
        yield box
    finally:
        box.append(time.perf_counter() - start)
