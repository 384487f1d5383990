"""What a ``REDIS_URL`` may say, checked before anything connects.

redis-py, kombu and Celery each read the URL in their own way and tolerate different mistakes:
a port that is not a number is a traceback in one, a database that is not a number is silently
0 in another and a crash loop in a third, and ``redis://`` alone means localhost. So the URL is
checked once, when the settings are read, and every mistake is one ValueError that says what to
write. Messages name the part that is wrong and never repeat the URL: it may hold a password.

- ``redis://[[user]:pass@]host[:port][/db][?option=value...]`` and ``rediss://`` (TLS): a host,
  a port from 1 to 65535, a database that is a whole number, and only the options listed in
  :data:`OPTIONS`, each with a value of its type; ``rediss://`` needs ``ssl_cert_reqs``.
- ``unix:///path/to/redis.sock[?db=N]``.
- ``sentinel://...;sentinel://...``: see :func:`parse_sentinel_url`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

SCHEMES = ("redis", "rediss", "unix", "sentinel")
SENTINEL_SCHEME = "sentinel"
EXAMPLE = "e.g. REDIS_URL=redis://redis-host:6379/0"
#: What Celery's result store and redis-py both accept for ``ssl_cert_reqs``.
CERT_REQS = ("required", "optional", "none")


def _bool(text: str) -> bool:
    if text.lower() not in ("true", "false", "yes", "no", "1", "0"):
        raise ValueError(text)
    return text.lower() in ("true", "yes", "1")


def _seconds(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(text)
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


def _cert_reqs(text: str) -> str:
    if text.lower().removeprefix("cert_") not in CERT_REQS:
        raise ValueError(text)
    return text


def _text(text: str) -> str:
    return text


#: Options a URL may carry: the check of each value and what it must be (what redis-py, kombu
#: and Celery all understand the same way). Anything else is refused: redis-py would pass it on
#: as a keyword argument and fail at the first connection.
OPTIONS: dict[str, tuple[Callable[[str], object], str]] = {
    "socket_timeout": (_seconds, "a number of seconds above 0"),
    "socket_connect_timeout": (_seconds, "a number of seconds above 0"),
    "socket_keepalive": (_bool, "true or false"),
    "health_check_interval": (_count, "a whole number of seconds"),
    "max_connections": (_count, "a whole number"),
    "ssl_cert_reqs": (_cert_reqs, "required, optional or none"),
    "ssl_ca_certs": (_text, "a file path"),
    "ssl_certfile": (_text, "a file path"),
    "ssl_keyfile": (_text, "a file path"),
    "ssl_check_hostname": (_bool, "true or false"),
}
_TLS_OPTIONS = ("ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile")


@dataclass(frozen=True)
class SentinelService:
    """What a ``sentinel://`` URL names: the sentinels and the data nodes' login and db."""

    sentinels: tuple[tuple[str, int], ...]
    db: int
    username: str | None
    password: str | None


def is_sentinel(url: str) -> bool:
    """Whether ``url`` names a Sentinel service rather than one server."""
    return url.strip().lower().startswith(f"{SENTINEL_SCHEME}://")


def check_redis_url(url: str) -> None:
    """Raise ValueError saying what to write when ``url`` is not a Redis address every client
    reads the same way (the message never repeats the URL)."""
    scheme = urlsplit(url).scheme.lower()
    if scheme not in SCHEMES:
        raise ValueError(
            f"must start with {', '.join(s + '://' for s in SCHEMES)} ({EXAMPLE}, "
            "or sentinel://s1:26379/0;sentinel://s2:26379 for Redis Sentinel)"
        )
    if scheme == SENTINEL_SCHEME:
        parse_sentinel_url(url)
        return
    parts = urlsplit(url)
    if scheme == "unix":
        if not parts.path.strip("/"):
            raise ValueError("names no socket: write unix:///path/to/redis.sock")
    else:
        _check_server(parts)
    _check_options(parts.query, tls=scheme == "rediss", unix=scheme == "unix")


