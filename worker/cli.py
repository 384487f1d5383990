"""``vidgo-stems``: worker, gateway, separate, status, cancel, batch, emulator and demo.

Errors the user can fix (configuration, bad input) print one line that says what to do and exit
with status 2; they never print a traceback.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from worker.errors import VidgoStemsError
from worker.settings import load_settings

if TYPE_CHECKING:
    from worker.celery_app import Producer


def _fail(exc: VidgoStemsError) -> None:
    click.echo(f"error: {exc.message}", err=True)
    sys.exit(2)


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        import redis

        try:
            return super().invoke(ctx)
        except VidgoStemsError as exc:
            _fail(exc)
        except redis.exceptions.ConnectionError as exc:
            click.echo(
                f"error: cannot reach Redis at REDIS_URL: {exc}; check it is running", err=True
            )
            sys.exit(2)


@click.group(cls=_Group)
@click.option("--log-level", default="WARNING", show_default=True)
def main(log_level: str) -> None:
    """Turn audio URLs into stems through Vidgo, on Celery and Redis."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)


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
@click.argument("audio_url")
@click.option("--title", default=None)
@click.option(
    "--model-name", default="base", show_default=True, help="base, enhanced or instrumental"
)
@click.option(
    "--output-type",
    default="general",
    show_default=True,
    help="general, bass, drums, other, piano, guitar or vocals",
)
@click.option(
    "--job-id", default=None, help="Your own job id (default: the request's fingerprint)."
)
@click.option("--webhook-url", default=None, help="Receives a signed event when the job ends.")
@click.option("--wait/--no-wait", default=False, help="Show progress until the job ends.")
@click.option("--timeout", "timeout_s", default=3600.0, show_default=True)
def separate(
    audio_url: str,
    title: str | None,
    model_name: str,
    output_type: str,
    job_id: str | None,
    webhook_url: str | None,
    wait: bool,
    timeout_s: float,
) -> None:
    """Enqueue AUDIO_URL and print its job id (needs REDIS_URL)."""
    from worker.web.api import enqueue

    job_id = enqueue(
        audio_url,
        title=title,
        model_name=model_name,
        output_type=output_type,
        job_id=job_id,
        webhook_url=webhook_url,
    )
    click.echo(job_id)
    if wait:
        sys.exit(_wait(job_id, timeout_s))


def _wait(job_id: str, timeout_s: float) -> int:
    from worker.web.api import get_job

    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        view = get_job(job_id)
        if view is None:
            click.echo(f"job {job_id} is not in the ledger", err=True)
            return 1
        line = f"{view.state.value} (vidgo: {view.vidgo_status or '-'}, polls: {view.polls})"
        if line != last:
            click.echo(line, err=True)
            last = line
        if view.state.is_terminal:
            if view.error:
                click.echo(
                    f"{view.state.value} [{view.error.code}]: {view.error.message}", err=True
                )
                return 1
            click.echo(view.manifest_url or "")
            return 0
        time.sleep(1.0)
    click.echo(f"job {job_id} did not finish within {timeout_s:.0f}s", err=True)
    return 1


@main.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print the whole job as JSON.")
def status(job_id: str, as_json: bool) -> None:
    """Show a job's state, attempts, history and last error (needs REDIS_URL)."""
    from worker.web.api import get_job

    view = get_job(job_id)
    if view is None:
        click.echo(f"no job {job_id} in the ledger", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(view.model_dump(mode="json"), indent=2))
        return
    click.echo(f"job {view.job_id}: {view.state.value} (stage {view.stage})")
    click.echo(f"  request: {json.dumps(view.request)}")
    click.echo(f"  vidgo task: {view.vidgo_task_id or '-'}  status: {view.vidgo_status or '-'}")
    click.echo(f"  vidgo tasks (paid): {', '.join(view.vidgo_task_ids) or '-'}")
    events = [entry["event"] for entry in view.history]
    click.echo(
        f"  submit attempts: {view.submit_attempts}  polls: {view.polls}  "
        f"resubmissions: {events.count('resubmit')}  "
        f"ambiguous submits: {events.count('submit_ambiguous')}  "
        f"recoveries: {events.count('recovered')}"
    )
    if view.error:
        click.echo(f"  error [{view.error.code}]: {view.error.message}")
    for name, stem in sorted(view.stems.items()):
        click.echo(f"  stem {name}: {stem.bytes} bytes, sha256 {stem.sha256}")
        click.echo(f"    {stem.url or '(no link: storage unreachable)'}")
    if view.manifest_url:
        click.echo(f"  manifest: {view.manifest_url}")
    click.echo("  history:")
    for entry in view.history:
        at = time.strftime("%H:%M:%S", time.localtime(entry["at"]))
        extra = {k: v for k, v in entry.items() if k not in ("at", "from", "to", "event")}
        click.echo(
            f"    {at} {entry['event']:18s} {entry.get('from') or '-'} -> "
            f"{entry.get('to') or '='} {json.dumps(extra) if extra else ''}"
        )


