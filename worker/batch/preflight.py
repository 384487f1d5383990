"""Before a batch starts: what it will cost, what the account holds, and whether to go.

The estimate counts the jobs that still need a Vidgo task (unknown to the ledger, or still
QUEUED) times ``credits_per_task``; a resumed batch therefore estimates only what is left. The
balance is read with a few retries (a busy Vidgo should not stop a run before it starts).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from vidgo_stems.backoff import backoff_s
from vidgo_stems.batch.catalog import CatalogCheck
from vidgo_stems.batch.runner import jobs_to_submit
from vidgo_stems.errors import ConfigError, RetryableError
from vidgo_stems.pipeline.ledger import Ledger
from vidgo_stems.settings import Settings
from vidgo_stems.vidgo import VidgoClient
from vidgo_stems.vidgo.gate import VidgoGate

BALANCE_TRIES = 5


@dataclass(frozen=True)
class Estimate:
    """What a batch is expected to cost against what the account holds."""

    new_tasks: int
    credits_per_task: float
    balance: int | None

    @property
    def credits(self) -> float:
        return self.new_tasks * self.credits_per_task

    def describe(self) -> str:
        """One line: tasks x price = credits, and the balance, numbers as people write them."""
        tasks = f"{number(self.new_tasks)} new Vidgo task{'' if self.new_tasks == 1 else 's'}"
        return (
            f"estimate: {tasks} x {number(self.credits_per_task)} credits = "
            f"{number(self.credits)} credits at least (VIDGO_STEMS_CREDITS_PER_TASK; "
            f"resubmissions cost more); balance: "
            f"{'unknown' if self.balance is None else number(self.balance)}"
        )

    def check(self, *, ignore_balance: bool) -> None:
        """Raise ConfigError, saying what to do, when the batch should not start."""
        if ignore_balance:
            return
        if self.balance is None:
            raise ConfigError(
                "cannot read the Vidgo balance without VIDGO_API_KEY: set it, or pass "
                "--ignore-balance to start without the credits check"
            )
        if self.balance < self.credits:
            raise ConfigError(
                f"the balance ({number(self.balance)} credits) does not cover the estimate "
                f"({number(self.credits)}): top up, or pass --ignore-balance to start anyway"
            )


def number(value: float) -> str:
    """A count or amount as people write it: ``2,000,000``, ``1,234.5``, ``0.25``; never in
    exponent form."""
    if not math.isfinite(value):
        return str(value)
    if value == int(value):
        return f"{int(value):,}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def estimate(
    check: CatalogCheck,
    ledger: Ledger | None,
    settings: Settings,
    *,
    retry_failed: bool = False,
    on_retry: Callable[[str], None] = lambda _: None,
) -> Estimate:
    """The estimate for a checked catalog (``ledger`` None: nothing is known to exist yet)."""
    new_tasks = jobs_to_submit(ledger, sorted(check.job_ids), retry_failed=retry_failed)
    balance = read_balance(settings, on_retry)
    if balance is not None and ledger is not None:
        VidgoGate(ledger.redis, prefix=settings.redis_key_prefix).record_balance(
            balance, at=time.time()
        )
    return Estimate(new_tasks, settings.credits_per_task, balance)


def read_balance(
    settings: Settings,
    on_retry: Callable[[str], None] = lambda _: None,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> int | None:
    """The account's credits, or None without an API key; retries busy answers a few times."""
    if settings.vidgo_api_key is None:
        return None
    with VidgoClient(settings) as client:
        for attempt in range(BALANCE_TRIES):
            try:
                return client.balance()
            except RetryableError as exc:
                if attempt == BALANCE_TRIES - 1:
                    raise
                wait = max(exc.retry_after_s or 0.0, backoff_s(attempt, base_s=0.5, max_s=30))
                on_retry(f"reading the balance: {exc.message}; again in {wait:.1f}s")
                sleep(wait)
    raise AssertionError("unreachable")
