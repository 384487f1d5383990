"""Writes that must survive a Redis failover: a new job (the caller was told it exists) and the
record of a paid Vidgo task (losing it would mean paying again).

Redis replicates asynchronously: a write the primary acknowledged can be missing on the replica
that Sentinel promotes when the primary dies. For these writes the ledger sends ``WAIT`` on the
same connection, right behind the write, and does not move on until ``replicas`` replicas hold
it. When they do not answer in time, it looks at the primary it now talks to: if the write is
gone (a failover took it), it applies it again (every ledger write is a compare-and-set, so a
second application is either the same move or refused); if it is there, it waits again. After
``timeout_s`` it gives up waiting and says so in the log: the write stands on the primary, and
a failover in that moment would be met by the recovery sweep and the ambiguous-submit policy.

Every other write may be lost in a failover without losing work: the job is found in its
earlier state by the recovery sweep (or its message is delivered again), and the step runs
again under the step token.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, cast

import redis
from redis.exceptions import NoScriptError

log = logging.getLogger(__name__)

#: How long one WAIT blocks before the write is looked at again.
WAIT_STEP_MS = 1000


class Durability:
    def __init__(
        self,
        client: redis.Redis,
        *,
        replicas: int,
        timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._redis = client
        self.replicas = replicas
        self._timeout_s = timeout_s
        self._clock = clock
        self._sleep = sleep

    def write(
        self,
        apply: Callable[[Any], None],
        *,
        applied: Callable[[Any], bool],
        landed: Callable[[], bool],
        touch: str,
        what: str,
    ) -> Any:
        """Run ``apply(pipeline)`` followed by WAIT; returns the write's result.

        ``applied(result)`` says whether the write took effect (a refused compare-and-set needs
        no durability); ``landed()`` whether it is on the current primary; ``touch`` is a key
        whose ``durable_check`` field is set to re-confirm a write already there. A write
        refused because an earlier send of it (whose reply was lost, then re-sent by the
        client's retry) already applied it still counts as ours, and is waited for.
        """
        result, acked = self._with_wait(apply)
        if not self.replicas or (not applied(result) and not landed()):
            return result
        deadline = self._clock() + self._timeout_s
        while acked < self.replicas and self._clock() < deadline:
            try:
                if landed():
                    if self._connected_replicas() < self.replicas:
                        log.warning(
                            "%s: the Redis primary has fewer than %d replica(s) connected "
                            "(after a failover?); not waiting for them",
                            what,
                            self.replicas,
                        )
                        return result
                    _, acked = self._with_wait(lambda p: p.hset(touch, "durable_check", "1"))
                else:
                    log.warning("%s was lost with a Redis failover; writing it again", what)
                    again, acked = self._with_wait(apply)
                    if not applied(again):
                        return again  # refused: the job moved on meanwhile, and this move is void
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("%s: Redis unavailable while confirming it (%s)", what, exc)
                self._sleep(0.2)
        if acked < self.replicas:
            log.warning(
                "%s is not confirmed on %d replica(s) after %.0fs "
                "(VIDGO_STEMS_REDIS_DURABLE_TIMEOUT_S); going on",
                what,
                self.replicas,
                self._timeout_s,
            )
        return result

    def _connected_replicas(self) -> int:
        info = cast(dict[str, Any], self._redis.info("replication"))
        return int(info.get("connected_slaves", 0))

    def _with_wait(self, apply: Callable[[Any], None]) -> tuple[Any, int]:
        """The write and WAIT on one connection (WAIT covers that connection's writes).

        A primary promoted while the pipeline was retried has no scripts loaded (the script
        cache is not replicated): a new pipeline loads them first.
        """
        try:
            return self._pipelined(apply)
        except NoScriptError:
            return self._pipelined(apply)

    def _pipelined(self, apply: Callable[[Any], None]) -> tuple[Any, int]:
        pipe = self._redis.pipeline(transaction=False)
        apply(pipe)
        if self.replicas:
            pipe.wait(self.replicas, WAIT_STEP_MS)
            result, acked = pipe.execute()
            return result, int(acked)
        (result,) = pipe.execute()
        return result, 0
