"""Commands that run things: worker, gateway, emulator, demo; and operators' tools: stats,
resume-submits, webhook-secret."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

from worker.cli.app import main, producer


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--concurrency", "-c", default=4, show_default=True, help="Processes (or threads).")
@click.option(
    "--pool",
    default="prefork",
    show_default=True,
    type=click.Choice(["prefork", "threads", "solo"]),
)
@click.option("--loglevel", default="INFO", show_default=True)
@click.option(
    "--supervise/--no-supervise",
    default=True,
    show_default=True,
    help="Restart the Celery worker when it dies unexpectedly.",
)
@click.option(
    "--queues",
    "-Q",
    default=None,
    help="Queues to consume, comma-separated (default: VIDGO_STEMS_QUEUE_NAME and "
    "VIDGO_STEMS_POSTPROCESS_QUEUE).",
)
@click.pass_context
def worker(
    ctx: click.Context,
    concurrency: int,
    pool: str,
    loglevel: str,
    supervise: bool,
    queues: str | None,
) -> None:
    """Run a Celery worker for the pipeline (needs REDIS_URL and VIDGO_API_KEY).

    Refuses to start when this host's storage is not the storage the other workers use.
    Further arguments go to ``celery worker`` as they are (e.g. ``--hostname w1@%h``).
    """
    from worker.celery_app import producer, worker_queues
    from worker.files.shared import check_shared_storage
    from worker.settings import get_settings

    settings = get_settings()
    settings.require_redis_url()
    settings.require_api_key()
    p = producer()
    check_shared_storage(p.storage, p.redis, p.ledger.keys)
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker.celery_app",
        "worker",
        "--queues",
        queues or ",".join(worker_queues(settings)),
        "--concurrency",
        str(concurrency),
        "--pool",
        pool,
        "--loglevel",
        loglevel,
        *ctx.args,
    ]
    if not supervise:
        os.execv(sys.executable, argv)
    from worker.supervise import Supervisor

    sys.exit(Supervisor(argv).run())


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True)
@click.option("--workers", default=1, show_default=True, help="uvicorn worker processes.")
def gateway(host: str, port: int, workers: int) -> None:
    """Serve the HTTP gateway: jobs API, Vidgo callbacks, health (needs REDIS_URL and
    VIDGO_STEMS_GATEWAY_API_KEYS). Put TLS in front of it."""
    import redis
    import uvicorn

    from worker.celery_app import producer as default_producer
    from worker.web.gateway import create_app

    create_app()  # fail here, with the fix, when the configuration is incomplete
    settings = default_producer().settings
    try:
        default_producer().redis.ping()
    except redis.exceptions.RedisError as exc:
        click.echo(
            f"warning: Redis (REDIS_URL) does not answer ({exc}); /readyz answers 503 and the "
            "jobs API 503 until it does",
            err=True,
        )
    click.echo(
        f"vidgo-stems gateway on http://{host}:{port}: storage {default_producer().storage.url}, "
        f"jobs API keys: {len(settings.gateway_api_keys)}",
        err=True,
    )
    logging.getLogger("vidgo_stems.gateway").setLevel(logging.INFO)
    uvicorn.run(
        "worker.web.gateway:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,  # uvicorn's would print query strings, and with them callback tokens
        log_config=None,
        proxy_headers=True,
    )


@main.command("webhook-secret")
def webhook_secret() -> None:
    """Print a new random webhook signing secret (whsec_...), for VIDGO_STEMS_WEBHOOK_SECRET."""
    import base64
    import secrets

    click.echo("whsec_" + base64.b64encode(secrets.token_bytes(32)).decode())


@main.command()
def stats() -> None:
    """Show the global counters (retries, resubmissions, ambiguous submits, stalls, ...) and
    any active rate-limit cool-down or credits pause (needs REDIS_URL)."""
    from worker.vidgo.gate import VidgoGate

    p = producer()
    gate = VidgoGate(p.redis, prefix=p.settings.redis_key_prefix)
    counters = p.ledger.counters()
    for name in sorted(counters):
        click.echo(f"{name:24s} {counters[name]}")
    if not counters:
        click.echo("no counters yet")
    for label, hold in (
        ("rate-limit cool-down", gate.cooldown()),
        ("submits paused", gate.submit_pause()),
    ):
        if hold is not None:
            click.echo(f"{label}: {hold.remaining_s:.0f}s left ({hold.reason})")


@main.command("resume-submits")
def resume_submits() -> None:
    """Lift a credits pause at once, after topping up the Vidgo account (needs REDIS_URL)."""
    from worker.pipeline.recovery import wake_waiting_submits
    from worker.vidgo.gate import VidgoGate

    p = producer()
    VidgoGate(p.redis, prefix=p.settings.redis_key_prefix).resume_submits()
    woken = wake_waiting_submits(p.ledger, p.dispatch)
    click.echo(f"submits resumed; {len(woken)} waiting job(s) submitted again now")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8765, show_default=True)
@click.option("--api-key", default=None, help="Accept only this key (default: any Bearer key).")
@click.option("--queue-s", default=2.0, show_default=True, help="Seconds a task stays not_started.")
@click.option("--run-s", default=5.0, show_default=True, help="Seconds a task stays running.")
@click.option("--callback-shape", default="flat", type=click.Choice(["flat", "wrapped"]))
@click.option("--public-url", default=None, help="Base URL for stem links (default: request's).")
@click.option("--seed", default=0, show_default=True, help="Seed of the fault-injection RNG.")
def emulator(
    host: str,
    port: int,
    api_key: str | None,
    queue_s: float,
    run_s: float,
    callback_shape: str,
    public_url: str | None,
    seed: int,
) -> None:
    """Serve the bundled Vidgo emulator (admin API under /_emulator/)."""
    from emulator import EmulatorConfig
    from emulator.server import serve

    config = EmulatorConfig(
        api_key=api_key,
        queue_s=queue_s,
        run_s=run_s,
        callback_shape=callback_shape,
        public_url=public_url,
        seed=seed,
    )
    click.echo(f"Vidgo emulator on http://{host}:{port}", err=True)
    serve(config, host, port)


@main.command()
@click.option(
    "--out", "out", default="demo-out", show_default=True, type=click.Path(path_type=Path)
)
@click.option("--timeout", "timeout_s", default=300.0, show_default=True)
def demo(out: Path, timeout_s: float) -> None:
    """Separate a few generated tracks end to end on a private Redis and the emulator."""
    from worker.devstack.demo import run_demo

    sys.exit(run_demo(out, timeout_s=timeout_s))
