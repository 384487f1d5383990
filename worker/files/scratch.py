"""Local scratch space: ``<scratch>/<job_id>/<stem>.<ext>`` while a stem is downloaded and
checked on this host, before the storage layer keeps it; plus the atomic local writer.

Every file is written to a hidden ``.part`` file in the same folder, flushed, fsynced and renamed
into place, so a file with its final name is always complete. OS errors (disk full, permission,
read-only filesystem) become a StorageError whose message says what to fix.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from vidgo_stems.errors import StorageError
from vidgo_stems.models import validate_job_id

_SAFE_NAME = re.compile(r"[^a-z0-9_-]+")
AUDIO_SUFFIXES = frozenset({".mp3", ".wav", ".flac", ".ogg", ".m4a", ".aac", ".opus", ".aiff"})

_ADVICE = {
    errno.ENOSPC: "the disk is full: free space under STEMS_DIR, then retry the job",
    errno.EDQUOT: "the disk quota is exhausted: free space under STEMS_DIR, then retry the job",
    errno.EACCES: "permission denied: let the worker's user write to STEMS_DIR",
    errno.EPERM: "permission denied: let the worker's user write to STEMS_DIR",
    errno.EROFS: "STEMS_DIR is on a read-only filesystem: point STEMS_DIR somewhere writable",
    errno.ENOTDIR: "a path under STEMS_DIR is a file, not a folder: fix STEMS_DIR",
}


def storage_error(exc: OSError, path: Path) -> StorageError:
    """Translate an OSError into a StorageError that names the path and the remedy."""
    advice = _ADVICE.get(exc.errno or 0, "check that STEMS_DIR is writable and has space")
    return StorageError(f"cannot write {path}: {exc.strerror or exc} ({advice})")


def safe_stem_name(name: str) -> str:
    """A file-name-safe version of a stem key (``vocals``, ``bass``...)."""
    cleaned = _SAFE_NAME.sub("_", name.strip().lower()).strip("_")[:40]
    return cleaned or "stem"


class StemStore:
    """The folder tree of finished stems. Job ids are validated before they name a folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def job_dir(self, job_id: str, *, create: bool = True) -> Path:
        path = self.root / validate_job_id(job_id)
        if create:
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise storage_error(exc, path) from None
        return path

    def remove_job(self, job_id: str) -> None:
        """Drop a job's scratch folder once its files are stored and measured."""
        shutil.rmtree(self.root / validate_job_id(job_id), ignore_errors=True)

    def remove_older_than(self, seconds: float, *, now: float) -> list[str]:
        """Drop job folders untouched for ``seconds``: downloads whose post-processing ran on
        another host, or jobs that ended long ago. Returns the job ids removed."""
        removed = []
        try:
            folders = [p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")]
        except FileNotFoundError:
            return []
        for folder in folders:
            try:
                times = [folder.stat().st_mtime, *(f.stat().st_mtime for f in folder.iterdir())]
            except FileNotFoundError:
                continue
            if now - max(times) > seconds:
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder.name)
        return removed

    def atomic_writer(self, dest: Path) -> contextlib.AbstractContextManager[BinaryIO]:
        return atomic_writer(dest)

    def write_json(self, dest: Path, data: Any) -> None:
        write_json(dest, data)


@contextlib.contextmanager
def atomic_writer(dest: Path) -> Iterator[BinaryIO]:
    """Open a temp file beside ``dest``; on clean exit fsync and rename it into place."""
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")
    try:
        with open(tmp, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, dest)
    except OSError as exc:
        raise storage_error(exc, dest) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_json(dest: Path, data: Any, *, indent: int = 2) -> None:
    """Write ``data`` as JSON to ``dest`` atomically (complete or not there at all)."""
    payload = json.dumps(data, indent=indent, sort_keys=True).encode() + b"\n"
    with atomic_writer(dest) as handle:
        handle.write(payload)
