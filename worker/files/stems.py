"""A job's stem files as the ledger records them: typed, with one way to ask if one is still
there.

Two records, one per life stage of a stem:

- :class:`StoredStem`: the stem as Vidgo served it, verified and stored by the download step
  (``JobRecord.stems``); linkable at once, and the input of post-processing.
- :class:`DeliveredStem`: the stem as the caller asked for it (format, rate, loudness), with
  its waveform peaks, stored by post-processing (``JobRecord.outputs``).

Both are stored in the job hash as plain JSON objects and read back by ``from_json``::

    stem = StoredStem(file="vocals.mp3", key="j1/original/vocals.mp3", sha256="9f…",
                      bytes=1_234_567, content_type="audio/mpeg", source_host="storage.vidgo.ai")
    StoredStem.from_json(stem.to_json()) == stem
    still_stored(storage, stem)   # in storage with the checksum recorded when it was stored
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Self, TypeVar

from vidgo_stems.files.objects import Storage

_UNKNOWN: dict[str, Any] = {
    "key": "",
    "sha256": "",
    "bytes": 0,
    "content_type": "application/octet-stream",
}


@dataclass(frozen=True)
class StemFile:
    """What every stored stem file has: where it is, and what it is."""

    key: str
    sha256: str
    bytes: int
    content_type: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        """The record from its JSON object: fields this version does not know are ignored (a
        newer version may have written them), and one an older version did not write reads
        as unknown (an empty key or checksum is never "still stored")."""
        known = {f.name for f in fields(cls)}
        given = {k: v for k, v in data.items() if k in known}
        return cls(**{**_UNKNOWN, **given})


@dataclass(frozen=True)
class StoredStem(StemFile):
    """A stem as Vidgo served it: ``file`` is its name under the job's ``original/`` folder,
    ``source_host`` the host it was downloaded from."""

    file: str = ""
    source_host: str | None = None

    @property
    def format(self) -> str:
        """Its file format, as its name says (``mp3``), ``audio`` when the name does not."""
        _, dot, suffix = self.file.rpartition(".")
        return suffix if dot and suffix else "audio"


@dataclass(frozen=True)
class DeliveredStem(StemFile):
    """A stem as delivered to callers, with the storage keys of its waveform peaks."""

    peaks_json_key: str | None = None
    peaks_dat_key: str | None = None


def still_stored(storage: Storage, stem: StemFile) -> bool:
    """Whether ``stem`` is in storage with the checksum recorded when it was stored."""
    if not stem.key or not stem.sha256:
        return False
    found = storage.stat(stem.key)
    return found is not None and found.sha256 == stem.sha256


def record_json(value: Any) -> Any:
    """``json.dumps(..., default=record_json)``: stem records as their JSON objects."""
    if isinstance(value, StemFile):
        return value.to_json()
    raise TypeError(f"{type(value).__name__} is not a stem record")


S = TypeVar("S", bound=StemFile)


def stems_from_json(raw: Any, kind: type[S]) -> dict[str, S]:
    """A ``{name: record}`` mapping of ``kind`` from the job hash's JSON (empty for none)."""
    if not isinstance(raw, Mapping):
        return {}
    return {name: kind.from_json(info) for name, info in raw.items() if isinstance(info, Mapping)}
