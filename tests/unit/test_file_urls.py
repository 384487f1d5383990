"""Signed file URLs: the link is the only credential, it expires, and nothing outside the root
(or hidden inside it) is ever served, whatever path or signature a caller sends."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import os
from urllib.parse import quote

import httpx
import pytest
from fastapi import FastAPI

from vidgo_stems.errors import ConfigError, UrlExpired, UrlRefused
from vidgo_stems.files import signing
from vidgo_stems.files.signing import (
    check_key,
    check_secret,
    file_url,
    make_signer,
    sign_key,
    verify,
)
from vidgo_stems.web import files as web_files
from vidgo_stems.web.files import add_file_routes, media_type

SECRET = b"s" * 16 + os.urandom(16)
OTHER_SECRET = os.urandom(32)
NOW = 1_700_000_000.0
TTL = 600
BASE = "http://testserver"
OUTSIDE = b"outside the root: never served"


class Client:
    """A synchronous in-process client (httpx's ASGITransport; Starlette's TestClient warns)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def get(self, url: str, **kwargs) -> httpx.Response:
        return asyncio.run(self._request("GET", url, **kwargs))

    def head(self, url: str, **kwargs) -> httpx.Response:
        return asyncio.run(self._request("HEAD", url, **kwargs))

    async def _request(self, method: str, url: str, **kwargs) -> httpx.Response:
        transport = httpx.ASGITransport(app=self.app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            return await client.request(method, url, **kwargs)


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def world(tmp_path):
    root = tmp_path / "stems"
    (root / "job1").mkdir(parents=True)
    audio = os.urandom(300 * 1024 + 7)
    (root / "job1" / "vocals.mp3").write_bytes(audio)
    (root / "job1" / "manifest.json").write_text(json.dumps({"job_id": "job1"}))
    (root / "job1" / ".vocals.mp3.part").write_bytes(b"half-written")
    (tmp_path / "secret.txt").write_bytes(OUTSIDE)
    (root / "job1" / "leak.mp3").symlink_to(tmp_path / "secret.txt")
    (root / "job1" / "alias.mp3").symlink_to(root / "job1" / ".vocals.mp3.part")
    (root / "job1" / "same.mp3").symlink_to(root / "job1" / "vocals.mp3")
    clock = Clock()
    app = FastAPI()
    add_file_routes(app, root=root, secret=SECRET, clock=clock)
    client = Client(app)
    return {
        "root": root,
        "outside": tmp_path / "secret.txt",
        "audio": audio,
        "clock": clock,
        "app": app,
        "client": client,
        "sign": make_signer(BASE, SECRET, clock=clock),
    }


def raw_url(key_path: str, key: str, *, expires_at: int = int(NOW) + TTL, secret=SECRET) -> str:
    """A URL with a hand-made path (any encoding) and a signature over ``key``."""
    sig = sign_key(key, expires_at=expires_at, secret=secret)
    return f"{BASE}/v1/files/{key_path}?expires={expires_at}&sig={sig}"


def assert_refused(response, status: int = 403, code: str = "url_refused") -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    assert OUTSIDE not in response.content
    return body["error"]


# --- serving ----------------------------------------------------------------------------------


def test_full_get_returns_the_exact_bytes_with_cache_headers(world):
    response = world["client"].get(world["sign"]("job1/vocals.mp3", TTL))
    assert response.status_code == 200
    assert response.content == world["audio"]
    assert response.headers["content-type"] == "audio/mpeg"
    assert response.headers["content-length"] == str(len(world["audio"]))
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["cache-control"] == f"private, max-age={TTL}"
    assert response.headers["etag"].startswith('"')
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "last-modified" in response.headers


def test_max_age_counts_down_to_the_expiry(world):
    url = world["sign"]("job1/vocals.mp3", TTL)
    world["clock"].now = NOW + 100.5
    response = world["client"].get(url)
    assert response.headers["cache-control"] == f"private, max-age={TTL - 101}"


def test_manifest_is_served_as_json(world):
    response = world["client"].get(world["sign"]("job1/manifest.json", TTL))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"job_id": "job1"}


def test_a_symlink_inside_the_root_is_served(world):
    response = world["client"].get(world["sign"]("job1/same.mp3", TTL))
    assert response.status_code == 200
    assert response.content == world["audio"]


