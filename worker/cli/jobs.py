"""Commands about single jobs: separate, status, cancel, purge."""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING

import click

from vidgo_stems.cli.app import main, producer

if TYPE_CHECKING:
    from vidgo_stems.views import JobView


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
@click.option(
    "--format",
    "delivery_format",
    default=None,
    help="original, wav16, wav24, flac, mp3 or opus (default: VIDGO_STEMS_DELIVERY_FORMAT).",
)
@click.option("--sample-rate", type=int, default=None, help="Deliver at this rate (Hz).")
@click.option(
    "--normalize-lufs", type=float, default=None, help="Normalise each stem to this loudness."
)
@click.option("--wait/--no-wait", default=False, help="Show progress until the job ends.")
@click.option("--timeout", "timeout_s", default=3600.0, show_default=True)
def separate(
    audio_url: str,
    title: str | None,
    model_name: str,
    output_type: str,
    job_id: str | None,
    webhook_url: str | None,
    delivery_format: str | None,
    sample_rate: int | None,
    normalize_lufs: float | None,
    wait: bool,
    timeout_s: float,
) -> None:
    """Enqueue AUDIO_URL and print its job id (needs REDIS_URL); with --wait, follow the job and
    print each stem's link and the manifest's when it is DONE."""
    from vidgo_stems.producer import enqueue

    job_id = enqueue(
        audio_url,
        title=title,
        model_name=model_name,
        output_type=output_type,
        job_id=job_id,
        webhook_url=webhook_url,
        format=delivery_format,
        sample_rate=sample_rate,
        normalize_lufs=normalize_lufs,
    ).job_id
    click.echo(job_id)
    if wait:
        sys.exit(_wait(job_id, timeout_s))


def _wait(job_id: str, timeout_s: float) -> int:
    from vidgo_stems.producer import get_job

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
            _echo_links(view)
            return 0
        time.sleep(1.0)
    click.echo(f"job {job_id} did not finish within {timeout_s:.0f}s", err=True)
    return 1


def _echo_links(view: JobView) -> None:
    """Every stem's link, one ``stem URL`` line each, then the manifest's."""
    for name, stem in sorted(view.stems.items()):
        click.echo(f"{name} {stem.url or '(no link: storage unreachable)'}")
    click.echo(f"manifest {view.manifest_url or '(no link: storage unreachable)'}")


@main.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print the whole job as JSON.")
def status(job_id: str, as_json: bool) -> None:
    """Show a job's state, attempts, history and last error (needs REDIS_URL)."""
    from vidgo_stems.producer import get_job

    view = get_job(job_id)
    if view is None:
        click.echo(f"no job {job_id} in the ledger", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(view.model_dump(mode="json"), indent=2))
        return
    click.echo(f"job {view.job_id}: {view.state.value} (stage {view.stage})")
    click.echo(f"  subscribers: {view.subscribers}  retries: {view.retries}")
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
    from vidgo_stems.producer import cancel as cancel_job

    view = cancel_job(job_id)
    if view is None:
        click.echo(f"no job {job_id} in the ledger", err=True)
        sys.exit(1)
    if view.state.value != "CANCELLED":
        click.echo(f"job {job_id} had already ended {view.state.value}; left as it is", err=True)
        sys.exit(1)
    click.echo(f"job {job_id} CANCELLED: {view.error.message if view.error else ''}")


@main.command()
@click.option(
    "--older-than",
    "older_than",
    default=None,
    help="Remove jobs that ended longer ago than this: 30d, 12h, 90m, 45s. Required to remove; "
    "a dry run without it lists every ended job.",
)
@click.option("--dry-run", is_flag=True, help="List what would be removed; remove nothing.")
def purge(older_than: str | None, dry_run: bool) -> None:
    """Remove ended jobs' stored files and ledger entries, together (needs REDIS_URL)."""
    from celery.result import AsyncResult

    from vidgo_stems.celery_app import app
    from vidgo_stems.errors import InvalidRequest
    from vidgo_stems.pipeline.retention import parse_duration
    from vidgo_stems.pipeline.retention import purge as purge_jobs

    if older_than is None and not dry_run:
        raise InvalidRequest(
            "say how old: --older-than 30d removes jobs that ended more than 30 days ago "
            "(--dry-run without it lists every ended job)"
        )
    p = producer()
    gone = purge_jobs(
        p.ledger,
        p.storage,
        older_than_s=parse_duration(older_than) if older_than else 0.0,
        now=time.time(),
        dry_run=dry_run,
        forget_result=lambda job_id: AsyncResult(job_id, app=app).forget(),
    )
    verb = "would remove" if dry_run else "removed"
    for item in gone:
        ended = time.strftime("%Y-%m-%d %H:%M", time.gmtime(item.ended_at))
        click.echo(f"{verb} {item.job_id} (ended {ended} UTC, {_count(item.files, 'file')})")
    jobs = _count(len(gone), "job")
    if older_than:
        click.echo(f"{verb} {jobs} that ended more than {older_than} ago from {p.storage.url}")
    else:
        click.echo(
            f"{verb} {jobs}, every ended job in {p.storage.url}; "
            "to remove, pass --older-than (e.g. --older-than 30d)"
        )


def _count(n: int, noun: str) -> str:
    """``1 job``, ``4 jobs``: a count as people write it."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"