@main.command()
@click.argument("job_id")
def cancel(job_id: str) -> None:
    """Stop a job on our side (needs REDIS_URL). Vidgo has no cancel: a task it already has
    finishes there and is billed; nothing more is polled or downloaded."""
    from worker.web.api import cancel as cancel_job

    view = cancel_job(job_id)
    if view is None:
        click.echo(f"no job {job_id} in the ledger", err=True)
        sys.exit(1)
    if view.state.value != "CANCELLED":
        click.echo(f"job {job_id} had already ended {view.state.value}; left as it is", err=True)
        sys.exit(1)
    click.echo(f"job {job_id} CANCELLED: {view.error.message if view.error else ''}")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True)
@click.option("--workers", default=1, show_default=True, help="uvicorn worker processes.")
def gateway(host: str, port: int, workers: int) -> None:
    """Serve the HTTP gateway: jobs API, Vidgo callbacks, health (needs REDIS_URL and
    VIDGO_STEMS_GATEWAY_API_KEYS). Put TLS in front of it."""
    import uvicorn

    from worker.web.gateway import create_app

    create_app()  # fail here, with the fix, when the configuration is incomplete
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
@click.argument("catalog", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--manifest",
    "manifest_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Results, one JSON line per row (default: CATALOG.manifest.jsonl).",
)
@click.option(
    "--bad-rows",
    type=click.Choice(["stop", "skip"]),
    default="stop",
    show_default=True,
    help="Bad catalog rows stop the run before anything is submitted, or are skipped.",
)
@click.option(
    "--window",
    type=int,
    default=None,
    help="Jobs in flight at once (default: VIDGO_STEMS_BATCH_WINDOW).",
)
@click.option("--dry-run", is_flag=True, help="Check the catalog and estimate credits only.")
@click.option(
    "--ignore-balance", is_flag=True, help="Start even if the balance may not cover the batch."
)
def batch(
    catalog: Path,
    manifest_path: Path | None,
    bad_rows: str,
    window: int | None,
    dry_run: bool,
    ignore_balance: bool,
) -> None:
    """Run every row of CATALOG (CSV or JSONL) through the pipeline, with a live view.

    Run the same command again after Ctrl-C or a crash: it re-attaches to the same batch,
    skips finished rows and submits nothing twice. Needs REDIS_URL and running workers; the
    credits check needs VIDGO_API_KEY (or --ignore-balance).
    """
    from rich.console import Console

    from worker.batch.catalog import check_catalog
    from worker.batch.liveview import LiveView, summary_line
    from worker.batch.preflight import estimate
    from worker.batch.runner import BatchOptions, BatchRunner

    settings = load_settings()
    err = Console(stderr=True)
    check = check_catalog(catalog)
    click.echo(
        f"batch {check.batch_id}: {check.rows} rows, {check.valid} valid, "
        f"{len(check.problems)} bad, {check.jobs} distinct jobs",
        err=True,
    )
    for problem in check.problems[:20]:
        click.echo(f"  {catalog}:{problem.line}: {problem.reason}", err=True)
    if len(check.problems) > 20:
        click.echo(f"  ... and {len(check.problems) - 20} more", err=True)
    known = None if dry_run and not settings.redis_url else _producer()
    cost = estimate(
        check,
        known.ledger if known else None,
        settings,
        on_retry=lambda message: click.echo(message, err=True),
    )
    click.echo(cost.describe(), err=True)
    if dry_run:
        sys.exit(2 if check.problems and bad_rows == "stop" else 0)
    cost.check(ignore_balance=ignore_balance)
    manifest = manifest_path or catalog.with_name(catalog.name + ".manifest.jsonl")
    stop = threading.Event()
    options = BatchOptions(window=window or settings.batch_window, bad_rows=bad_rows)  # type: ignore[arg-type]
    with LiveView(err, check.rows) as view:
        runner = BatchRunner(
            catalog,
            manifest,
            known or _producer(),
            options,
            check=check,
            on_progress=view.update,
            stop=stop,
        )
        previous = signal.signal(signal.SIGINT, _stop_on_first_interrupt(stop, err))
        try:
            result = runner.run()
        finally:
            signal.signal(signal.SIGINT, previous)
    click.echo(summary_line(result), err=True)
    click.echo(f"manifest: {manifest}", err=True)
    click.echo(f"failure report: {runner.report_path}", err=True)
    if result.rows_final < result.rows:
        click.echo(
            f"interrupted: jobs in flight go on in the workers; resume with "
            f"`vidgo-stems batch {catalog}`, or watch with `vidgo-stems batch-status "
            f"{result.batch_id}`",
            err=True,
        )
        sys.exit(130)
    sys.exit(1 if result.failures else 0)


