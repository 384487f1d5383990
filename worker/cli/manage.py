"""Commands over many jobs: list them, retry those that failed."""

from __future__ import annotations

import json
import sys
import time

import click

from vidgo_stems.cli.app import main, producer


@main.command("jobs")
@click.option("--state", default=None, help="QUEUED, SUBMITTED, ..., DONE, FAILED or CANCELLED.")
@click.option("--batch", "batch_id", default=None, help="Only the jobs a batch fed.")
@click.option("--since", default=None, help="Only jobs created within this long: 30m, 12h, 7d.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000))
@click.option("--cursor", default=None, help="next_cursor of the previous page.")
@click.option("--json", "as_json", is_flag=True, help="Print the page as JSON.")
def jobs(
    state: str | None,
    batch_id: str | None,
    since: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """List jobs, oldest first, a page at a time (needs REDIS_URL)."""
    from vidgo_stems.pipeline.retention import parse_duration
    from vidgo_stems.producer import list_jobs

    start = time.time() - parse_duration(since) if since else None
    page = list_jobs(
        state=state, batch=batch_id, since=start, cursor=cursor, limit=limit, producer=producer()
    )
    if as_json:
        click.echo(json.dumps(page.model_dump(mode="json"), indent=2))
        return
    for job in page.jobs:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(job.created_at))
        error = f"  [{job.error.code}]" if job.error else ""
        click.echo(f"{job.job_id}  {job.state.value:14s} {created}Z{error}")
    if page.next_cursor:
        click.echo(f"more: --cursor {page.next_cursor}", err=True)
    elif not page.jobs:
        click.echo("no jobs", err=True)


@main.command()
@click.argument("job_ids", nargs=-1)
@click.option("--code", "codes", multiple=True, help="Only jobs that failed with this code.")
@click.option("--batch", "batch_id", default=None, help="Only the jobs a batch fed.")
@click.option("--dry-run", is_flag=True, help="List what would be retried and what it may cost.")
def retry(
    job_ids: tuple[str, ...], codes: tuple[str, ...], batch_id: str | None, dry_run: bool
) -> None:
    """Start FAILED or CANCELLED jobs again from the first step that still needs doing: the
    JOB_IDS given, or all selected by --code and --batch (needs REDIS_URL)."""
    from vidgo_stems import producer as api
    from vidgo_stems.errors import InvalidRequest, JobConflict
    from vidgo_stems.pipeline.retry import plan_retry

    p = producer()
    if job_ids:
        found = [p.ledger.get(job_id) for job_id in job_ids]
        missing = [j for j, job in zip(job_ids, found, strict=True) if job is None]
        if missing:
            raise InvalidRequest(f"no job {missing[0]} in the ledger")
        plans = [plan_retry(job, p.storage, now=time.time()) for job in found if job is not None]
    elif codes or batch_id:
        plans = api.retry_candidates(codes=set(codes) or None, batch=batch_id, producer=p)
    else:
        raise InvalidRequest("name the jobs to retry, or select them with --code and/or --batch")
    paying = sum(plan.may_pay for plan in plans)
    per_task = p.settings.credits_per_task
    for plan in plans:
        cost = "may pay for a new Vidgo task" if plan.may_pay else "reuses what was paid"
        click.echo(f"{plan.job_id}  [{plan.error_code}] -> {plan.to.value}: {plan.reason}; {cost}")
    click.echo(
        f"{len(plans)} job(s); {paying} may submit again: up to {paying * per_task:g} credits "
        "(VIDGO_STEMS_CREDITS_PER_TASK)",
        err=True,
    )
    if dry_run:
        return
    refused = 0
    for plan in plans:
        try:
            api.retry(plan.job_id, producer=p)
        except JobConflict as exc:
            refused += 1
            click.echo(f"{plan.job_id}: not retried: {exc.message}", err=True)
    click.echo(f"{len(plans) - refused} job(s) retried", err=True)
    sys.exit(1 if refused else 0)
