"""Connections to the shared Redis: one server (``redis://``) or a Sentinel service (``sentinel://``).

With Sentinel, ``REDIS_URL`` lists the sentinels the way kombu reads them, so Celery's broker,
its result store and the ledger all use the one variable::

    REDIS_URL='sentinel://:DATA-PASSWORD@s1:26379/0;sentinel://s2:26379;sentinel://s3:26379'
    VIDGO_STEMS_REDIS_SENTINEL_MASTER=vidgo          # the name in `sentinel monitor`
    VIDGO_STEMS_REDIS_SENTINEL_PASSWORD=...          # only if the sentinels themselves ask

The password and database in the URL are those of the data nodes (primary and replicas). Every
client asks the sentinels for the current primary, and asks again when a connection breaks or
a node answers READONLY (it was demoted), so a failover costs a few seconds of retries instead
of a crash. :func:`client_options` lists the socket settings and why each is there.

A primary configured with ``min-replicas-to-write`` refuses writes with ``NOREPLICAS`` while too
few replicas are connected; every client here reads that as :class:`NoReplicasError` and
retries it with the same backoff, as a condition that passes (a replica reconnects, or Sentinel
names a new primary), not as a bad command.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.connection import DefaultParser
from redis.exceptions import ConnectionError, ReadOnlyError, ResponseError, TimeoutError
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelManagedConnection

from vidgo_stems import redisurl
from vidgo_stems.errors import ConfigError
from vidgo_stems.redisurl import SentinelService, is_sentinel
from vidgo_stems.settings import Settings

__all__ = [
    "NoReplicasError",
    "SentinelService",
    "client_options",
    "connect",
    "is_sentinel",
    "parse_sentinel_url",
    "sentinel_kwargs",
]


def parse_sentinel_url(url: str) -> SentinelService:
    """The sentinels, login and database of a ``sentinel://`` URL (see
    :func:`vidgo_stems.redisurl.parse_sentinel_url`); a ConfigError saying what to write."""
    try:
        return redisurl.parse_sentinel_url(url)
    except ValueError as exc:
        raise ConfigError(f"REDIS_URL: {exc}") from None


class NoReplicasError(ResponseError):
    """The primary refused a write: fewer replicas connected than its ``min-replicas-to-write``."""


class _Parser(DefaultParser):  # type: ignore[misc,valid-type]
    """redis-py's reply parser, with NOREPLICAS as an error of its own (retried): as Redis 7
    answers it, and as Redis 6 wraps it when a script's write is refused ("ERR Error running
    script ...: -NOREPLICAS ...")."""

    EXCEPTION_CLASSES = {**DefaultParser.EXCEPTION_CLASSES, "NOREPLICAS": NoReplicasError}

    @classmethod
    def parse_error(cls, response: str) -> Any:
        if response.startswith("ERR Error running script") and " -NOREPLICAS " in response:
            return NoReplicasError(response.split(" -NOREPLICAS ", 1)[1])
        return super().parse_error(response)


class SentinelConnection(SentinelManagedConnection):
    """redis-py's connection to the primary a sentinel names, asking the sentinels again on
    every reconnection.

    redis-py (6.4) reconnects a dropped connection inside ``send_packed_command`` to the
    address it had, bypassing the sentinel lookup in ``connect()``: a client demoted away from
    a primary (READONLY, or a connection the sentinels closed) then retries on the old primary,
    now a replica, until its retries run out. Here that reconnection goes through ``connect()``.
    """

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if not self._sock:
            self.connect()
        super().send_packed_command(command, check_health)


class BoundedHandshakeSSLConnection(redis.SSLConnection):
    """A TLS connection whose handshake gives up after the connect timeout.

    redis-py runs the handshake under ``socket_timeout``, which is None for plain clients, so
    a ``rediss://`` URL pointed at a Redis without TLS would wait for a ServerHello for ever.
    """

    def _wrap_socket_with_ssl(self, sock: Any) -> Any:
        sock.settimeout(self.socket_connect_timeout)
        wrapped = super()._wrap_socket_with_ssl(sock)
        wrapped.settimeout(self.socket_timeout)
        return wrapped


def client_options(settings: Settings) -> dict[str, Any]:
    """Socket and retry settings for every ledger connection, each for a reason:

    - ``socket_timeout``: a primary that vanished (SIGKILL, a partition) sends no RST; without a
      timeout a command waits for TCP to give up, minutes later.
    - ``socket_connect_timeout``: the same for a new connection to a dead address.
    - ``socket_keepalive``: idle connections to a vanished primary are noticed and dropped.
    - ``health_check_interval``: a pooled connection idle this long is PINGed before use, so a
      stale one is replaced before a real command fails on it.
    - ``retry`` on ConnectionError, TimeoutError and ReadOnlyError, with backoff for about the
      time a failover takes: each retry reconnects, and under Sentinel asks again for the
      primary (READONLY means the node was demoted to a replica); and on NOREPLICAS.
    """
    return {
        "parser_class": _Parser,
        "socket_timeout": settings.redis_socket_timeout_s,
        "socket_connect_timeout": settings.redis_socket_timeout_s,
        "socket_keepalive": True,
        "health_check_interval": 15,
        "retry": Retry(ExponentialBackoff(cap=2.0, base=0.1), settings.redis_retries),
        "retry_on_error": [ConnectionError, TimeoutError, ReadOnlyError, NoReplicasError],
    }


def connect(settings: Settings) -> redis.Redis:
    """A client for the shared Redis (the primary, under Sentinel)."""
    url = settings.require_redis_url()
    if not is_sentinel(url):
        return _plain_client(url, settings)
    service = parse_sentinel_url(url)
    options = client_options(settings)
    sentinel = Sentinel(
        list(service.sentinels),
        sentinel_kwargs=sentinel_kwargs(settings),
        **{k: v for k, v in options.items() if k.startswith("socket_")},
    )
    client: redis.Redis = sentinel.master_for(
        settings.require_sentinel_master(),
        connection_class=SentinelConnection,
        db=service.db,
        username=service.username,
        password=service.password,
        **options,
    )
    return client


def _plain_client(url: str, settings: Settings) -> redis.Redis:
    """A client for one server. Connecting (and a TLS handshake) gives up after the socket
    timeout; commands have none, as before (a long WAIT or BLPOP is not cut). NOREPLICAS is
    retried with backoff; a broken connection is left to the stage's own retry."""
    extra: dict[str, Any] = {}
    backoff = ExponentialBackoff(cap=2.0, base=0.1)
    if urlsplit(url).scheme.lower() == "rediss":
        extra["connection_class"] = BoundedHandshakeSSLConnection
    return redis.Redis.from_url(
        url,
        health_check_interval=30,
        socket_connect_timeout=settings.redis_socket_timeout_s,
        parser_class=_Parser,
        retry=Retry(backoff, settings.redis_retries, supported_errors=(NoReplicasError,)),
        retry_on_error=[NoReplicasError],
        **extra,
    )


def sentinel_kwargs(settings: Settings) -> dict[str, Any]:
    """Options for the connections to the sentinels themselves."""
    kwargs: dict[str, Any] = {
        "socket_timeout": settings.redis_socket_timeout_s,
        "socket_connect_timeout": settings.redis_socket_timeout_s,
    }
    if settings.redis_sentinel_password is not None:
        kwargs["password"] = settings.redis_sentinel_password.get_secret_value()
    return kwargs
