"""Commands that run things: worker, gateway, emulator, demo; and operators' tools: stats,
resume-submits, webhook-secret."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import click

from vidgo_stems.cli.app import main, producer


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

    Refuses to start when this host's storage is not the storage the other workers use; warns
    when Redis runs without AOF or with an evicting maxmemory-policy.
    Further arguments go to celery worker as they are (e.g. --hostname w1@%h).
    """
    from vidgo_stems.observe.multiproc import prepare_multiproc_dir
    from vidgo_stems.settings import get_settings

    settings = get_settings()
    settings.require_redis_url()
    settings.require_api_key()
    if settings.metrics_port:
        prepare_multiproc_dir(settings.metrics_port)  # before anything imports prometheus_client

    from vidgo_stems.celery_app import producer, worker_queues
    from vidgo_stems.files.shared import check_shared_storage
    from vidgo_stems.redisconfig import warn_if_not_durable

    p = producer()
    check_shared_storage(p.storage, p.redis, p.ledger.keys)
    warn_if_not_durable(p.redis)
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "vidgo_stems.celery_app",
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
    from vidgo_stems.supervise import Supervisor

    sys.exit(Supervisor(argv).run())


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True)
@click.option("--workers", default=1, show_default=True, help="uvicorn worker processes.")
def gateway(host: str, port: int, workers: int) -> None:
    """Serve the HTTP gateway: jobs API, Vidgo callbacks, health (needs REDIS_URL and
    VIDGO_STEMS_GATEWAY_API_KEYS). Put TLS in front of it.

    Refuses to start, with one line, when the configuration is incomplete, Redis does not
    answer or the port cannot be bound; says where it listens only once it can.
    """
    import uvicorn

    from vidgo_stems.celery_app import producer as default_producer
    from vidgo_stems.files.shared import check_gateway_storage
    from vidgo_stems.web.gateway import create_app
    from vidgo_stems.web.serve import HeaderDeadlineProtocol, listen, serve

    create_app()  # fail here, with the fix, when the configuration is incomplete
    p = default_producer()
    p.redis.ping()  # an unreachable Redis stops the start (one line, exit 2), as for workers
    sock = listen(host, port)
    checked = check_gateway_storage(p.storage, p.redis, p.ledger.keys)  # so does a wrong one
    settings = p.settings
    keys = len(settings.gateway_api_keys)
    click.echo(
        f"vidgo-stems gateway on http://{host}:{sock.getsockname()[1]}: storage "
        f"{p.storage.url}, auth on ({keys} jobs API key{'s' if keys != 1 else ''}), metrics at "
        f"/metrics, logs {settings.log_format}",
        err=True,
    )
    if checked is None:
        click.echo(
            "no worker has claimed a storage yet, so the gateway cannot check that it shares "
            "theirs; it checks again at its next start",
            err=True,
        )
    logging.getLogger("vidgo_stems.gateway").setLevel(logging.INFO)
    config = uvicorn.Config(
        "vidgo_stems.web.gateway:create_app",
        factory=True,
        workers=workers,
        http=HeaderDeadlineProtocol,
        access_log=False,  # uvicorn's would print query strings, and with them callback tokens
        log_config=None,
        proxy_headers=True,
    )
    serve(config, sock)


@main.command("webhook-secret")
def webhook_secret() -> None:
    """Print a new random webhook signing secret (whsec_...), for VIDGO_STEMS_WEBHOOK_SECRET."""
    import base64
    import secrets

    click.echo("whsec_" + base64.b64encode(secrets.token_bytes(32)).decode())


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def stats(as_json: bool) -> None:
    """Show the cluster: jobs by state, queue depths, in-flight slots, pending and overdue
    polls, rates and rate-limit buckets, cool-downs, workers seen and the event counters
    (needs REDIS_URL)."""
    import json

    from vidgo_stems.celery_app import worker_queues
    from vidgo_stems.monitor.cluster import take_snapshot

    p = producer()
    snap = take_snapshot(p.redis, p.ledger, p.settings, worker_queues(p.settings))
    if as_json:
        click.echo(json.dumps(snap.to_json(), indent=2, sort_keys=True))
        return
    for line in _stats_lines(snap):
        click.echo(line)


