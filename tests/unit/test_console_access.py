"""Console access: keys exchanged for sessions, read-only keys, revocation, CSRF tokens."""

from __future__ import annotations

import fakeredis

from vidgo_stems.settings import Settings
from vidgo_stems.web.console.access import Access, csrf_ok, fingerprint


def access(**settings) -> Access:
    return Access(fakeredis.FakeRedis(), Settings(**settings))


def test_access_sessions_know_their_kind_and_never_hold_the_key():
    keys = access(gateway_api_keys="op-key-1", console_readonly_keys="ro-key-1")
    sid, session = keys.open("op-key-1")
    assert session.may_act and session.who == fingerprint("op-key-1")
    assert keys.find(sid) == session
    _, reader = keys.open("ro-key-1")
    assert not reader.may_act and reader.kind == "readonly"
    assert keys.open("op-key-2") is None and keys.open("") is None
    stored = b"".join(keys.redis.dump(k) or b"" for k in keys.redis.keys("*"))
    assert b"op-key-1" not in stored and sid.encode() not in stored


def test_access_sessions_end_when_their_key_is_removed_or_closed():
    client = fakeredis.FakeRedis()
    before = Access(client, Settings(gateway_api_keys="old,new"))
    sid, _ = before.open("old")
    after = Access(client, Settings(gateway_api_keys="new"))
    assert before.find(sid) is not None and after.find(sid) is None
    sid, _ = after.open("new")
    after.close(sid)
    assert after.find(sid) is None and after.find("x" * 500) is None


def test_access_csrf_token_must_match_the_session():
    keys = access(gateway_api_keys="op-key-1")
    _, session = keys.open("op-key-1")
    assert csrf_ok(session, session.csrf)
    assert not csrf_ok(session, None) and not csrf_ok(session, "") and not csrf_ok(session, "x")
