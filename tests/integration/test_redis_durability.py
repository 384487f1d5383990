"""A worker started on a Redis that can lose queued work says so in one line, and starts; on a
Redis that refuses CONFIG GET it says it could not check, and starts. Each test runs its own
redis-server, configured as the case needs."""

from __future__ import annotations

import logging

import pytest
import redis

from tests.support import API_KEY, FAST
from vidgo_stems.devstack.local import WorkerProcess, wait_for
from vidgo_stems.devstack.redis_server import RedisServer
from vidgo_stems.redisconfig import warn_if_not_durable

pytestmark = pytest.mark.integration

WARNING = "Redis (REDIS_URL) can lose queued work: "


def started_worker_log(server: RedisServer, emulator, folder) -> str:
    """Start ``vidgo-stems worker`` on ``server``, wait until Celery is ready, stop it; its log."""
    log_path = folder / "worker.log"
    env = {
        "REDIS_URL": server.url,
        "VIDGO_API_KEY": API_KEY,
        "VIDGO_BASE_URL": emulator.url,
        "STEMS_DIR": str(folder / "stems"),
        **FAST,
    }
    with open(log_path, "wb") as log:
        worker = WorkerProcess(env, concurrency=1, log=log, loglevel="INFO", name="durability")
        with worker:

            def ready() -> bool:
                assert worker.alive, log_path.read_text(errors="replace")[-3000:]
                return b" ready." in log_path.read_bytes()

            wait_for(ready, timeout_s=60, what="the worker to say it is ready")
    return log_path.read_text(errors="replace")


def test_a_worker_on_redis_without_aof_and_with_eviction_warns_in_one_line(emulator, tmp_path):
    with RedisServer(appendonly=False, maxmemory_policy="allkeys-lru") as server:
        log = started_worker_log(server, emulator, tmp_path)
    [line] = [line for line in log.splitlines() if WARNING in line]
    assert "WARNING" in line
    assert line.endswith(
        "appendonly is no (a restart loses writes since the last snapshot); "
        "maxmemory-policy is allkeys-lru (a full Redis evicts queued work and ledger entries); "
        "set appendonly yes and maxmemory-policy noeviction (deploy/redis.conf)"
    )
    assert "Traceback" not in log


def test_a_worker_on_redis_with_aof_and_noeviction_does_not_warn(emulator, tmp_path):
    with RedisServer(appendonly=True, maxmemory_policy="noeviction") as server:
        log = started_worker_log(server, emulator, tmp_path)
    assert WARNING not in log and "persistence settings" not in log


def test_a_redis_that_refuses_config_get_is_said_to_be_unchecked_and_the_worker_starts(
    emulator, tmp_path, caplog
):
    with RedisServer(extra_args=("--rename-command", "CONFIG", "")) as server:
        client = redis.Redis.from_url(server.url)
        with pytest.raises(redis.ResponseError):
            client.config_get("appendonly")  # as managed Redis answers
        with caplog.at_level(logging.DEBUG, logger="vidgo_stems.redisconfig"):
            assert warn_if_not_durable(client) == []
        client.close()
        [record] = caplog.records
        assert record.levelno == logging.INFO
        assert record.getMessage().startswith(
            "could not check Redis's persistence settings (CONFIG GET refused: "
        )
        log = started_worker_log(server, emulator, tmp_path)
    assert WARNING not in log and "Traceback" not in log
