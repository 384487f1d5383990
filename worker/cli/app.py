"""``vidgo-stems``: the command group, its error handling, and what every command shares.

Errors the user can fix (configuration, bad input, an unreachable Redis) print one line that
says what to do and exit with status 2; they never print a traceback. The commands live in
:mod:`vidgo_stems.cli.jobs`, :mod:`vidgo_stems.cli.batch` and :mod:`vidgo_stems.cli.ops`; they
parse and
print, and the work is done by the library.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any

import click

from vidgo_stems.errors import VidgoStemsError

if TYPE_CHECKING:
    from vidgo_stems.celery_app import Producer


def _fail(exc: VidgoStemsError) -> None:
    click.echo(f"error: {exc.message}", err=True)
    sys.exit(2)


def _unreachable(exc: Exception) -> str:
    """What to say when Redis does not answer; over TLS, the likely fix is the scheme."""
    from vidgo_stems.settings import get_settings

    try:
        tls = (get_settings().redis_url or "").lower().startswith("rediss://")
    except VidgoStemsError:
        tls = False
    if tls:
        return (
            f"cannot reach Redis over TLS (REDIS_URL is rediss://): {exc}; is it running, and "
            "does it speak TLS? For a Redis without TLS write redis://"
        )
    return f"cannot reach Redis (REDIS_URL): {exc}; is it running?"


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        import redis
        import redis.sentinel

        try:
            return super().invoke(ctx)
        except VidgoStemsError as exc:
            _fail(exc)
        except redis.sentinel.MasterNotFoundError as exc:
            name = str(exc).split("'")[1] if str(exc).count("'") >= 2 else "?"
            click.echo(
                f"error: the sentinels in REDIS_URL know no primary for {name!r}: are they "
                "running, and is VIDGO_STEMS_REDIS_SENTINEL_MASTER the name they monitor?",
                err=True,
            )
            sys.exit(2)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            click.echo(f"error: {_unreachable(exc)}", err=True)
            sys.exit(2)
        except redis.exceptions.AuthenticationError as exc:
            click.echo(f"error: Redis refused the login (REDIS_URL): {exc}", err=True)
            sys.exit(2)
        except redis.exceptions.RedisError as exc:
            click.echo(f"error: Redis (REDIS_URL) answered with an error: {exc}", err=True)
            sys.exit(2)
        except ModuleNotFoundError as exc:
            if (exc.name or "").split(".")[0] not in WORKER_EXTRA:
                raise
            click.echo(
                f"error: `vidgo-stems {ctx.invoked_subcommand}` needs the worker's packages "
                f"({exc.name} is not installed): pip install 'vidgo-stems[worker]'",
                err=True,
            )
            sys.exit(2)


#: Top-level modules that only the [worker] extra installs.
WORKER_EXTRA = frozenset(
    {"numpy", "scipy", "soundfile", "soxr", "lameenc", "mutagen", "fastapi", "uvicorn", "rich"}
    | {"starlette", "h11"}
)


@click.group(cls=_Group)
@click.option("--log-level", default="WARNING", show_default=True)
def main(log_level: str) -> None:
    """Turn audio URLs into stems through Vidgo, on Celery and Redis."""
    from vidgo_stems.observe import logs
    from vidgo_stems.settings import get_settings

    try:
        logs.configure(get_settings(), level=log_level.upper())
    except VidgoStemsError:  # a wrong setting: the command that needs it says so itself
        logging.basicConfig(
            level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    logging.getLogger("httpx").setLevel(logging.WARNING)


def producer() -> Producer:
    """The process's default collaborators (Redis, ledger, storage), built on first use."""
    from vidgo_stems.celery_app import producer as default

    return default()
