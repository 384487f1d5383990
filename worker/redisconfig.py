"""What production Redis must be, checked when a worker starts: AOF on and no eviction.

Redis without AOF loses every write since its last snapshot when it restarts, and an evicting
``maxmemory-policy`` drops queued messages and ledger entries when memory runs out; either loses
work the ledger says exists. A worker warns, in one line, and starts anyway (a development Redis
is often like this). Managed Redis may refuse ``CONFIG GET``: then the worker says, at INFO, that
it could not check, and starts.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, cast

import redis

from vidgo_stems.keys import text

log = logging.getLogger(__name__)

#: What to set, said in every warning.
FIX = "set appendonly yes and maxmemory-policy noeviction (deploy/redis.conf)"


def durability_problems(config: Mapping[str, str]) -> list[str]:
    """What in Redis's ``appendonly`` and ``maxmemory-policy`` can lose queued work."""
    problems = []
    appendonly = config.get("appendonly", "").lower()
    if appendonly != "yes":
        problems.append(
            f"appendonly is {appendonly or 'unknown'} (a restart loses writes since the last "
            "snapshot)"
        )
    policy = config.get("maxmemory-policy", "").lower()
    if policy != "noeviction":
        problems.append(
            f"maxmemory-policy is {policy or 'unknown'} (a full Redis evicts queued work and "
            "ledger entries)"
        )
    return problems


def read_durability_config(client: redis.Redis) -> dict[str, str]:
    """``appendonly`` and ``maxmemory-policy`` as Redis reports them (raises RedisError)."""
    found: dict[str, str] = {}
    for name in ("appendonly", "maxmemory-policy"):
        reply = cast(Mapping[Any, Any], client.config_get(name))
        found.update({text(k): text(v) for k, v in reply.items()})
    return found


def warn_if_not_durable(client: redis.Redis) -> list[str]:
    """Log one WARNING line when Redis can lose queued work, one INFO line when it cannot be
    asked; never raises for a refused ``CONFIG GET``. Returns the problems found."""
    try:
        config = read_durability_config(client)
    except redis.exceptions.ResponseError as exc:  # CONFIG renamed, disabled or not permitted
        log.info(
            "could not check Redis's persistence settings (CONFIG GET refused: %s); "
            "production Redis needs appendonly yes and maxmemory-policy noeviction",
            str(exc)[:120],
        )
        return []
    problems = durability_problems(config)
    if problems:
        log.warning("Redis (REDIS_URL) can lose queued work: %s; %s", "; ".join(problems), FIX)
    return problems
