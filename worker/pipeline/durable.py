"""Writes that must survive a Redis failover, and the one that must not happen without it.

Redis replicates asynchronously: a write the primary acknowledged can be missing on the replica
that Sentinel promotes when the primary dies, or when a primary cut off from the sentinels (a
partition, a frozen VM; a "zombie") goes on taking writes until it is demoted, then drops them.
For the writes below the ledger sends ``WAIT`` on the same connection, right behind the write,
and asks what :class:`Need` says:

- ``Need.WAIT`` (a new job: the caller was told it exists): wait up to ``timeout_s`` for
  ``replicas`` replicas, then go on with a warning. A primary with fewer replicas connected
  than asked for (after a failover) is not waited for.
- ``Need.CONFIRM`` (the move that comes just before paying Vidgo): unless the replicas hold it
  within ``timeout_s``, raise :class:`NotReplicated` and pay nothing. A zombie primary, which
  has no replica, can therefore never start a paid submit.
- ``Need.KEEP`` (the record of a paid Vidgo task: losing it would mean paying again): wait the
  whole ``timeout_s`` even on a primary without replicas, writing it again on whichever primary
  the client finds when it is gone (a zombie is demoted and the client moves to the new primary
  within that time). Every ledger write is a compare-and-set, so a second application is either
  the same move or refused.

Every other write may be lost in a failover without losing work: the job is found in its
earlier state by the recovery sweep (or its message is delivered again), and the step runs
again under the step token.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from typing import Any, cast

import redis
from redis.exceptions import NoScriptError

from vidgo_stems.redisconn import NoReplicasError

log = logging.getLogger(__name__)

#: How long one WAIT blocks before the write is looked at again.
WAIT_STEP_MS = 1000


class Need(enum.Enum):
    """What a durable write asks of the replicas (see the module's docstring)."""

    WAIT = "wait"
    CONFIRM = "confirm"
    KEEP = "keep"


class NotReplicated(Exception):
    """A ``Need.CONFIRM`` write the replicas did not confirm in time; nothing may rely on it."""


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
        probe: Callable[[Any], Any],
        holds: Callable[[Any], bool],
        touch: str,
        what: str,
        need: Need = Need.WAIT,
    ) -> Any:
        """Run ``apply(pipeline)`` followed by WAIT; returns the write's result.

        ``applied(result)`` says whether the write took effect (a refused compare-and-set needs
        no durability); ``landed()`` whether it is on the current primary. A write already
        there is re-confirmed by setting the ``durable_check`` field of ``touch`` with WAIT,
        in one pipeline with ``probe(pipeline)`` (a read of the write) whose answer
        ``holds(answer)`` judges: the confirmation counts only from a primary that holds the
        write (the client may have moved to a new one between two commands). A write
        refused because an earlier send of it (whose reply was lost, then re-sent by the
        client's retry) already applied it still counts as ours, and is waited for. With
        ``Need.CONFIRM``, raises :class:`NotReplicated` unless the replicas confirmed it.
        """
        try:
            result, acked = self._with_wait(apply)
        except NoReplicasError as exc:  # min-replicas-to-write refused it, after the retries
            if need is Need.CONFIRM:
                raise NotReplicated(f"{what} was refused by the primary: {exc}") from None
            raise
        if not self.replicas or (not applied(result) and not landed()):
            return result
        deadline = self._clock() + self._timeout_s
        while acked < self.replicas and self._clock() < deadline:
            try:
                if landed():
                    if self._too_few_replicas(need, what):
                        return result
                    seen, acked = self._with_wait(
                        lambda p: (probe(p), p.hset(touch, "durable_check", "1"))
                    )
                    if not holds(seen):
                        acked = 0  # confirmed by a primary that does not have it
                else:
                    log.warning("%s was lost with a Redis failover; writing it again", what)
                    again, acked = self._with_wait(apply)
                    if not applied(again):
                        return again  # refused: the job moved on meanwhile, and this move is void
            except (redis.ConnectionError, redis.TimeoutError, NoReplicasError) as exc:
                log.warning("%s: Redis unavailable while confirming it (%s)", what, exc)
                self._sleep(0.2)
        if acked < self.replicas:
            self._unconfirmed(need, what)
        return result

    def _too_few_replicas(self, need: Need, what: str) -> bool:
        """Whether to stop waiting because the primary has fewer replicas than asked for (a
        new job goes on; the move before paying raises NotReplicated; a paid record waits on,
        for the primary may be a zombie about to be demoted)."""
        if need is Need.KEEP or self._connected_replicas() >= self.replicas:
            return False
        if need is Need.CONFIRM:
            raise NotReplicated(
                f"{what}: the Redis primary has fewer than {self.replicas} replica(s) connected"
            )
        log.warning(
            "%s: the Redis primary has fewer than %d replica(s) connected (after a failover?); "
            "not waiting for them",
            what,
            self.replicas,
        )
        return True

    def _unconfirmed(self, need: Need, what: str) -> None:
        """The timeout passed without confirmation: raise for the move before paying, else
        say so and go on."""
        if need is Need.CONFIRM:
            raise NotReplicated(
                f"{what} is not confirmed on {self.replicas} replica(s) within "
                f"{self._timeout_s:g}s (VIDGO_STEMS_REDIS_DURABLE_TIMEOUT_S)"
            )
        log.warning(
            "%s is not confirmed on %d replica(s) after %.0fs "
            "(VIDGO_STEMS_REDIS_DURABLE_TIMEOUT_S); going on",
            what,
            self.replicas,
            self._timeout_s,
        )

    def _connected_replicas(self) -> int:
        info = cast(dict[str, Any], self._redis.info("replication"))
        return int(info.get("connected_slaves", 0))

    def _with_wait(self, apply: Callable[[Any], object]) -> tuple[Any, int]:
        """The write and WAIT on one connection (WAIT covers that connection's writes).

        A primary promoted while the pipeline was retried has no scripts loaded (the script
        cache is not replicated): a new pipeline loads them first.
        """
        try:
            return self._pipelined(apply)
        except NoScriptError:
            return self._pipelined(apply)

    def _pipelined(self, apply: Callable[[Any], object]) -> tuple[Any, int]:
        """The answer to the first command ``apply`` queued, and how many replicas acked."""
        pipe = self._redis.pipeline(transaction=False)
        apply(pipe)
        if self.replicas:
            pipe.wait(self.replicas, WAIT_STEP_MS)
            first, *_, acked = pipe.execute()
            return first, int(acked)
        first, *_ = pipe.execute()
        return first, 0