def test_range_returns_206_with_those_bytes(world):
    size = len(world["audio"])
    response = world["client"].get(
        world["sign"]("job1/vocals.mp3", TTL), headers={"Range": "bytes=100-199"}
    )
    assert response.status_code == 206
    assert response.content == world["audio"][100:200]
    assert response.headers["content-range"] == f"bytes 100-199/{size}"
    assert response.headers["content-length"] == "100"
    assert response.headers["content-type"] == "audio/mpeg"


def test_suffix_and_open_ranges(world):
    url, size, client = world["sign"]("job1/vocals.mp3", TTL), len(world["audio"]), world["client"]
    suffix = client.get(url, headers={"Range": "bytes=-10"})
    assert suffix.status_code == 206
    assert suffix.content == world["audio"][-10:]
    assert suffix.headers["content-range"] == f"bytes {size - 10}-{size - 1}/{size}"
    tail = client.get(url, headers={"Range": f"bytes={size - 5}-"})
    assert tail.status_code == 206
    assert tail.content == world["audio"][-5:]
    # What a browser's <audio> sends first.
    whole = client.get(url, headers={"Range": "bytes=0-"})
    assert whole.status_code == 206
    assert whole.content == world["audio"]


def test_unsatisfiable_range_is_416_in_the_json_shape(world):
    size = len(world["audio"])
    response = world["client"].get(
        world["sign"]("job1/vocals.mp3", TTL), headers={"Range": f"bytes={size}-{size + 10}"}
    )
    error = assert_refused(response, 416, "range_not_satisfiable")
    assert response.headers["content-range"] == f"bytes */{size}"
    assert str(size) in error["message"]


def test_malformed_range_is_400_in_the_json_shape(world):
    response = world["client"].get(
        world["sign"]("job1/vocals.mp3", TTL), headers={"Range": "bytes=200-100"}
    )
    assert_refused(response, 400, "invalid_range")


def test_head_sends_the_headers_only(world):
    url, client = world["sign"]("job1/vocals.mp3", TTL), world["client"]
    response = client.head(url)
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-length"] == str(len(world["audio"]))
    assert response.headers["content-type"] == "audio/mpeg"
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["etag"] == client.get(url).headers["etag"]
    ranged = client.head(url, headers={"Range": "bytes=0-9"})
    assert ranged.status_code == 206
    assert ranged.content == b""
    assert ranged.headers["content-length"] == "10"


def test_head_is_refused_like_get(world):
    url = world["sign"]("job1/vocals.mp3", TTL)
    response = world["client"].head(url.replace("sig=", "sig=x"))
    assert response.status_code == 403
    assert response.content == b""


def test_if_none_match_gives_304(world):
    url, client = world["sign"]("job1/vocals.mp3", TTL), world["client"]
    etag = client.get(url).headers["etag"]
    response = client.get(url, headers={"If-None-Match": etag})
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == etag
    assert client.get(url, headers={"If-None-Match": '"other"'}).status_code == 200


def test_the_route_is_documented_without_warnings(world):
    # filterwarnings = error: a duplicate operation id (GET and HEAD on one route) would fail.
    document = world["client"].get("/openapi.json").json()
    operations = document["paths"]["/v1/files/{key}"]
    assert set(operations) == {"get"}
    assert "security" not in operations["get"]


def test_media_types():
    assert media_type("vocals.mp3") == "audio/mpeg"
    assert media_type("VOCALS.MP3") == "audio/mpeg"
    assert media_type("drums.wav") == "audio/wav"
    assert media_type("bass.flac") == "audio/flac"
    assert media_type("manifest.json") == "application/json"
    assert media_type("blob") == "application/octet-stream"


# --- refusals: the link -----------------------------------------------------------------------


def test_expired_link_is_403_and_says_where_to_get_a_fresh_one(world):
    url = world["sign"]("job1/vocals.mp3", TTL)
    world["clock"].now = NOW + TTL - 0.001
    assert world["client"].get(url).status_code == 200
    world["clock"].now = NOW + TTL
    response = world["client"].get(url)
    error = assert_refused(response)
    assert "expired" in error["message"]
    assert "GET /v1/jobs/job1" in error["message"]
    assert response.headers["cache-control"] == "no-store"