def _stop_on_first_interrupt(stop: threading.Event, err: Any) -> Any:
    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        err.print("stopping at the next row boundary (Ctrl-C again to quit at once)...")

    return handler


def _producer() -> Producer:
    from worker.celery_app import producer

    return producer()


@main.command("batch-status")
@click.argument("batch_id")
@click.option("--json", "as_json", is_flag=True, help="Print the view as JSON.")
def batch_status(batch_id: str, as_json: bool) -> None:
    """Show a batch's progress from any machine (needs REDIS_URL)."""
    from dataclasses import asdict

    from worker.batch.liveview import describe_states
    from worker.batch.store import batch_view

    view = batch_view(_producer().ledger, batch_id)
    if view is None:
        click.echo(f"no batch {batch_id} in Redis", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(asdict(view), indent=2))
        return
    info = view.info
    click.echo(f"batch {batch_id}: {info.get('status')} ({info.get('catalog')})")
    click.echo(
        f"  rows: {info.get('rows')} ({info.get('bad_rows')} bad)  jobs: {view.jobs_fed} of "
        f"{info.get('jobs')} fed"
    )
    click.echo(f"  jobs now: {describe_states(view.jobs_by_state) or '-'}")
    for code, count in sorted(view.failures.items(), key=lambda kv: -kv[1]):
        click.echo(f"  failed [{code}]: {count}")
    click.echo(f"  manifest: {info.get('manifest')}")


@main.command()
def stats() -> None:
    """Show the global counters (retries, resubmissions, ambiguous submits, stalls, ...) and
    any active rate-limit cool-down or credits pause (needs REDIS_URL)."""
    from worker.vidgo.gate import VidgoGate

    p = _producer()
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


@main.command()
@click.option(
    "--older-than",
    "older_than",
    required=True,
    help="Remove jobs that ended longer ago than this: 30d, 12h, 90m, 45s.",
)
@click.option("--dry-run", is_flag=True, help="List what would be removed; remove nothing.")
def purge(older_than: str, dry_run: bool) -> None:
    """Remove ended jobs' stored files and ledger entries, together (needs REDIS_URL)."""
    from celery.result import AsyncResult

    from worker.celery_app import app
    from worker.pipeline.retention import parse_duration
    from worker.pipeline.retention import purge as purge_jobs

    seconds = parse_duration(older_than)
    p = _producer()
    gone = purge_jobs(
        p.ledger,
        p.storage,
        older_than_s=seconds,
        now=time.time(),
        dry_run=dry_run,
        forget_result=lambda job_id: AsyncResult(job_id, app=app).forget(),
    )
    verb = "would remove" if dry_run else "removed"
    for item in gone:
        ended = time.strftime("%Y-%m-%d %H:%M", time.gmtime(item.ended_at))
        click.echo(f"{verb} {item.job_id} (ended {ended} UTC, {item.files} file(s))")
    click.echo(f"{len(gone)} job(s) {verb}, ended more than {older_than} ago in {p.storage.url}")


@main.command("resume-submits")
def resume_submits() -> None:
    """Lift a credits pause at once, after topping up the Vidgo account (needs REDIS_URL)."""
    from worker.pipeline.recovery import wake_waiting_submits
    from worker.vidgo.gate import VidgoGate

    p = _producer()
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


if __name__ == "__main__":
    main()
