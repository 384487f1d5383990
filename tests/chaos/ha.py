"""Chaos stacks on a real Sentinel set (:class:`tests.sentinel.SentinelSet`), and the moves the
high-availability tests make on it: replicas made to fall behind, a primary cut off."""

from __future__ import annotations

import contextlib
import signal

from kombu import pools

from tests.chaos import deadlines
from tests.sentinel import DOWN_AFTER_MS, FAILOVER_TIMEOUT_MS, MARGIN, SentinelSet
from vidgo_stems.celery_app import app
from vidgo_stems.redisconn import connect
from vidgo_stems.settings import Settings


def sentinel_env(sentinels: SentinelSet, *, durable: bool = True) -> dict[str, str]:
    """The workers' settings on ``sentinels``. With ``durable``, new jobs and paid submits
    wait for one replica for as long as an automatic failover may take here (a manual one
    starts at once, without down-after), and a stage's time limit leaves room for two such
    waits (the settings refuse less)."""
    env = {
        "VIDGO_STEMS_REDIS_SENTINEL_MASTER": sentinels.master_name,
        "VIDGO_STEMS_REDIS_SOCKET_TIMEOUT_S": "2",
    }
    if durable:
        wait_s = round(MARGIN * (DOWN_AFTER_MS + 3 * FAILOVER_TIMEOUT_MS) / 1000)
        env |= {
            "VIDGO_STEMS_REDIS_DURABLE_REPLICAS": "1",
            "VIDGO_STEMS_REDIS_DURABLE_TIMEOUT_S": str(wait_s),
            "VIDGO_STEMS_TASK_SOFT_TIME_LIMIT_S": str(2 * wait_s + 5),
            "VIDGO_STEMS_TASK_TIME_LIMIT_S": str(2 * wait_s + 10),
        }
    return env


@contextlib.contextmanager
def on_sentinels(
    chaos,
    *,
    replicas: int = 2,
    durable: bool = True,
    down_after_ms: int = DOWN_AFTER_MS,
    emulator=None,
    **env,
):
    """A chaos stack whose Redis is a fresh Sentinel set (this process publishes through it
    too); yields the set and the stack."""
    with SentinelSet(replicas=replicas, down_after_ms=down_after_ms) as sentinels:
        settings = Settings(
            redis_url=sentinels.url,
            redis_sentinel_master=sentinels.master_name,
            redis_socket_timeout_s=2,
        )
        client = connect(settings)
        options = {"master_name": sentinels.master_name, "socket_timeout": 2}
        app.conf.update(broker_transport_options=options, result_backend_transport_options=options)
        forget_producers()
        try:
            all_env = {**sentinel_env(sentinels, durable=durable), **env}
            yield sentinels, chaos(redis=(client, sentinels.url), emulator=emulator, **all_env)
        finally:
            client.close()
            app.conf.update(broker_transport_options={}, result_backend_transport_options={})
            forget_producers()


def forget_producers() -> None:
    """Celery keeps its producer pool bound to the broker it first connected to; a test that
    brings its own sentinels (and stops them) must not leave it to the next test."""
    app.amqp._producer_pool = None
    pools.reset()


#: Megabytes of filler: more than the socket buffers between a primary and a replica hold.
FILLER_MB = 32


def stop_replicas(sentinels: SentinelSet, megabytes: int = FILLER_MB) -> None:
    """Stop every replica, then fill the primary's replication stream with ``megabytes`` of
    filler: more than the socket buffers between them hold, so whatever the primary
    acknowledges from now on is still in its own memory, not sent, when it is cut off."""
    for replica in sentinels.replicas:
        replica.signal(signal.SIGSTOP)
    with contextlib.closing(sentinels.primary.client()) as primary:
        for n in range(megabytes):
            primary.set(f"filler:{n}", b"x" * (1 << 20))


def unreplicated_bytes(sentinels: SentinelSet) -> int:
    """How far the primary's replication stream runs past the furthest offset any replica
    acknowledged."""
    with contextlib.closing(sentinels.primary.client()) as primary:
        info = primary.info("replication")
    acked = [v["offset"] for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)]
    return int(info["master_repl_offset"]) - max(acked, default=0)


def resume_replicas(sentinels: SentinelSet) -> None:
    for replica in sentinels.replicas:
        replica.signal(signal.SIGCONT)


def settle_s(stack, sentinels: SentinelSet, *, jobs: int, slots: int) -> float:
    """How long ``jobs`` may take to end across a failover: the failover, a recovery by the
    sweep, and every job once more through the workers' ``slots``
    (:func:`tests.chaos.deadlines.settle_s`)."""
    return deadlines.settle_s(stack, jobs=jobs, slots=slots, extra_s=sentinels.failover_s)
