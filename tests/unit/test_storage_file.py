"""FileStorage and open_storage: round trips, atomic writes, sidecar hashes, refused keys and URLs."""

from __future__ import annotations

import errno
import hashlib
import os

import pytest

from vidgo_stems.errors import ConfigError, StemCorrupt, StemMissing, StorageError
from vidgo_stems.files import localfs as storage_module
from vidgo_stems.files.storage import (
    FileStorage,
    S3Storage,
    StoredObject,
    content_type_for,
    open_storage,
)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def store(tmp_path):
    return FileStorage(tmp_path / "root")


@pytest.fixture
def stem(tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 17)  # more than one copy block
    path = tmp_path / "vocals.mp3"
    path.write_bytes(data)
    return path, data


def visible_files(folder):
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def hidden_files(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_round_trip(store, stem, tmp_path):
    path, data = stem
    put = store.put_file("job1/vocals.mp3", path, sha256=sha(data), content_type="audio/mpeg")
    assert put == StoredObject("job1/vocals.mp3", len(data), sha(data), "audio/mpeg")
    assert (store.root / "job1" / "vocals.mp3").read_bytes() == data
    assert store.stat("job1/vocals.mp3") == put

    dest = tmp_path / "out" / "v.mp3"
    assert store.download("job1/vocals.mp3", dest) == put
    assert dest.read_bytes() == data
    assert hidden_files(dest.parent) == []  # no temp file left behind

    manifest = b'{"stems": ["vocals"]}\n'
    written = store.put_bytes("job1/manifest.json", manifest, content_type="application/json")
    assert written == StoredObject(
        "job1/manifest.json", len(manifest), sha(manifest), "application/json"
    )
    assert store.read_bytes("job1/manifest.json") == manifest
    assert store.stat("job1/manifest.json") == written

    assert store.delete_prefix("job1/") == 2
    assert store.stat("job1/vocals.mp3") is None
    assert not (store.root / "job1").exists()


def test_absent_objects(store, tmp_path):
    assert store.stat("job1/vocals.mp3") is None
    assert store.read_bytes("job1/manifest.json") is None
    with pytest.raises(StemMissing, match=r"job1/vocals\.mp3"):
        store.download("job1/vocals.mp3", tmp_path / "dest.mp3")
    assert not (tmp_path / "dest.mp3").exists()
    assert store.delete_prefix("job1/") == 0
    # A folder is not an object.
    store.put_bytes("job1/a/b.json", b"{}", content_type="application/json")
    assert store.stat("job1/a") is None


def test_url_is_the_folder(tmp_path):
    assert FileStorage(tmp_path).url == tmp_path.as_uri()
    assert open_storage(tmp_path.as_uri()).url == tmp_path.as_uri()


def test_failed_rename_leaves_no_file_under_the_final_name(store, stem, monkeypatch):
    path, data = stem

    def refuse(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(storage_module.os, "replace", refuse)
    with pytest.raises(StorageError, match="disk is full"):
        store.put_file("job1/vocals.mp3", path, sha256=sha(data), content_type="audio/mpeg")
    folder = store.root / "job1"
    assert visible_files(folder) == []
    assert hidden_files(folder) == []  # temp files removed too
    assert store.stat("job1/vocals.mp3") is None


def test_write_broken_midway_keeps_the_old_version(store, stem, monkeypatch):
    path, data = stem
    old = b"old version"
    store.put_bytes("job1/vocals.mp3", old, content_type="audio/mpeg")

    def half_then_fail(source, out, length=0):
        out.write(source.read(1000))
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(storage_module.shutil, "copyfileobj", half_then_fail)
    with pytest.raises(StorageError):
        store.put_file("job1/vocals.mp3", path, sha256=sha(data), content_type="audio/mpeg")
    assert (store.root / "job1" / "vocals.mp3").read_bytes() == old
    assert store.stat("job1/vocals.mp3") == StoredObject(
        "job1/vocals.mp3", len(old), sha(old), "audio/mpeg"
    )
    assert visible_files(store.root / "job1") == ["vocals.mp3"]


def test_crash_between_sidecar_and_file_rename_is_noticed(store, stem, monkeypatch):
    path, data = stem
    old = b"old version"
    store.put_bytes("job1/vocals.mp3", old, content_type="audio/mpeg")
    real_replace = os.replace

    def only_sidecars(src, dst):
        if not os.path.basename(dst).startswith("."):
            raise OSError(errno.EIO, "Input/output error")
        real_replace(src, dst)

    monkeypatch.setattr(storage_module.os, "replace", only_sidecars)
    with pytest.raises(StorageError):
        store.put_file("job1/vocals.mp3", path, sha256=sha(data), content_type="audio/mpeg")
    monkeypatch.undo()
    # The new sidecar names a file that never got its name: the old file is rehashed, not
    # reported with the new hash.
    assert store.stat("job1/vocals.mp3").sha256 == sha(old)
    assert store.read_bytes("job1/vocals.mp3") == old


def test_put_again_with_same_bytes_is_skipped(store, stem, monkeypatch):
    path, data = stem
    first = store.put_file("job1/vocals.mp3", path, sha256=sha(data), content_type="audio/mpeg")
    inode = (store.root / "job1" / "vocals.mp3").stat().st_ino

    def no_write(*args, **kwargs):
        raise AssertionError("a duplicate put must not write")

    monkeypatch.setattr(storage_module.os, "replace", no_write)
    again = store.put_file("job1/vocals.mp3", path, sha256=sha(data), content_type="audio/mpeg")
    assert again == first
    assert store.put_bytes("job1/vocals.mp3", data, content_type="audio/mpeg") == first
    assert (store.root / "job1" / "vocals.mp3").stat().st_ino == inode


def test_put_with_other_bytes_replaces(store, stem, tmp_path):
    path, data = stem
    store.put_file("job1/vocals.mp3", path, sha256=sha(data), content_type="audio/mpeg")
    newer = tmp_path / "newer.mp3"
    newer.write_bytes(b"newer")
    put = store.put_file("job1/vocals.mp3", newer, sha256=sha(b"newer"), content_type="audio/mpeg")
    assert put.sha256 == sha(b"newer")
    assert store.read_bytes("job1/vocals.mp3") == b"newer"
    assert visible_files(store.root / "job1") == ["vocals.mp3"]
    assert hidden_files(store.root / "job1") == [".vocals.mp3.sha256"]


def test_file_copied_in_by_hand_is_hashed_once(store, tmp_path, monkeypatch):
    (store.root / "job1").mkdir(parents=True)
    (store.root / "job1" / "drums.wav").write_bytes(b"by hand")
    found = store.stat("job1/drums.wav")
    assert found == StoredObject("job1/drums.wav", 7, sha(b"by hand"), "audio/wav")

    def no_rehash(*args):
        raise AssertionError("the sidecar written by the first stat should be used")

    monkeypatch.setattr(FileStorage, "_rehash", no_rehash)
    assert store.stat("job1/drums.wav") == found


def test_download_refuses_bytes_that_do_not_match_the_recorded_hash(store, stem, tmp_path):
    path, data = stem
    store.put_file("job1/vocals.mp3", path, sha256=sha(data), content_type="audio/mpeg")
    stored = store.root / "job1" / "vocals.mp3"
    before = stored.stat()
    with stored.open("r+b") as handle:  # same inode, same size
        handle.write(b"X")
    os.utime(stored, ns=(before.st_atime_ns, before.st_mtime_ns))  # and the same mtime: bit rot
    dest = tmp_path / "dest.mp3"
    with pytest.raises(StemCorrupt, match="sha256"):
        store.download("job1/vocals.mp3", dest)
    assert not dest.exists()
    assert hidden_files(tmp_path) == []
    with pytest.raises(StemCorrupt):
        store.read_bytes("job1/vocals.mp3")


def test_delete_prefix_removes_only_that_prefix(store):
    for key in ("job1/a.mp3", "job1/sub/b.wav", "job10/a.mp3", "job2/a.mp3"):
        store.put_bytes(key, key.encode(), content_type="audio/mpeg")
    (store.root / "job1" / ".a.mp3.1234.part").write_bytes(b"left by a crash")
    assert store.delete_prefix("job1") == 2
    assert store.stat("job1/a.mp3") is None
    assert not (store.root / "job1").exists()
    assert store.read_bytes("job10/a.mp3") == b"job10/a.mp3"
    assert store.read_bytes("job2/a.mp3") == b"job2/a.mp3"
    with pytest.raises(StorageError, match="delete everything"):
        store.delete_prefix("/")


BAD_KEYS = [
    "",
    "../outside",
    "job1/../../outside",
    "job1/..",
    "/etc/passwd",
    "job1\\..\\outside",
    "job1/a\x00b",
    "job1//a.mp3",
    "job1/",
    "job1/./a.mp3",
    "job1/.a.mp3.sha256",
    "a" * 1100,
]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_keys_that_could_escape_are_refused(store, tmp_path, key):
    with pytest.raises(StorageError):
        store.put_bytes(key, b"x", content_type="text/plain")
    with pytest.raises(StorageError):
        store.stat(key)
    with pytest.raises(StorageError):
        store.read_bytes(key)
    with pytest.raises(StorageError):
        store.download(key, tmp_path / "dest")
    with pytest.raises(StorageError):
        store.sign_url(key, expires_s=60)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written anywhere


def test_sign_url_without_signer_says_what_to_set(store):
    with pytest.raises(ConfigError) as caught:
        store.sign_url("job1/vocals.mp3", expires_s=3600)
    message = str(caught.value)
    assert "\n" not in message
    assert "VIDGO_STEMS_PUBLIC_BASE_URL" in message
    assert "VIDGO_STEMS_FILE_URL_SECRET" in message


def test_sign_url_uses_the_signer(tmp_path):
    calls = []

    def signer(key, expires_s):
        calls.append((key, expires_s))
        return f"https://gw.example/v1/files/{key}?expires=1&sig=x"

    store = open_storage(tmp_path.as_uri(), url_signer=signer)
    assert store.sign_url("job1/vocals.mp3", expires_s=600).startswith("https://gw.example/")
    assert calls == [("job1/vocals.mp3", 600)]


@pytest.mark.parametrize(
    "url",
    [
        "",
        "ftp://host/stems",
        "relative/stems",
        "/abs/but/no/scheme",
        "file://relative/stems",
        "file:relative/stems",
        "file:///srv/stems?x=1",
        "s3://",
        "s3:///prefix",
        "s3://Bad_Bucket/x",
        "s3://ab",
        "s3://bucket/x?region=eu-west-1",
        "s3://bucket/a//b",
        "s3://bucket/a/../b",
    ],
)
def test_bad_urls_are_one_line_config_errors(url):
    with pytest.raises(ConfigError) as caught:
        open_storage(url)
    message = str(caught.value)
    assert "\n" not in message
    assert "VIDGO_STEMS_STORAGE_URL" in message
    assert "e.g." in message


def test_credentials_in_the_url_are_refused_without_echoing_them():
    with pytest.raises(ConfigError) as caught:
        open_storage("s3://AKIAEXAMPLE:hunter2-secret@bucket/stems")
    message = str(caught.value)
    assert "hunter2-secret" not in message
    assert "AKIAEXAMPLE" not in message
    assert "AWS_SECRET_ACCESS_KEY" in message


def test_s3_urls_parse(monkeypatch):
    # Building the store makes no request.
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    store = open_storage("s3://vidgo-stems/prod/stems/")
    assert isinstance(store, S3Storage)
    assert (store.bucket, store.prefix, store.url) == (
        "vidgo-stems",
        "prod/stems",
        "s3://vidgo-stems/prod/stems",
    )
    assert open_storage("s3://vidgo-stems").url == "s3://vidgo-stems"


def test_file_url_with_escapes(tmp_path):
    folder = tmp_path / "with space"
    store = open_storage(folder.as_uri())
    assert isinstance(store, FileStorage)
    assert store.root == folder
    store.put_bytes("job1/a.json", b"{}", content_type="application/json")
    assert (folder / "job1" / "a.json").exists()


def test_relative_root_is_refused(tmp_path):
    with pytest.raises(ConfigError):
        FileStorage("relative/root")


def test_root_is_normalised(tmp_path):
    store = FileStorage(tmp_path / "a" / ".." / "root")
    assert store.root == tmp_path / "root"
    store.put_bytes("job1/a.json", b"{}", content_type="application/json")
    assert (tmp_path / "root" / "job1" / "a.json").read_bytes() == b"{}"


def test_unwritable_root_is_a_storage_error(tmp_path):
    blocker = tmp_path / "file-not-folder"
    blocker.write_bytes(b"")
    store = FileStorage(blocker / "root")
    with pytest.raises(StorageError, match="not a folder"):
        store.put_bytes("job1/a.json", b"{}", content_type="application/json")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("vocals.mp3", "audio/mpeg"),
        ("job1/VOCALS.MP3", "audio/mpeg"),
        ("a.wav", "audio/wav"),
        ("a.flac", "audio/flac"),
        ("manifest.json", "application/json"),
        ("notes.txt", "text/plain"),
        ("archive.tar.gz", "application/octet-stream"),
        ("no-suffix", "application/octet-stream"),
        ("a.unknownext", "application/octet-stream"),
    ],
)
def test_content_types(name, expected):
    assert content_type_for(name) == expected


def test_large_copy_is_complete(store, tmp_path):
    path = tmp_path / "big.wav"
    with path.open("wb") as handle:
        for _ in range(5):
            handle.write(os.urandom(1024 * 1024))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    store.put_file("job1/big.wav", path, sha256=digest, content_type="audio/wav")
    out = tmp_path / "copy.wav"
    assert store.download("job1/big.wav", out).sha256 == digest
    assert out.stat().st_size == 5 * 1024 * 1024
