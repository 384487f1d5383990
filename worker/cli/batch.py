"""Commands for catalog batches: batch, batch-status."""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import click

from vidgo_stems.cli.app import main, producer
from vidgo_stems.settings import load_settings


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
@click.option(
    "--retry-failed",
    is_flag=True,
    help="Run again the rows whose jobs ended FAILED or CANCELLED (their jobs are retried).",
)
def batch(
    catalog: Path,
    manifest_path: Path | None,
    bad_rows: str,
    window: int | None,
    dry_run: bool,
    ignore_balance: bool,
    retry_failed: bool,
) -> None:
    """Run every row of CATALOG (CSV or JSONL) through the pipeline, with a live view.

    Run the same command again after Ctrl-C or a crash: it re-attaches to the same batch,
    skips finished rows and submits nothing twice. Needs REDIS_URL and running workers; the
    credits check needs VIDGO_API_KEY (or --ignore-balance).
    """
    from rich.console import Console

    from vidgo_stems.batch.catalog import check_catalog
    from vidgo_stems.batch.liveview import summary_line
    from vidgo_stems.batch.preflight import estimate
    from vidgo_stems.batch.runner import BatchOptions, BatchRunner
    from vidgo_stems.urlsafety import source_policy

    settings = load_settings()
    err = Console(stderr=True)
    check = check_catalog(catalog, settings.json_limits, source_policy(settings))
    _print_check(catalog, check)
    known = None if dry_run and not settings.redis_url else producer()
    cost = estimate(
        check,
        known.ledger if known else None,
        settings,
        retry_failed=retry_failed,
        on_retry=lambda message: click.echo(message, err=True),
    )
    click.echo(cost.describe(), err=True)
    if dry_run:
        sys.exit(2 if check.problems and bad_rows == "stop" else 0)
    cost.check(ignore_balance=ignore_balance)
    manifest = manifest_path or catalog.with_name(catalog.name + ".manifest.jsonl")
    options = BatchOptions(
        window=window or settings.batch_window,
        bad_rows=bad_rows,  # type: ignore[arg-type]
        retry_failed=retry_failed,
    )
    runner = BatchRunner(catalog, manifest, known or producer(), options, check=check)
    result = _run_with_live_view(runner, err, check.rows)
    click.echo(summary_line(result), err=True)
    click.echo(f"manifest: {manifest}", err=True)
    click.echo(f"failure report: {runner.report_path}", err=True)
    _exit_for(result, catalog)


def _run_with_live_view(runner: Any, err: Any, rows: int) -> Any:
    """Run the batch with its live view; the first Ctrl-C stops it at a row boundary."""
    from vidgo_stems.batch.liveview import LiveView

    stop = threading.Event()
    with LiveView(err, rows) as view:
        runner.on_progress, runner.stop = view.update, stop
        previous = signal.signal(signal.SIGINT, _stop_on_first_interrupt(stop, err))
        try:
            return runner.run()
        finally:
            signal.signal(signal.SIGINT, previous)


def _print_check(catalog: Path, check: Any) -> None:
    """What checking the catalog found: counts, and the first bad rows."""
    click.echo(
        f"batch {check.batch_id}: {check.rows} rows, {check.valid} valid, "
        f"{len(check.problems)} bad, {check.jobs} distinct jobs",
        err=True,
    )
    for problem in check.problems[:20]:
        click.echo(f"  {catalog}:{problem.line}: {problem.reason}", err=True)
    if len(check.problems) > 20:
        click.echo(f"  ... and {len(check.problems) - 20} more", err=True)


def _exit_for(result: Any, catalog: Path) -> None:
    """Exit 130 for an interrupted run (saying how to resume), 1 with failures, else 0."""
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


@main.command("batch-status")
@click.argument("batch_id")
@click.option("--json", "as_json", is_flag=True, help="Print the view as JSON.")
def batch_status(batch_id: str, as_json: bool) -> None:
    """Show a batch's progress from any machine (needs REDIS_URL)."""
    from dataclasses import asdict

    from vidgo_stems.batch.liveview import describe_states
    from vidgo_stems.batch.store import batch_view

    view = batch_view(producer().ledger, batch_id)
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