def _stats_lines(snap: Any) -> list[str]:
    jobs = "  ".join(f"{state} {count}" for state, count in snap.jobs.items() if count) or "none"
    queues = "  ".join(f"{name} {depth}" for name, depth in snap.queues.items())
    buckets = "  ".join(
        f"{kind} {b.tokens:g}/{b.burst:g} tokens at {b.rate_per_s:g}/s"
        for kind, b in snap.buckets.items()
    )
    lines = [
        f"jobs            {jobs}",
        f"queues          {queues}",
        f"in flight       {snap.in_flight} of {snap.in_flight_cap} Vidgo slots",
        f"polls           {snap.polls_pending} pending, {snap.polls_overdue} overdue "
        f"(oldest {snap.oldest_overdue_s:.1f}s late)",
        f"finished        {snap.finished_last_min} in the last minute, "
        f"{snap.finished_last_10min} in the last 10 minutes",
        f"rate limits     {buckets}",
        f"workers         {len(snap.workers)} seen: {', '.join(snap.workers) or 'none'}",
    ]
    if snap.cooldown_s:
        lines.append(f"cool-down       {snap.cooldown_s:.0f}s left ({snap.cooldown_reason})")
    if snap.submits_paused_s:
        lines.append(
            f"submits paused  {snap.submits_paused_s:.0f}s left ({snap.submits_paused_reason})"
        )
    if snap.credits_balance is not None:
        lines.append(
            f"credits         {snap.credits_balance} "
            f"(read {snap.credits_balance_age_s or 0:.0f}s ago)"
        )
    counters = "  ".join(f"{name} {value}" for name, value in sorted(snap.counters.items()))
    lines.append(f"events          {counters or 'none yet (retries, stalls, recoveries, ...)'}")
    return lines


@main.command()
@click.option("--max-age", default=60.0, show_default=True, help="Seconds a heartbeat stays fresh.")
@click.option(
    "--ready", is_flag=True, help="Also require that Redis answered at the last heartbeat."
)
@click.option(
    "--file",
    "path",
    default=None,
    type=click.Path(path_type=Path),
    help="The heartbeat file (default: VIDGO_STEMS_HEARTBEAT_FILE).",
)
def healthcheck(max_age: float, ready: bool, path: Path | None) -> None:
    """Exit 0 when this host's worker wrote its heartbeat file within --max-age seconds
    (liveness); with --ready, also when Redis answered then (readiness). Exit 1 otherwise."""
    import time

    from vidgo_stems.heartbeat import read_heartbeat
    from vidgo_stems.settings import get_settings

    path = path or get_settings().heartbeat_file
    if path is None:
        click.echo(
            "error: no heartbeat file: set VIDGO_STEMS_HEARTBEAT_FILE or pass --file", err=True
        )
        sys.exit(2)
    beat = read_heartbeat(path)
    if beat is None:
        click.echo(f"unhealthy: no heartbeat in {path}", err=True)
        sys.exit(1)
    at = beat.get("at")
    if not isinstance(at, int | float):
        click.echo(f"unhealthy: {path} holds no heartbeat time", err=True)
        sys.exit(1)
    age = time.time() - at
    if age > max_age:
        click.echo(f"unhealthy: last heartbeat {age:.0f}s ago (over {max_age:g}s)", err=True)
        sys.exit(1)
    if ready and not beat.get("redis"):
        click.echo("not ready: Redis did not answer at the last heartbeat", err=True)
        sys.exit(1)
    click.echo(f"ok: heartbeat {age:.0f}s ago")


@main.command("resume-submits")
def resume_submits() -> None:
    """Lift a credits pause at once, after topping up the Vidgo account (needs REDIS_URL)."""
    from vidgo_stems.pipeline.recovery import wake_waiting_submits
    from vidgo_stems.vidgo.gate import VidgoGate

    p = producer()
    VidgoGate(p.redis, prefix=p.settings.redis_key_prefix).resume_submits()
    woken = wake_waiting_submits(p.ledger)
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
    from vidgo_stems.emulator import EmulatorConfig
    from vidgo_stems.emulator.server import serve

    config = EmulatorConfig(
        api_key=api_key,
        queue_s=queue_s,
        run_s=run_s,
        callback_shape=callback_shape,
        public_url=public_url,
        seed=seed,
    )
    base = f"http://{host}:{port}"
    click.echo(f"Vidgo emulator on {base}; point a worker at it with:", err=True)
    click.echo(f"  export VIDGO_BASE_URL={base}", err=True)
    click.echo(
        f"  export VIDGO_API_KEY={'<the --api-key you chose>' if api_key else 'any'}", err=True
    )
    click.echo(
        "  export VIDGO_STEMS_ALLOW_PRIVATE_SOURCE_HOSTS=true  # only for tracks on this network",
        err=True,
    )
    serve(config, host, port)


@main.command()
@click.option(
    "--out", "out", default="demo-out", show_default=True, type=click.Path(path_type=Path)
)
@click.option("--timeout", "timeout_s", default=300.0, show_default=True)
def demo(out: Path, timeout_s: float) -> None:
    """Separate a few generated tracks end to end on a private Redis and the emulator."""
    from vidgo_stems.devstack.demo import run_demo

    sys.exit(run_demo(out, timeout_s=timeout_s))