def test_tampered_signature_is_403(world):
    url = world["sign"]("job1/vocals.mp3", TTL)
    sig = url.rsplit("sig=", 1)[1]
    flipped = ("A" if sig[0] != "A" else "B") + sig[1:]
    error = assert_refused(world["client"].get(url.replace(sig, flipped)))
    assert flipped not in error["message"] and sig not in error["message"]
    assert_refused(world["client"].get(url.replace(sig, sig[:-1])))
    assert_refused(world["client"].get(url + "%C3%A9"))  # non-ASCII


def test_stretched_expiry_is_403(world):
    url = world["sign"]("job1/vocals.mp3", TTL)
    later = url.replace(f"expires={int(NOW) + TTL}", f"expires={int(NOW) + 10 * TTL}")
    assert later != url
    assert_refused(world["client"].get(later))


def test_signature_for_another_key_is_403(world):
    sig_url = world["sign"]("job1/manifest.json", TTL)
    assert_refused(world["client"].get(sig_url.replace("manifest.json", "vocals.mp3")))


def test_signature_under_another_secret_is_403(world):
    url = raw_url("job1/vocals.mp3", "job1/vocals.mp3", secret=OTHER_SECRET)
    assert_refused(world["client"].get(url))


@pytest.mark.parametrize(
    "query",
    ["", "?expires=1700000600", "?sig=abc", "?expires=&sig=", "?expires=soon&sig=x", "?expires=-1"],
)
def test_missing_or_malformed_query_is_403(world, query):
    assert_refused(world["client"].get(f"/v1/files/job1/vocals.mp3{query}"))


def test_no_bearer_key_is_needed_and_the_signature_is_never_logged(world, caplog):
    url = world["sign"]("job1/vocals.mp3", TTL)
    sig = url.rsplit("sig=", 1)[1]
    caplog.set_level(logging.DEBUG)
    world["clock"].now = NOW + TTL + 1
    assert world["client"].get(url).status_code == 403
    world["clock"].now = NOW
    assert world["client"].get(url.replace(sig, sig[::-1])).status_code == 403
    assert world["client"].get(url).status_code == 200
    # httpx, the client side here, logs whole URLs at INFO: only the server's records count.
    served = "\n".join(
        f"{r.name} {r.getMessage()}" for r in caplog.records if not r.name.startswith("httpx")
    )
    assert "file link refused" in served
    assert sig not in served and sig[::-1] not in served


# --- refusals: the path -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "%2e%2e/secret.txt",
        "%2E%2E/secret.txt",
        "job1/..%2F..%2Fsecret.txt",
        "%2Fetc%2Fpasswd",
        "/etc/passwd",
        "..%5Csecret.txt",
        "job1%5C..%5C..%5Csecret.txt",
    ],
)
def test_unsigned_traversal_is_refused(world, path):
    url = world["sign"]("job1/vocals.mp3", TTL)
    query = url.split("?", 1)[1]
    assert_refused(world["client"].get(f"/v1/files/{path}?{query}"))


@pytest.mark.parametrize(
    ("path", "key"),
    [
        ("%2E%2E/secret.txt", "../secret.txt"),
        ("job1/%2E%2E/%2E%2E/secret.txt", "job1/../../secret.txt"),
        ("job1%2F..%2F..%2Fsecret.txt", "job1/../../secret.txt"),
        ("..%5Csecret.txt", "..\\secret.txt"),
        ("job1/vocals.mp3%00", "job1/vocals.mp3\x00"),
    ],
)
def test_signed_traversal_never_reads_outside_the_root(world, path, key):
    # 404, not 403: the signature matched, so the key arrived intact, and was still refused.
    assert_refused(world["client"].get(raw_url(path, key)), 404, "not_found")


def test_signed_absolute_key_is_refused(world):
    key = str(world["outside"])
    assert key.startswith("/")
    path = quote(key, safe="")
    assert_refused(world["client"].get(raw_url(path, key)), 404, "not_found")


