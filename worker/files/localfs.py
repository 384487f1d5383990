"""``file://`` storage: objects as files under one folder, complete under their final name.

Every write goes to a hidden temp file in the same folder, is fsynced and renamed into place;
the sha256 sits in a sidecar beside it. One host, or a folder every worker host mounts
(NFS, a ReadWriteMany volume): the worker checks at start that it is the same folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat as stat_mode
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from vidgo_stems.errors import (
    ConfigError,
    StemCorrupt,
    StemMissing,
    StorageError,
)

if TYPE_CHECKING:
    pass


from vidgo_stems.files.objects import (
    _URL_EXAMPLE,
    COPY_CHUNK_BYTES,
    MAX_SMALL_OBJECT_BYTES,
    StoredObject,
    _fsync_dir,
    _os_error,
    _read_chunks,
    _receive,
    _temp_beside,
    _validate_prefix,
    already_stored,
    content_type_for,
    validate_key,
)


@dataclass(frozen=True)
class _Sidecar:
    """What FileStorage records beside a file: its hash and which file version it describes."""

    sha256: str
    bytes: int
    content_type: str
    inode: int
    mtime_ns: int

    def describes(self, st: os.stat_result) -> bool:
        return (self.bytes, self.inode, self.mtime_ns) == (st.st_size, st.st_ino, st.st_mtime_ns)


class FileStorage:
    """Objects as files under ``root``: ``root/<key>``, each complete under its final name.

    Every write goes to a hidden temp file in the same folder, is flushed, fsynced and renamed
    into place. The sha256 sits in a sidecar ``.<name>.sha256`` that also records the file's
    inode, mtime and size: a stat stays one small read however large the file, and a sidecar
    that describes another version of the file (a crash between the two renames, a file copied
    in by hand) is noticed and the hash recomputed once.
    """

    def __init__(self, root: Path, url_signer: Callable[[str, int], str] | None = None) -> None:
        if not Path(root).is_absolute():
            raise ConfigError(f"file storage needs an absolute folder, {_URL_EXAMPLE}")
        self.root = Path(os.path.normpath(root))
        self.url = self.root.as_uri()
        self._url_signer = url_signer

    def _path(self, key: str) -> Path:
        path = self.root.joinpath(*validate_key(key).split("/"))
        # The key checks already forbid every escape; this guards the join itself.
        if os.path.commonpath([self.root, os.path.normpath(path)]) != str(self.root):
            raise StorageError(f"storage key {key!r} escapes {self.url}")
        return path

    @staticmethod
    def _sidecar_path(path: Path) -> Path:
        return path.with_name(f".{path.name}.sha256")

    def _read_sidecar(self, path: Path) -> _Sidecar | None:
        try:
            data = json.loads(self._sidecar_path(path).read_bytes())
            return _Sidecar(
                sha256=str(data["sha256"]),
                bytes=int(data["bytes"]),
                content_type=str(data["content_type"]),
                inode=int(data["inode"]),
                mtime_ns=int(data["mtime_ns"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _write_sidecar(self, path: Path, sidecar: _Sidecar) -> None:
        target = self._sidecar_path(path)
        tmp = _temp_beside(target)
        payload = json.dumps(sidecar.__dict__, sort_keys=True).encode()
        try:
            with open(tmp, "xb") as out:
                out.write(payload)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()

    def _write(
        self, key: str, fill: Callable[[BinaryIO], None], *, sha256: str, content_type: str
    ) -> StoredObject:
        dest = self._path(key)
        tmp = _temp_beside(dest)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "xb") as out:
                fill(out)
                out.flush()
                os.fsync(out.fileno())
                st = os.fstat(out.fileno())
            # The sidecar goes first and names the new file's inode: a crash between the two
            # renames leaves a sidecar that describes no file, never a wrong hash.
            self._write_sidecar(
                dest, _Sidecar(sha256, st.st_size, content_type, st.st_ino, st.st_mtime_ns)
            )
            os.replace(tmp, dest)
            _fsync_dir(dest.parent)
        except OSError as exc:
            raise _os_error(exc, "write", dest) from None
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
        return StoredObject(key, st.st_size, sha256, content_type)

    def put_file(self, key: str, path: Path, *, sha256: str, content_type: str) -> StoredObject:
        """Copy ``path`` to ``root/<key>``; skipped when the same size and sha256 are there."""
        size, existing = already_stored(self, key, path, sha256)
        if existing is not None:
            return existing

        def fill(out: BinaryIO) -> None:
            with path.open("rb") as source:
                shutil.copyfileobj(source, out, COPY_CHUNK_BYTES)

        stored = self._write(key, fill, sha256=sha256, content_type=content_type)
        if stored.bytes != size:
            raise StorageError(f"{path} changed while it was stored: store it again")
        return stored

    def put_bytes(self, key: str, data: bytes, *, content_type: str) -> StoredObject:
        """Write ``data`` to ``root/<key>``; skipped when the same bytes are there."""
        sha256 = hashlib.sha256(data).hexdigest()
        existing = self.stat(key)
        if existing is not None and (existing.bytes, existing.sha256) == (len(data), sha256):
            return existing

        def fill(out: BinaryIO) -> None:
            out.write(data)

        return self._write(key, fill, sha256=sha256, content_type=content_type)

    def stat(self, key: str) -> StoredObject | None:
        """Size, sha256 and type of ``root/<key>``; None when there is no such file."""
        path = self._path(key)
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise _os_error(exc, "read", path) from None
        if not stat_mode.S_ISREG(st.st_mode):
            return None
        sidecar = self._read_sidecar(path)
        if sidecar is not None and sidecar.describes(st):
            return StoredObject(key, st.st_size, sidecar.sha256, sidecar.content_type)
        return self._rehash(key, path)

    def _rehash(self, key: str, path: Path) -> StoredObject | None:
        digest = hashlib.sha256()
        try:
            with path.open("rb") as handle:
                before = os.fstat(handle.fileno())
                for chunk in _read_chunks(handle):
                    digest.update(chunk)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _os_error(exc, "read", path) from None
        found = StoredObject(key, before.st_size, digest.hexdigest(), content_type_for(key))
        # Best effort: a read-only mount still answers, it just hashes again next time.
        with contextlib.suppress(OSError):
            if os.stat(path).st_mtime_ns == before.st_mtime_ns:
                self._write_sidecar(
                    path,
                    _Sidecar(
                        found.sha256,
                        found.bytes,
                        found.content_type,
                        before.st_ino,
                        before.st_mtime_ns,
                    ),
                )
        return found

    def download(self, key: str, dest: Path) -> StoredObject:
        """Copy ``root/<key>`` into ``dest`` atomically, verified against its recorded sha256."""
        source = self._path(key)
        try:
            handle = source.open("rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise StemMissing(f"{key} is not in {self.url}") from None
        except OSError as exc:
            raise _os_error(exc, "read", source) from None
        with handle:
            st = os.fstat(handle.fileno())
            sidecar = self._read_sidecar(source)
            recorded = sidecar if sidecar is not None and sidecar.describes(st) else None
            got = _receive(
                dest,
                _read_chunks(handle),
                key=key,
                where=self.url,
                sha256=recorded.sha256 if recorded else "",
                size=st.st_size,
            )
        content_type = recorded.content_type if recorded else got.content_type
        return StoredObject(key, got.bytes, got.sha256, content_type)

    def read_bytes(self, key: str) -> bytes | None:
        """The content of the small file ``root/<key>``, verified; None when absent."""
        path = self._path(key)
        try:
            with path.open("rb") as handle:
                st = os.fstat(handle.fileno())
                if st.st_size > MAX_SMALL_OBJECT_BYTES:
                    raise StorageError(
                        f"{key} is {st.st_size} bytes, too large to read whole: download it"
                    )
                data = handle.read()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        except OSError as exc:
            raise _os_error(exc, "read", path) from None
        sidecar = self._read_sidecar(path)
        if (
            sidecar is not None
            and sidecar.describes(st)
            and hashlib.sha256(data).hexdigest() != sidecar.sha256
        ):
            raise StemCorrupt(f"{key} in {self.url} does not match its recorded sha256")
        return data

    def sign_url(self, key: str, *, expires_s: int) -> str:
        """A URL for ``key`` from the gateway's signer; ConfigError when none is configured."""
        validate_key(key)
        if self._url_signer is None:
            raise ConfigError(
                "file:// storage needs the gateway to serve signed URLs: set "
                "VIDGO_STEMS_PUBLIC_BASE_URL and VIDGO_STEMS_FILE_URL_SECRET"
            )
        return self._url_signer(key, expires_s)

    def delete_prefix(self, prefix: str) -> int:
        """Delete the folder ``root/<prefix>`` and everything in it; returns how many objects."""
        folder = self.root.joinpath(*_validate_prefix(prefix).split("/"))
        if not folder.is_dir() or folder.is_symlink():
            return 0
        deleted = 0
        try:
            for dirpath, dirnames, filenames in os.walk(folder, topdown=False):
                here = Path(dirpath)
                for name in filenames:
                    with contextlib.suppress(FileNotFoundError):
                        (here / name).unlink()
                        # Hidden files are our sidecars and temp files, not objects.
                        if not name.startswith("."):
                            deleted += 1
                for name in dirnames:
                    sub = here / name
                    if sub.is_symlink():
                        sub.unlink()
                    else:
                        # A writer may be filling it right now: leave what is not empty.
                        with contextlib.suppress(FileNotFoundError, OSError):
                            sub.rmdir()
            with contextlib.suppress(OSError):
                folder.rmdir()
        except OSError as exc:
            raise _os_error(exc, "delete under", folder) from None
        return deleted