def _check_server(parts: SplitResult) -> None:
    if not parts.hostname:
        # redis-py would quietly connect to localhost:6379: never guess a Redis.
        raise ValueError(f"names no host ({EXAMPLE})")
    port_of(parts, default=6379)
    database_of(parts.path)


def port_of(parts: SplitResult, *, default: int) -> int:
    """The port of one address, or ValueError when it is not a number from 1 to 65535."""
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port is None and parts.netloc.endswith(":"):
        port = -1  # "host:" with nothing after the colon
    if port is not None and not 1 <= port <= 65535:
        raise ValueError(
            f"the port of {parts.hostname or 'the host'} is not a number from 1 to 65535 "
            f"({EXAMPLE})"
        )
    return port or default


def database_of(path: str) -> int:
    """The database a URL's path names (0 when none), or ValueError when it is not a number."""
    name = unquote(path).strip("/")
    if not name:
        return 0
    if not name.isascii() or not name.isdigit():
        raise ValueError(
            f"the database (after the last /) must be a whole number such as 0 ({EXAMPLE})"
        )
    return int(name)


def _check_options(query: str, *, tls: bool, unix: bool) -> None:
    try:
        options = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise ValueError(
            "the options after ? must be name=value pairs joined by &, e.g. ?socket_timeout=5"
        ) from None
    names = {name for name, _ in options}
    for name, value in options:
        if name == "db" and not unix:
            # Celery reads the database from the path alone: one place, so all agree.
            raise ValueError(f"give the database after the last /, not as ?db= ({EXAMPLE})")
        check, what = (_count, "a whole number") if name == "db" else OPTIONS.get(name, (None, ""))
        if check is None:
            raise ValueError(
                f"knows no option {name[:40]!r}; it may carry {', '.join(sorted(OPTIONS))}"
            )
        try:
            check(value)
        except ValueError:
            raise ValueError(f"the option {name} must be {what}") from None
        if not tls and name in _TLS_OPTIONS:
            raise ValueError(f"the option {name} is for TLS: write rediss:// to use TLS")
    if tls and "ssl_cert_reqs" not in names:
        raise ValueError(
            "a rediss:// URL needs ?ssl_cert_reqs=required (or optional, or none), as Celery "
            "asks; for a Redis without TLS write redis://"
        )


def parse_sentinel_url(url: str) -> SentinelService:
    """Parse ``sentinel://[[user]:pass@]host:port[/db][;sentinel://host:port...]``.

    The login and database are read from the first address only, as Celery and kombu read
    them, so the ledger and Celery always use the same database. Raises ValueError saying what
    to write (never repeating an address, which may hold a password).
    """
    sentinels: list[tuple[str, int]] = []
    db, username, password = 0, None, None
    for number, part in enumerate((p.strip() for p in url.split(";") if p.strip()), start=1):
        parts = urlsplit(part)
        if parts.scheme.lower() != SENTINEL_SCHEME or not parts.hostname:
            raise ValueError(
                f"address {number} is not a sentinel://host:port address; list sentinels as "
                "sentinel://s1:26379/0;sentinel://s2:26379;sentinel://s3:26379"
            )
        try:
            port = port_of(parts, default=26379)
        except ValueError:
            raise ValueError(f"{parts.hostname} has a port that is not a number") from None
        sentinels.append((parts.hostname, port))
        if len(sentinels) > 1:
            continue
        if parts.password is not None:
            username = unquote(parts.username) if parts.username else None
            password = unquote(parts.password)
        try:
            db = database_of(parts.path)
        except ValueError:
            raise ValueError("the database must be a number, e.g. sentinel://s1:26379/0") from None
    if not sentinels:
        raise ValueError("names no sentinel: write sentinel://s1:26379/0;sentinel://s2:26379")
    return SentinelService(tuple(sentinels), db, username, password)