def test_raw_dot_dot_sent_as_is_is_refused(world):
    """A client that does not normalise ``..`` (curl --path-as-is) reaches the route with it."""
    key = "job1/../../secret.txt"
    expires_at = int(NOW) + TTL
    sig = sign_key(key, expires_at=expires_at, secret=SECRET)
    status, body = asgi_get(world["app"], f"/v1/files/{key}", f"expires={expires_at}&sig={sig}")
    assert status == 404
    assert OUTSIDE not in body


def test_symlink_leaving_the_root_is_404(world):
    assert_refused(world["client"].get(world["sign"]("job1/leak.mp3", TTL)), 404, "not_found")


def test_the_resolved_path_is_checked_even_if_the_key_check_missed(world, monkeypatch):
    monkeypatch.setattr(web_files, "check_key", lambda key: key)
    response = world["client"].get(raw_url("%2E%2E/secret.txt", "../secret.txt"))
    assert_refused(response, 404, "not_found")
    hidden = world["client"].get(raw_url("job1/.vocals.mp3.part", "job1/.vocals.mp3.part"))
    assert_refused(hidden, 404, "not_found")


def test_hidden_files_are_never_served(world):
    client = world["client"]
    assert_refused(
        client.get(raw_url("job1/.vocals.mp3.part", "job1/.vocals.mp3.part")), 404, "not_found"
    )
    # Through a visible symlink too.
    assert_refused(client.get(world["sign"]("job1/alias.mp3", TTL)), 404, "not_found")


@pytest.mark.parametrize("key", ["job1/missing.mp3", "job2/vocals.mp3", "job1"])
def test_signed_key_that_is_not_a_file_is_404(world, key):
    assert_refused(world["client"].get(world["sign"](key, TTL)), 404, "not_found")


def test_root_itself_is_404(world):
    assert world["client"].get(raw_url("", "")).status_code == 404


def test_a_short_secret_is_refused_at_start_up(tmp_path):
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        add_file_routes(FastAPI(), root=tmp_path, secret=b"short")


def asgi_get(app, path: str, query: str) -> tuple[int, bytes]:
    """One GET through the ASGI interface, with the path exactly as given."""
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query.encode(),
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
    }
    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, body


# --- signing ----------------------------------------------------------------------------------


def test_sign_key_is_hmac_sha256_over_version_key_and_expiry_base64url_unpadded():
    sig = sign_key("job1/vocals.mp3", expires_at=1234, secret=SECRET)
    assert len(sig) == 43 and "=" not in sig
    assert set(sig) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    canonical = f"{signing.SIGNATURE_VERSION}\njob1/vocals.mp3\n1234".encode()
    digest = hmac.new(SECRET, canonical, hashlib.sha256).digest()
    assert sig == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert sign_key("job1/vocals.mp3", expires_at=1235, secret=SECRET) != sig
    assert sign_key("job1/vocals.mp4", expires_at=1234, secret=SECRET) != sig
    assert sign_key("job1/vocals.mp3", expires_at=1234, secret=OTHER_SECRET) != sig


def test_verify_accepts_until_the_expiry_second():
    sig = sign_key("k/a.mp3", expires_at=1000, secret=SECRET)
    verify("k/a.mp3", "1000", sig, secret=SECRET, now=999.999)
    with pytest.raises(UrlExpired, match="expired"):
        verify("k/a.mp3", "1000", sig, secret=SECRET, now=1000)
    with pytest.raises(UrlExpired):
        verify("k/a.mp3", "1000", sig, secret=SECRET, now=5000)


def test_verify_checks_the_signature_before_the_expiry():
    # A forged link is "bad signature", never "expired": expiry is only said of genuine links.
    with pytest.raises(UrlRefused, match="bad signature") as caught:
        verify("k/a.mp3", "1000", "A" * 43, secret=SECRET, now=5000)
    assert not isinstance(caught.value, UrlExpired)


def test_verify_compares_in_constant_time(monkeypatch):
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(signing.hmac, "compare_digest", spy)
    sig = sign_key("k/a.mp3", expires_at=1000, secret=SECRET)
    verify("k/a.mp3", "1000", sig, secret=SECRET, now=0)
    bad = ("B" if sig[0] == "A" else "A") + sig[1:]
    with pytest.raises(UrlRefused):
        verify("k/a.mp3", "1000", bad, secret=SECRET, now=0)
    assert calls == [(sig.encode(), sig.encode()), (sig.encode(), bad.encode())]


