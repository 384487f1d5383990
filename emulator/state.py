"""The emulator's memory: its tasks, their timeline and stems, and the record tests read.

The record is an append-only list of events (``submit``, ``detail``, ``status``, ``balance``,
``download``, ``callback``, ``fault``); it is the emulator's own account of what was asked,
what was billed and what was served, independent of anything the worker believes.
"""

from __future__ import annotations

import hashlib
import secrets
import string
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from vidgo_stems.emulator.cache import StemCache
from vidgo_stems.emulator.config import EmulatorConfig

_ALPHABET = string.ascii_lowercase + string.digits


@dataclass
class EmuTask:
    task_id: str
    audio_url: str
    title: str | None
    model_name: str
    output_type: str
    callback_url: str | None
    created_time: str
    created_mono: float
    fail_message: str | None = None
    # None, "malformed" (vocal_removal is not JSON) or "empty" (finished with files: []).
    output_fault: str | None = None
    # A hostile Query Music Detail answer (FaultConfig.hostile_detail), or None.
    hostile_detail: str | None = None
    never_finish: bool = False
    # Stem URLs carry this generation; an expired generation answers 410.
    url_generation: int = 0
    stems: dict[str, bytes] = field(default_factory=dict)
    sha256: dict[str, str] = field(default_factory=dict)
    ready_mono: float | None = None
    stem_source: str = "pending"
    stem_format: str = "mp3"
    # Where rendered input stems came from: "hit", "miss" or "off" (see emulator/cache.py).
    stem_cache: str | None = None

    def finish_mono(self, config: EmulatorConfig) -> float | None:
        """When the task counts as finished: after its timeline and once its stems exist."""
        planned = self.created_mono + config.queue_s + config.run_s
        if self.never_finish:
            return None
        if self.fail_message is not None:
            return planned
        return None if self.ready_mono is None else max(planned, self.ready_mono)

    def status(self, config: EmulatorConfig, now: float) -> str:
        elapsed = now - self.created_mono
        if elapsed < config.queue_s:
            return "not_started"
        finish = self.finish_mono(config)
        if finish is None or now < finish:
            return "running"
        return "failed" if self.fail_message is not None else "finished"

    def progress(self, config: EmulatorConfig, now: float) -> int:
        status = self.status(config, now)
        if status in ("finished",):
            return 100
        if status != "running" or config.run_s <= 0:
            return 0
        return max(1, min(99, int(100 * (now - self.created_mono - config.queue_s) / config.run_s)))

    def set_stems(
        self,
        stems: dict[str, bytes],
        source: str,
        fmt: str = "mp3",
        sha256: dict[str, str] | None = None,
    ) -> None:
        self.stem_format = fmt
        self.sha256 = dict(sha256) if sha256 is not None else _digests(stems)
        self.stems = dict(stems)
        self.stem_source = source
        self.ready_mono = time.monotonic()


def _digests(stems: dict[str, bytes]) -> dict[str, str]:
    return {name: hashlib.sha256(data).hexdigest() for name, data in stems.items()}


class EmulatorState:
    """Tasks, credits and the record, guarded by one lock."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.rng = config.rng()
        self.tasks: dict[str, EmuTask] = {}
        self.credits = config.credits
        self._record: list[dict[str, Any]] = []
        self.stem_cache = StemCache()
        self._lock = threading.Lock()

    def new_task_id(self) -> str:
        suffix = "".join(secrets.choice(_ALPHABET) for _ in range(8))
        return f"task-unified-{int(time.time())}-{suffix}"

    def now_iso(self) -> str:
        return datetime.now(UTC).replace(tzinfo=None, microsecond=0).isoformat()

    def record(self, kind: str, **data: Any) -> None:
        with self._lock:
            self._record.append({"kind": kind, "at": time.time(), **data})

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(e) for e in self._record if kind is None or e["kind"] == kind]

    def chance(self, probability: float) -> bool:
        with self._lock:
            return probability > 0 and self.rng.random() < probability

    def pick(self, options: list[int]) -> int:
        with self._lock:
            return self.rng.choice(options)

    def charge(self) -> bool:
        with self._lock:
            if self.credits < self.config.price_per_task:
                return False
            self.credits -= self.config.price_per_task
            return True

    def refund(self) -> None:
        with self._lock:
            self.credits += self.config.price_per_task

    def reconfigure(self, changes: dict[str, Any]) -> EmulatorConfig:
        merged = self.config.model_dump()
        for key, value in changes.items():
            if key == "faults" and isinstance(value, dict):
                merged["faults"].update(value)
            else:
                merged[key] = value
        new = EmulatorConfig.model_validate(merged)
        with self._lock:
            self.config = new
            if "seed" in changes:
                self.rng = new.rng()
            if "credits" in changes:
                self.credits = new.credits
        if {"stem_cache_bytes", "stem_cache_dir"} & changes.keys():
            self.stem_cache.trim(new)
        return new
