"""Signed, expiring URLs for stems kept in ``file://`` storage (pure: no I/O, no clock reads).

A link is ``{base_url}/v1/files/{key}?expires={unix seconds}&sig={signature}``. The signature is
HMAC-SHA256, keyed with the gateway's file URL secret, over a canonical string holding a version
tag, the key and the expiry, encoded as base64url without padding. The link is its own
credential, so it can go straight into an ``<audio>`` tag; it stops working at ``expires``.

- :func:`sign_key` and :func:`file_url` make links (:func:`make_signer` binds the base URL,
  the secret and the clock for the storage layer).
- :func:`verify` checks one (signature first, then expiry) and raises :class:`UrlRefused`.
- :func:`check_secret` refuses secrets under 32 bytes (ConfigError, at start-up).
- :func:`check_key` is the one definition of a servable key: ``<job_id>/<file>``-like paths of
  plain segments, never absolute, never ``..``, never hidden (temp files, sidecars).

Reasons carried by :class:`UrlRefused` are short and never repeat the signature.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Callable
from urllib.parse import quote, urlsplit

from vidgo_stems.errors import ConfigError, UrlExpired, UrlRefused

# Bumping the tag invalidates every link made under the old scheme.
SIGNATURE_VERSION = "vidgo-stems-file-url/v1"
MIN_SECRET_BYTES = 32
MAX_KEY_CHARS = 512
MAX_KEY_SEGMENTS = 8

_SEGMENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,254}")
_EXPIRES = re.compile(r"[0-9]{1,12}")
_SIG = re.compile(r"[A-Za-z0-9_-]{43}")  # 32 bytes of HMAC-SHA256, base64url, unpadded


def check_key(key: str) -> str:
    """Return ``key`` if it is a servable storage key; raise UrlRefused saying why not."""
    if not key:
        raise UrlRefused("empty key")
    if len(key) > MAX_KEY_CHARS:
        raise UrlRefused("key too long")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in key):
        raise UrlRefused("control character in key")
    if "\\" in key:
        raise UrlRefused("backslash in key")
    if key.startswith("/"):
        raise UrlRefused("absolute key")
    segments = key.split("/")
    if len(segments) > MAX_KEY_SEGMENTS:
        raise UrlRefused("key too deep")
    for segment in segments:
        if not segment:
            raise UrlRefused("empty segment in key")
        if segment in (".", ".."):
            raise UrlRefused("dot segment in key")
        if segment.startswith("."):
            raise UrlRefused("hidden name in key")
        if not _SEGMENT.fullmatch(segment):
            raise UrlRefused("unsupported character in key")
    return key


def sign_key(key: str, *, expires_at: int, secret: bytes) -> str:
    """The signature of ``key`` valid until ``expires_at`` (unix seconds), base64url unpadded."""
    check_secret(secret)
    # The expiry is a decimal integer and comes last, so the string splits one way only.
    canonical = f"{SIGNATURE_VERSION}\n{key}\n{int(expires_at)}".encode()
    digest = hmac.new(secret, canonical, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def file_url(base_url: str, key: str, *, expires_at: int, secret: bytes) -> str:
    """``{base_url}/v1/files/{key}?expires=...&sig=...``, each key segment percent-quoted."""
    check_key(key)
    path = "/".join(quote(segment, safe="") for segment in key.split("/"))
    sig = sign_key(key, expires_at=expires_at, secret=secret)
    return f"{base_url.rstrip('/')}/v1/files/{path}?expires={int(expires_at)}&sig={sig}"


def verify(key: str, expires: str, sig: str, *, secret: bytes, now: float) -> None:
    """Accept a link's ``expires`` and ``sig`` for ``key`` at ``now``, or raise UrlRefused.

    The signature is checked before the expiry, so "expired" (:class:`UrlExpired`) is only
    ever said of a link this secret really signed. A link is valid while ``now < expires``.
    """
    check_secret(secret)
    if not expires:
        raise UrlRefused("missing expires")
    if not _EXPIRES.fullmatch(expires):
        raise UrlRefused("malformed expires")
    if not sig:
        raise UrlRefused("missing signature")
    expires_at = int(expires)
    expected = sign_key(key, expires_at=expires_at, secret=secret)
    # Only the charset and length are checked before the comparison; neither depends on
    # the secret, and compare_digest then takes the same time wherever the bytes differ.
    if not _SIG.fullmatch(sig) or not hmac.compare_digest(expected.encode(), sig.encode()):
        raise UrlRefused("bad signature")
    if now >= expires_at:
        raise UrlExpired("expired")


def make_signer(
    base_url: str, secret: bytes, clock: Callable[[], float] = time.time
) -> Callable[[str, int], str]:
    """A ``sign(key, expires_s) -> url`` for the storage layer: a link valid ``expires_s`` s."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
        raise ConfigError(
            "VIDGO_STEMS_PUBLIC_BASE_URL must be the gateway's public http(s) URL, "
            "e.g. https://stems.example.com"
        )
    check_secret(secret)
    base = base_url.rstrip("/")

    def sign(key: str, expires_s: int) -> str:
        if expires_s <= 0:
            raise ValueError(f"a link must live at least 1 s, got {expires_s}")
        expires_at = int(clock()) + int(expires_s)
        return file_url(base, key, expires_at=expires_at, secret=secret)

    return sign


def check_secret(secret: bytes) -> None:
    """Raise ConfigError (never showing the secret) when ``secret`` is too short to sign with."""
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"VIDGO_STEMS_FILE_URL_SECRET must hold at least {MIN_SECRET_BYTES} bytes "
            f"(got {len(secret)}): make one with `openssl rand -hex 32`"
        )
