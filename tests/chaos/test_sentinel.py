"""Redis high availability: a primary, two replicas and three real ``redis-sentinel`` processes
(``redis-server --sentinel``), two workers and a batch of jobs in flight. The primary is killed
with SIGKILL mid-run, right after the replicas fell behind, so writes the primary acknowledged
are really lost; Sentinel promotes a replica; every job must still end DONE and nothing may be
paid twice (audited against the emulator's record). A primary cut off without being killed is
in test_partition.py.
"""

from __future__ import annotations

import pytest

from tests.chaos.audit import audit
from tests.chaos.ha import on_sentinels, resume_replicas, settle_s, stop_replicas
from tests.chaos.test_chaos import enqueue_many
from tests.sentinel import MARGIN, SentinelSet
from tests.waiting import wait_until
from vidgo_stems.pipeline.states import JobState

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

JOBS = 16


def fail_over(sentinels: SentinelSet) -> float:
    """SIGKILL the primary, let the (stopped) replicas run again; seconds until one of them
    is promoted."""
    sentinels.primary.kill()
    resume_replicas(sentinels)
    return sentinels.wait_for_master()


def test_a_sentinel_failover_mid_run_loses_nothing_and_pays_nothing_twice(chaos):
    with on_sentinels(chaos, emulator={"run_s": 3.0}) as (sentinels, stack):
        stack.start_worker(concurrency=2, name="sa")
        stack.start_worker(concurrency=2, name="sb")
        job_ids = enqueue_many(stack, JOBS)
        wait_until(
            lambda: len(polling(stack, job_ids)) == JOBS,
            timeout_s=settle_s(stack, sentinels, jobs=JOBS, slots=4),
            what="every job to be polling",
            seen=lambda: states(stack, job_ids),
        )
        # The replicas stop taking the stream while the workers keep polling and writing to
        # the primary, which acknowledges every write; then the primary dies, and those
        # writes were never sent. (Every job is past its paid submit.)
        stop_replicas(sentinels)
        stopped = {j: stack.ledger.get(j).token for j in job_ids}
        wait_until(
            lambda: any(stack.ledger.get(j).token != stopped[j] for j in job_ids),
            what="a job to move on while the replicas are stopped",
            timeout_s=next_poll_s(stack),
            seen=lambda: states(stack, job_ids),
        )
        acknowledged = {j: stack.ledger.get(j).token for j in job_ids}
        failover_s = fail_over(sentinels)
        after = {j: stack.ledger.get(j) for j in job_ids}
        lost = [j for j in job_ids if after[j] is None or after[j].token != acknowledged[j]]
        views = stack.wait_all(job_ids, timeout_s=settle_s(stack, sentinels, jobs=JOBS, slots=4))
    # Acknowledged writes really were lost: jobs came back with an older step token.
    assert lost, "the failover lost no acknowledged write; the test proves nothing"
    not_done = [(v.job_id, v.state.value, v.error) for v in views if v.state is not JobState.DONE]
    assert not not_done, not_done
    totals = audit(stack, views)
    assert totals["paid"] == len(views), totals  # one Vidgo task per job: nothing paid twice
    # The writes the failover undid were repaired: a job found back in an earlier state went on
    # from there (all DONE above), either by the earlier message the promoted replica still
    # held (its poll waiting in the schedule) or, when that message was gone too, by the
    # recovery sweep. Which of the two depends on where replication stopped, so neither is
    # asserted here; the worker-kill test in test_chaos.py asserts the sweep's part.
    print(f"failover took {failover_s:.1f}s; {len(lost)} job(s) lost writes; totals {totals}")


def next_poll_s(stack) -> float:
    """How long a polling job may take to poll again: its longest interval, a retry's
    backoff, the schedule's promotion (by the sweep thread at worst), times MARGIN."""
    s = stack.settings
    return MARGIN * (s.poll_max_s + s.retry_backoff_max_s + s.sweep_interval_s)


def polling(stack, job_ids) -> list[str]:
    waiting = (JobState.SUBMITTED, JobState.RUNNING)
    return [j for j in job_ids if stack.job(j).state in waiting]


def states(stack, job_ids) -> list[tuple[str, str]]:
    return [(j, stack.job(j).state.value) for j in job_ids]
