"""deploy/redis.conf keeps queued work: no eviction, an append-only file."""

from __future__ import annotations

from tests.deploy.files import DEPLOY


def test_redis_keeps_queued_work():
    settings = dict(
        line.split(None, 1)
        for line in (DEPLOY / "redis.conf").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    # Eviction could drop queue bindings or ledger entries; without AOF a restart loses work.
    assert settings["maxmemory-policy"] == "noeviction"
    assert settings["appendonly"] == "yes"
