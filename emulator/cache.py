"""A bounded LRU cache of rendered stems, so the same source split the same way is encoded once.

Splitting and encoding a 240 s track into six MP3 stems costs tens of CPU seconds; tests and
benchmarks submit the same source again and again. An entry is keyed by everything that
changes the bytes: the SHA-256 of the fetched source, how much of it is decoded
(``max_input_s``), the stem names in order, the model (its gain), the format, the stems lost
to fault injection, and the renderer's own version (:data:`vidgo_stems.emulator.audio.RENDER_ID`).

The cache lives in memory, or in the folder ``stem_cache_dir`` (one file per entry, written
under a temporary name and renamed into place, so processes may share it), bounded by
``stem_cache_bytes`` with the least recently used entries evicted first; 0 turns it off.
Renders of the same key in flight at once are coalesced: the later tasks wait for the first.
Synthesised stems are not cached (they are seeded by the task id, so no two tasks share them).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vidgo_stems.emulator import audio
from vidgo_stems.emulator.config import EmulatorConfig

_SUFFIX = ".stems"


@dataclass(frozen=True)
class RenderKey:
    source_sha256: str
    max_input_s: float
    stems: tuple[str, ...]
    model_name: str
    fmt: str
    lost: tuple[str, ...]

    @classmethod
    def of(
        cls, source: bytes, config: EmulatorConfig, stems: list[str], model_name: str
    ) -> RenderKey:
        return cls(
            source_sha256=hashlib.sha256(source).hexdigest(),
            max_input_s=config.max_input_s,
            stems=tuple(stems),
            model_name=model_name,
            fmt=config.stem_format,
            lost=tuple(sorted(set(config.faults.lost_stems) & set(stems))),
        )

    def digest(self) -> str:
        fields = {**asdict(self), "render": audio.RENDER_ID}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Rendered:
    """A render's stems and their SHA-256 digests."""

    stems: dict[str, bytes]
    sha256: dict[str, str]

    @classmethod
    def of(cls, stems: dict[str, bytes]) -> Rendered:
        return cls(stems, {name: hashlib.sha256(data).hexdigest() for name, data in stems.items()})

    @property
    def size(self) -> int:
        return sum(len(data) for data in self.stems.values())