@pytest.mark.parametrize(
    ("expires", "sig", "reason"),
    [
        ("", "x", "missing expires"),
        ("12a", "x", "malformed expires"),
        ("-5", "x", "malformed expires"),
        (" 1000", "x", "malformed expires"),
        ("1" * 13, "x", "malformed expires"),
        ("\u0661\u0660\u0660\u0660", "x", "malformed expires"),  # Arabic-Indic digits
        ("1000", "", "missing signature"),
        ("1000", "short", "bad signature"),
        ("1000", "é" * 43, "bad signature"),
        ("1000", "A" * 42 + "=", "bad signature"),
    ],
)
def test_verify_reasons_are_short_and_never_echo_the_signature(expires, sig, reason):
    with pytest.raises(UrlRefused) as caught:
        verify("k/a.mp3", expires, sig, secret=SECRET, now=0)
    assert caught.value.reason == reason == str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_file_url_carries_the_key_expiry_and_signature():
    url = file_url(
        "https://stems.example.com/", "job-1/vocals_v2.mp3", expires_at=77, secret=SECRET
    )
    sig = sign_key("job-1/vocals_v2.mp3", expires_at=77, secret=SECRET)
    assert url == f"https://stems.example.com/v1/files/job-1/vocals_v2.mp3?expires=77&sig={sig}"


def test_file_url_refuses_bad_keys():
    with pytest.raises(UrlRefused):
        file_url(BASE, "../x.mp3", expires_at=77, secret=SECRET)


def test_make_signer_uses_the_clock_and_the_lifetime():
    clock = Clock(1000.7)
    sign = make_signer("https://stems.example.com", SECRET, clock=clock)
    url = sign("job1/vocals.mp3", 60)
    sig = sign_key("job1/vocals.mp3", expires_at=1060, secret=SECRET)
    assert url == f"https://stems.example.com/v1/files/job1/vocals.mp3?expires=1060&sig={sig}"
    with pytest.raises(ValueError, match="at least 1 s"):
        sign("job1/vocals.mp3", 0)


@pytest.mark.parametrize("base", ["ftp://x", "stems.example.com", "https://", "https://x/?a=1"])
def test_make_signer_refuses_a_bad_base_url(base):
    with pytest.raises(ConfigError, match="VIDGO_STEMS_PUBLIC_BASE_URL"):
        make_signer(base, SECRET)


def test_short_secrets_are_refused_without_showing_them():
    secret = b"hunter2-hunter2-hunter2"
    with pytest.raises(ConfigError) as caught:
        check_secret(secret)
    assert "hunter2" not in str(caught.value)
    with pytest.raises(ConfigError):
        make_signer(BASE, secret)
    with pytest.raises(ConfigError):
        sign_key("k", expires_at=1, secret=secret)
    check_secret(b"x" * 32)


# --- keys -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["job1/vocals.mp3", "job1/manifest.json", "a", "a-b_c/d.e.f", "j/x/y/z.wav"]
)
def test_check_key_accepts_plain_keys(key):
    assert check_key(key) == key


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("", "empty key"),
        ("/etc/passwd", "absolute key"),
        ("../secret.txt", "dot segment in key"),
        ("job1/../../x", "dot segment in key"),
        ("job1/./x", "dot segment in key"),
        ("job1\\x.mp3", "backslash in key"),
        ("job1/x\x00.mp3", "control character in key"),
        ("job1/x\n.mp3", "control character in key"),
        ("job1/x\x7f.mp3", "control character in key"),
        ("job1/.vocals.mp3.part", "hidden name in key"),
        (".job1/x", "hidden name in key"),
        ("job1//x", "empty segment in key"),
        ("job1/", "empty segment in key"),
        ("job1/a b.mp3", "unsupported character in key"),
        ("job1/é.mp3", "unsupported character in key"),
        ("C:/x", "unsupported character in key"),
        ("job1/x%2e.mp3", "unsupported character in key"),
        ("/".join(["a"] * 9), "key too deep"),
        ("a" * 513, "key too long"),
        ("j/" + "a" * 256, "unsupported character in key"),
    ],
)
def test_check_key_refuses(key, reason):
    with pytest.raises(UrlRefused) as caught:
        check_key(key)
    assert caught.value.reason == reason
