"""The resumable, verifying downloader against a MockTransport storage that honours Range."""

from __future__ import annotations

import errno
import hashlib
import os

import httpx
import pytest

from vidgo_stems import errors
from vidgo_stems.files.fetch import fetch_to_file, part_path

BODY = bytes(range(256)) * 64  # 16 KiB


class Storage:
    """Serves BODY; can cut responses short, ignore Range, or announce a wrong ETag."""

    def __init__(self, etag: str | None = None):
        self.etag = etag
        self.cut_at: int | None = None
        self.honour_range = True
        self.requests: list[dict] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(dict(request.headers))
        headers = {"etag": self.etag} if self.etag else {}
        start = 0
        rng = request.headers.get("range")
        if rng and self.honour_range:
            start = int(rng.removeprefix("bytes=").rstrip("-"))
            headers["content-range"] = f"bytes {start}-{len(BODY) - 1}/{len(BODY)}"
        body = BODY[start:]
        headers["content-length"] = str(len(body))
        if self.cut_at is not None:
            body = body[: self.cut_at]
            self.cut_at = None
        return httpx.Response(
            206 if rng and self.honour_range else 200, content=body, headers=headers
        )


def fetch(storage, dest, max_bytes=10**9):
    with httpx.Client(transport=httpx.MockTransport(storage)) as http:
        return fetch_to_file(
            http, "https://storage.vidgo.ai/a/vocals.wav", dest, max_bytes=max_bytes
        )


def test_a_broken_transfer_resumes_with_range(tmp_path):
    storage = Storage(etag='"' + hashlib.md5(BODY).hexdigest() + '"')
    storage.cut_at = 5000
    dest = tmp_path / "vocals.wav"
    with pytest.raises(errors.StemDownloadError, match="5000 of 16384"):
        fetch(storage, dest)
    assert not dest.exists() and part_path(dest).stat().st_size == 5000
    result = fetch(storage, dest)
    assert storage.requests[-1]["range"] == "bytes=5000-"
    assert storage.requests[-1]["if-range"] == storage.etag
    assert result.resumed_from == 5000
    assert dest.read_bytes() == BODY
    assert result.sha256 == hashlib.sha256(BODY).hexdigest()
    assert not part_path(dest).exists()


def test_a_server_that_ignores_range_restarts_from_zero(tmp_path):
    storage = Storage()
    storage.cut_at = 3000
    dest = tmp_path / "vocals.wav"
    with pytest.raises(errors.StemDownloadError):
        fetch(storage, dest)
    storage.honour_range = False
    assert fetch(storage, dest).resumed_from == 0
    assert dest.read_bytes() == BODY


@pytest.mark.parametrize(
    "digest", [hashlib.md5(b"other").hexdigest(), hashlib.sha256(b"other").hexdigest()]
)
def test_a_checksum_mismatch_discards_the_file_and_downloads_again(tmp_path, digest):
    storage = Storage(etag=f'"{digest}"')
    dest = tmp_path / "vocals.wav"
    with pytest.raises(errors.StemDownloadError, match="checksum"):
        fetch(storage, dest)
    assert list(tmp_path.iterdir()) == []
    storage.etag = '"' + hashlib.sha256(BODY).hexdigest() + '"'
    assert fetch(storage, dest).bytes == len(BODY)


def test_opaque_etags_are_not_taken_for_checksums(tmp_path):
    assert fetch(Storage(etag='"abc-123"'), tmp_path / "v.wav").bytes == len(BODY)


def test_oversize_stems_are_refused_before_writing(tmp_path):
    with pytest.raises(errors.StorageError, match="MAX_STEM_BYTES"):
        fetch(Storage(), tmp_path / "v.wav", max_bytes=100)
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_folder_fails_with_the_path_and_the_remedy(tmp_path, monkeypatch):
    real_open = open

    def refuse(path, *args, **kwargs):
        if str(path).endswith(".part"):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", refuse)
    with pytest.raises(errors.StorageError, match="permission denied: let the worker"):
        fetch(Storage(), tmp_path / "v.wav")


def test_rename_failure_leaves_no_file_that_looks_complete(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(errors.StorageError, match="disk is full"):
        fetch(Storage(), tmp_path / "v.wav")
    assert [p for p in tmp_path.iterdir() if not p.name.startswith(".")] == []