class StemCache:
    """Rendered stems by :class:`RenderKey`, in memory or in a folder, per the current config."""

    def __init__(self) -> None:
        self._memory: OrderedDict[str, Rendered] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[Rendered | None]] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.renders = 0
        self.evictions = 0

    async def obtain(
        self, key: RenderKey, config: EmulatorConfig, render: Callable[[], dict[str, bytes]]
    ) -> tuple[Rendered, str]:
        """The stems for ``key`` and where they came from: "hit", "miss" (rendered and stored)
        or "off" (rendered, caching disabled). ``render`` runs on a worker thread."""
        if config.stem_cache_bytes <= 0:
            rendered = await asyncio.to_thread(self._render, render)
            return rendered, "off"
        digest = key.digest()
        pending = self._inflight.get(digest)
        if pending is not None:
            shared = await asyncio.shield(pending)
            if shared is not None:
                self._count("hits")
                return shared, "hit"
            return await self.obtain(key, config, render)  # the first render failed: try again
        future: asyncio.Future[Rendered | None] = asyncio.get_running_loop().create_future()
        self._inflight[digest] = future
        outcome: Rendered | None = None
        try:
            outcome = await asyncio.to_thread(self._get, digest, config)
            if outcome is not None:
                self._count("hits")
                return outcome, "hit"
            self._count("misses")
            fresh: Rendered = await asyncio.to_thread(self._render, render)
            await asyncio.to_thread(self._put, digest, key, fresh, config)
            outcome = fresh
            return fresh, "miss"
        finally:
            del self._inflight[digest]
            future.set_result(outcome)

    def trim(self, config: EmulatorConfig) -> None:
        """Evict least recently used entries until the cache fits ``stem_cache_bytes``; a
        folder is left alone while the cache is off."""
        if config.stem_cache_dir and config.stem_cache_bytes > 0:
            self._trim_folder(Path(config.stem_cache_dir), config.stem_cache_bytes)
        with self._lock:
            limit = 0 if config.stem_cache_dir else config.stem_cache_bytes
            while self._memory and self._memory_bytes() > limit:
                self._memory.popitem(last=False)
                self.evictions += 1

    def stats(self, config: EmulatorConfig) -> dict[str, Any]:
        if config.stem_cache_dir:
            files = _entries(Path(config.stem_cache_dir))
            entries, size = len(files), sum(f[2] for f in files)
        else:
            with self._lock:
                entries, size = len(self._memory), self._memory_bytes()
        return {
            "hits": self.hits,
            "misses": self.misses,
            "renders": self.renders,
            "evictions": self.evictions,
            "entries": entries,
            "bytes": size,
            "max_bytes": config.stem_cache_bytes,
            "folder": config.stem_cache_dir,
        }

    def _count(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    def _render(self, render: Callable[[], dict[str, bytes]]) -> Rendered:
        rendered = Rendered.of(render())
        self._count("renders")
        return rendered

    def _memory_bytes(self) -> int:
        return sum(entry.size for entry in self._memory.values())

    def _get(self, digest: str, config: EmulatorConfig) -> Rendered | None:
        if config.stem_cache_dir:
            return _read(Path(config.stem_cache_dir) / f"{digest}{_SUFFIX}")
        with self._lock:
            found = self._memory.get(digest)
            if found is not None:
                self._memory.move_to_end(digest)
            return found

    def _put(self, digest: str, key: RenderKey, rendered: Rendered, config: EmulatorConfig) -> None:
        if rendered.size > config.stem_cache_bytes:
            return  # would evict everything and still not fit
        if config.stem_cache_dir:
            _write(Path(config.stem_cache_dir), digest, key, rendered)
        else:
            with self._lock:
                self._memory[digest] = rendered
                self._memory.move_to_end(digest)
        self.trim(config)

    def _trim_folder(self, folder: Path, limit: int) -> None:
        files = sorted(_entries(folder), key=lambda f: f[1])  # oldest use first
        total = sum(f[2] for f in files)
        for path, _, size in files:
            if total <= limit:
                break
            try:
                path.unlink()
            except FileNotFoundError:
                continue  # another process evicted it
            total -= size
            self._count("evictions")


def _entries(folder: Path) -> list[tuple[Path, int, int]]:
    """(path, last use in ns, size) of each entry in ``folder``."""
    found = []
    try:
        with os.scandir(folder) as listing:
            for item in listing:
                if item.name.endswith(_SUFFIX) and not item.name.startswith("."):
                    try:
                        info = item.stat()
                    except FileNotFoundError:
                        continue
                    found.append((Path(item.path), info.st_mtime_ns, info.st_size))
    except FileNotFoundError:
        pass
    return found


def _touch(path: Path) -> None:
    """Mark the entry used now (its mtime, to the nanosecond), for LRU eviction."""
    now = time.time_ns()
    os.utime(path, ns=(now, now))


def _write(folder: Path, digest: str, key: RenderKey, rendered: Rendered) -> None:
    """One file per entry: a JSON header line (key, stem names, sizes, digests), then the
    stems' bytes back to back; written aside and renamed into place."""
    folder.mkdir(parents=True, exist_ok=True)
    stems = rendered.stems.items()
    header = {
        "key": asdict(key),
        "stems": [[name, len(data), rendered.sha256[name]] for name, data in stems],
    }
    temporary = folder / f".{digest}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        with temporary.open("wb") as out:
            out.write(json.dumps(header).encode() + b"\n")
            for data in rendered.stems.values():
                out.write(data)
        os.replace(temporary, folder / f"{digest}{_SUFFIX}")
        _touch(folder / f"{digest}{_SUFFIX}")
    finally:
        temporary.unlink(missing_ok=True)


def _read(path: Path) -> Rendered | None:
    try:
        with path.open("rb") as handle:
            header = json.loads(handle.readline())
            stems: dict[str, bytes] = {}
            sha256: dict[str, str] = {}
            for name, size, digest in header["stems"]:
                data = handle.read(size)
                if len(data) != size:
                    return None
                stems[name], sha256[name] = data, digest
    except (OSError, ValueError, KeyError, TypeError):
        return None
    with contextlib.suppress(OSError):  # evicted meanwhile by another process: still served
        _touch(path)
    return Rendered(stems, sha256)
