"""Who may use the console, and how: keys exchanged for sessions, read-only keys, CSRF tokens.

An operator signs in with a key: one of the jobs API keys (``VIDGO_STEMS_GATEWAY_API_KEYS``,
which may act) or of ``VIDGO_STEMS_CONSOLE_READONLY_KEYS`` (which may only look). The key is
exchanged for a random session id, kept in an HttpOnly, SameSite=Strict cookie; the session
lives in Redis (under the hash of its id, so a Redis dump holds no usable cookie) with the
key's short fingerprint, what it may do and a CSRF token every action must send back. A
session whose key has since been removed from the settings is refused on its next request.
The key itself is never stored, logged or shown: only ``key:<first 8 hex of its SHA-256>``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any, Literal, cast

import redis
from pydantic import SecretStr

from vidgo_stems.keys import Keys, text
from vidgo_stems.settings import Settings

COOKIE = "vidgo_console"
#: Where the cookie is sent: the console and nothing else of the gateway.
COOKIE_PATH = "/console"
Kind = Literal["operator", "readonly"]


def fingerprint(key: str) -> str:
    """A key's short, stable, public name: enough to tell keys apart, useless to sign in."""
    return "key:" + hashlib.sha256(key.encode()).hexdigest()[:8]


@dataclass(frozen=True)
class Session:
    """A signed-in operator: who (a key fingerprint), what they may do, their CSRF token."""

    who: str
    kind: Kind
    csrf: str
    expires_at: float

    @property
    def may_act(self) -> bool:
        return self.kind == "operator"


class Access:
    """The keys the console accepts and the sessions it has handed out."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.redis = client
        self.keys = Keys(settings.redis_key_prefix)
        self.ttl_s = settings.console_session_ttl_s
        self.secure_always = settings.console_secure_cookie
        self._kinds: list[tuple[bytes, Kind]] = [
            *((_raw(k), "operator") for k in settings.gateway_api_keys),
            *((_raw(k), "readonly") for k in settings.console_readonly_keys),
        ]
        self._known = {fingerprint(key.decode()): kind for key, kind in self._kinds}

    def kind_of(self, given: str) -> Kind | None:
        """What ``given`` may do, or None when it is no key of ours. Every key is compared, so
        the time taken does not say which one nearly matched."""
        found: Kind | None = None
        for key, kind in self._kinds:
            if hmac.compare_digest(given.encode(), key) and found is None:
                found = kind
        return found

    def open(self, given: str) -> tuple[str, Session] | None:
        """A new session for ``given`` (its id, for the cookie, and the session), or None."""
        kind = self.kind_of(given)
        if kind is None:
            return None
        sid = secrets.token_urlsafe(32)
        expires_at = time.time() + self.ttl_s
        session = Session(fingerprint(given), kind, secrets.token_urlsafe(32), expires_at)
        key = self.keys.console_session(_digest(sid))
        pipe = self.redis.pipeline()
        pipe.hset(
            key,
            mapping={
                "who": session.who,
                "kind": kind,
                "csrf": session.csrf,
                "expires_at": repr(session.expires_at),
            },
        )
        pipe.expire(key, self.ttl_s)
        pipe.execute()
        return sid, session

    def find(self, sid: str | None) -> Session | None:
        """The live session of a cookie, or None (unknown, expired, or its key was removed)."""
        if not sid or len(sid) > 100:
            return None
        raw = cast(dict[Any, Any], self.redis.hgetall(self.keys.console_session(_digest(sid))))
        if not raw:
            return None
        values = {text(k): text(v) for k, v in raw.items()}
        who, kind = values.get("who", ""), values.get("kind", "")
        if self._known.get(who) != kind:
            return None  # the key was removed, or moved to another kind, since sign-in
        return Session(who, self._known[who], values.get("csrf", ""), float(values["expires_at"]))

    def close(self, sid: str | None) -> None:
        """Sign out: the session is gone at once, on every gateway."""
        if sid:
            self.redis.delete(self.keys.console_session(_digest(sid)))


def csrf_ok(session: Session, sent: str | None) -> bool:
    """Whether an action carries its session's CSRF token."""
    return bool(sent) and hmac.compare_digest((sent or "").encode(), session.csrf.encode())


def _raw(key: SecretStr) -> bytes:
    return key.get_secret_value().encode()


def _digest(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()
