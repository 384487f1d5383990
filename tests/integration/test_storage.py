"""S3Storage against a real S3 server process (moto) on loopback: multipart uploads, metadata,
pre-signed URLs, duplicate puts, verified downloads, prefixes and an endpoint that is down."""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import obstore
import pytest
from obstore.store import S3Store

from tests.s3server import S3Server
from vidgo_stems.devstack.redis_server import free_port
from vidgo_stems.errors import StemCorrupt, StemMissing, StorageError, StorageUnavailable
from vidgo_stems.files.objects import PUT_CHUNK_BYTES
from vidgo_stems.files.storage import S3Storage, StoredObject, open_storage

pytestmark = pytest.mark.integration

#: Over obstore's default part size (5 MiB) and ours, so the upload is multipart.
BIG_BYTES = 12 * 1024 * 1024 + 12345


@pytest.fixture(scope="module")
def s3():
    with S3Server() as server:
        yield server


@pytest.fixture
def aws_env(s3, monkeypatch):
    """Only the test server's AWS_* variables, none of the developer's."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def prefix():
    return f"t-{secrets.token_hex(4)}"


@pytest.fixture
def store(s3, aws_env, prefix) -> S3Storage:
    opened = open_storage(f"s3://{s3.bucket}/{prefix}")
    assert isinstance(opened, S3Storage)
    return opened


@pytest.fixture
def raw(s3, aws_env, prefix) -> S3Store:
    """obstore on the same bucket and prefix, to look behind S3Storage's back."""
    return S3Store(s3.bucket, prefix=prefix, client_options={"allow_http": True})


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    path = tmp_path_factory.mktemp("s3") / "vocals.mp3"
    data = os.urandom(BIG_BYTES)
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def test_multipart_put_stat_signed_url_download(store, raw, big, tmp_path):
    assert BIG_BYTES > 5 * 1024 * 1024
    assert BIG_BYTES > PUT_CHUNK_BYTES
    path, digest = big
    put = store.put_file("job1/vocals.mp3", path, sha256=digest, content_type="audio/mpeg")
    assert put == StoredObject("job1/vocals.mp3", BIG_BYTES, digest, "audio/mpeg")
    # A multipart upload's ETag ends in "-<parts>".
    assert obstore.head(raw, "job1/vocals.mp3")["e_tag"].strip('"').rsplit("-", 1)[1] == "2"

    assert store.stat("job1/vocals.mp3") == put

    url = store.sign_url("job1/vocals.mp3", expires_s=300)
    assert "X-Amz-Signature=" in url
    response = httpx.get(url, timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"] == "audio/mpeg"
    assert hashlib.sha256(response.content).hexdigest() == digest

    dest = tmp_path / "out" / "vocals.mp3"
    assert store.download("job1/vocals.mp3", dest) == put
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == digest
    assert [p.name for p in dest.parent.iterdir()] == ["vocals.mp3"]  # no temp file left


def test_put_again_is_skipped(store, raw, big, monkeypatch):
    path, digest = big
    first = store.put_file("job1/vocals.mp3", path, sha256=digest, content_type="audio/mpeg")
    before = obstore.head(raw, "job1/vocals.mp3")

    def no_upload(*args, **kwargs):
        raise AssertionError("a duplicate put_file must not upload")

    monkeypatch.setattr(obstore, "put", no_upload)
    again = store.put_file("job1/vocals.mp3", path, sha256=digest, content_type="audio/mpeg")
    monkeypatch.undo()
    assert again == first
    after = obstore.head(raw, "job1/vocals.mp3")
    assert (after["e_tag"], after["last_modified"]) == (before["e_tag"], before["last_modified"])


def test_changed_bytes_are_uploaded_again(store, tmp_path):
    path = tmp_path / "manifest.json"
    path.write_bytes(b"{}")
    store.put_file(
        "job1/m.json", path, sha256=hashlib.sha256(b"{}").hexdigest(), content_type="x/y"
    )
    path.write_bytes(b'{"v": 2}')
    digest = hashlib.sha256(b'{"v": 2}').hexdigest()
    put = store.put_file("job1/m.json", path, sha256=digest, content_type="application/json")
    assert store.stat("job1/m.json") == put
    assert store.read_bytes("job1/m.json") == b'{"v": 2}'


def test_small_objects(store):
    manifest = b'{"stems": ["vocals", "instrumental"]}\n'
    put = store.put_bytes("job1/manifest.json", manifest, content_type="application/json")
    assert put == StoredObject(
        "job1/manifest.json",
        len(manifest),
        hashlib.sha256(manifest).hexdigest(),
        "application/json",
    )
    assert store.stat("job1/manifest.json") == put
    assert store.read_bytes("job1/manifest.json") == manifest


def test_download_refuses_bytes_that_do_not_match_the_metadata(store, raw, tmp_path):
    # Written behind S3Storage's back with a sha256 that does not describe the bytes.
    obstore.put(raw, "job1/bad.mp3", b"actual bytes", attributes={"sha256": "0" * 64})
    dest = tmp_path / "bad.mp3"
    with pytest.raises(StemCorrupt):
        store.download("job1/bad.mp3", dest)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(StemCorrupt):
        store.read_bytes("job1/bad.mp3")


def test_missing_objects(store, tmp_path):
    assert store.stat("job1/nothing.mp3") is None
    assert store.read_bytes("job1/nothing.json") is None
    with pytest.raises(StemMissing, match=r"job1/nothing\.mp3"):
        store.download("job1/nothing.mp3", tmp_path / "nothing.mp3")
    assert list(tmp_path.iterdir()) == []
    assert store.delete_prefix("job1/") == 0


def test_delete_prefix_removes_only_that_prefix(store):
    for key in ("job1/vocals.mp3", "job1/sub/manifest.json", "job10/vocals.mp3", "job2/a.mp3"):
        store.put_bytes(key, key.encode(), content_type="audio/mpeg")
    assert store.delete_prefix("job1/") == 2
    assert store.stat("job1/vocals.mp3") is None
    assert store.stat("job1/sub/manifest.json") is None
    assert store.read_bytes("job10/vocals.mp3") == b"job10/vocals.mp3"
    assert store.read_bytes("job2/a.mp3") == b"job2/a.mp3"


def test_prefix_in_the_url_is_applied(s3, aws_env, prefix):
    store = open_storage(f"s3://{s3.bucket}/{prefix}/nested")
    store.put_bytes("job1/a.json", b"{}", content_type="application/json")
    bare = S3Store(s3.bucket, client_options={"allow_http": True})
    assert obstore.head(bare, f"{prefix}/nested/job1/a.json")["size"] == 2


def test_missing_bucket_is_a_storage_error(aws_env):
    store = open_storage(f"s3://no-such-bucket-{secrets.token_hex(4)}/x")
    with pytest.raises(StorageError, match="does not exist"):
        store.put_bytes("job1/a.json", b"{}", content_type="application/json")


def test_sign_url_bounds(store):
    with pytest.raises(StorageError, match="7 days"):
        store.sign_url("job1/a.mp3", expires_s=8 * 24 * 3600)


def test_unreachable_endpoint_is_retryable_and_leaks_no_secret(aws_env, big, monkeypatch):
    secret = "sEcReT-" + secrets.token_hex(16)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens
    store = open_storage("s3://vidgo-stems-down/p")
    path, digest = big
    calls = [
        lambda: store.stat("job1/vocals.mp3"),
        lambda: store.put_file("job1/vocals.mp3", path, sha256=digest, content_type="audio/mpeg"),
        lambda: store.put_bytes("job1/m.json", b"{}", content_type="application/json"),
        lambda: store.read_bytes("job1/m.json"),
        lambda: store.delete_prefix("job1/"),
    ]
    for call in calls:
        with pytest.raises(StorageUnavailable) as caught:
            call()
        error = caught.value
        assert error.code == "storage_unavailable"
        assert "could not connect" in error.message
        for text in (str(error), repr(error), error.message):
            assert secret not in text
            assert "X-Amz-" not in text
    # Signing is local: it works offline and its query string never lands in an error.
    assert "X-Amz-Signature=" in store.sign_url("job1/vocals.mp3", expires_s=60)


class Misbehaving(BaseHTTPRequestHandler):
    """Answers every request with the server's ``status``, or never answers (``status`` 0)."""

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        if self.server.status == 0:
            self.server.release.wait(timeout=30)
            return
        self.send_response(self.server.status)
        self.send_header("content-length", "0")
        self.end_headers()

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _answer

    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def misbehaving(status):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Misbehaving)
    server.daemon_threads = True
    server.status = status
    server.release = threading.Event()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.mark.parametrize(
    ("status", "error", "reason"),
    [
        (503, StorageUnavailable, "HTTP 503"),
        (500, StorageUnavailable, "HTTP 500"),
        (403, StorageError, "AWS_SECRET_ACCESS_KEY"),
        (400, StorageError, "HTTP 400"),
        (0, StorageUnavailable, "timed out"),
    ],
)
def test_server_answers_are_classified(aws_env, monkeypatch, status, error, reason):
    with misbehaving(status) as endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        store = S3Storage("vidgo-stems-odd", "p", max_retries=1, request_timeout_s=0.5)
        with pytest.raises(error, match=reason) as caught:
            store.put_bytes("job1/m.json", b"{}", content_type="application/json")
        assert type(caught.value) is error
        with pytest.raises(error, match=reason):
            store.read_bytes("job1/m.json")
