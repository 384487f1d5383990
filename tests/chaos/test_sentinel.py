"""Redis high availability: a primary, a replica and three real ``redis-sentinel`` processes
(``redis-server --sentinel``), two workers and a batch of jobs in flight. The primary is killed
with SIGKILL mid-run, right after the replica fell behind, so writes the primary acknowledged
are really lost; Sentinel promotes the replica; every job must still end DONE, nothing may be
paid twice (audited against the emulator's record), and the recovery sweep must be seen
repairing what the failover undid.
"""

from __future__ import annotations

import contextlib
import signal
import time

import pytest
from kombu import pools

from tests.chaos.audit import audit
from tests.chaos.test_chaos import enqueue_many
from tests.sentinel import SentinelSet
from tests.waiting import wait_until
from vidgo_stems.celery_app import app
from vidgo_stems.devstack.local import wait_for
from vidgo_stems.pipeline.states import JobState
from vidgo_stems.redisconn import connect
from vidgo_stems.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

JOBS = 16


def sentinel_env(sentinels: SentinelSet) -> dict[str, str]:
    return {
        "VIDGO_STEMS_REDIS_SENTINEL_MASTER": sentinels.master_name,
        "VIDGO_STEMS_REDIS_DURABLE_REPLICAS": "1",
        "VIDGO_STEMS_REDIS_DURABLE_TIMEOUT_S": "20",
        "VIDGO_STEMS_REDIS_SOCKET_TIMEOUT_S": "2",
    }


@contextlib.contextmanager
def on_sentinels(chaos, *, run_s: float):
    """A chaos stack whose Redis is a fresh Sentinel set (this process publishes through it
    too); yields the set, the stack and this process's ledger client."""
    with SentinelSet() as sentinels:
        settings = Settings(
            redis_url=sentinels.url,
            redis_sentinel_master=sentinels.master_name,
            redis_socket_timeout_s=2,
        )
        client = connect(settings)
        options = {"master_name": sentinels.master_name, "socket_timeout": 2}
        app.conf.update(broker_transport_options=options, result_backend_transport_options=options)
        forget_producers()
        try:
            env = sentinel_env(sentinels)
            yield sentinels, chaos(redis=(client, sentinels.url), emulator={"run_s": run_s}, **env)
        finally:
            client.close()
            app.conf.update(broker_transport_options={}, result_backend_transport_options={})
            forget_producers()


def forget_producers() -> None:
    """Celery keeps its producer pool bound to the broker it first connected to; a test that
    brings its own sentinels (and stops them) must not leave it to the next test."""
    app.amqp._producer_pool = None
    pools.reset()


def fail_over(sentinels: SentinelSet) -> float:
    """SIGKILL the primary, let the (stopped) replica run again; seconds until promoted."""
    sentinels.primary.kill()
    sentinels.replica.signal(signal.SIGCONT)
    return sentinels.wait_for_master(("127.0.0.1", sentinels.replica.port))


def test_a_sentinel_failover_mid_run_loses_nothing_and_pays_nothing_twice(chaos):
    with on_sentinels(chaos, run_s=3.0) as (sentinels, stack):
        stack.start_worker(concurrency=2, name="sa")
        stack.start_worker(concurrency=2, name="sb")
        job_ids = enqueue_many(stack, JOBS)
        wait_for(
            lambda: len(polling(stack, job_ids)) == JOBS,
            timeout_s=60,
            what="every job to be polling",
        )
        # The replica stops taking the stream while the workers keep polling and writing to
        # the primary, which acknowledges every write; then the primary dies. Filler written
        # first fills the socket buffers between the two, so the workers' writes are still in
        # the primary's memory when it dies, never sent. (Every job is past its paid submit,
        # whose writes wait for the replica.)
        sentinels.replica.signal(signal.SIGSTOP)
        fill_replication_buffers(sentinels)
        stopped = {j: stack.ledger.get(j).token for j in job_ids}
        wait_until(
            lambda: any(stack.ledger.get(j).token != stopped[j] for j in job_ids),
            what="a job to move on while the replica is stopped",
            timeout_s=30,
        )
        acknowledged = {j: stack.ledger.get(j).token for j in job_ids}
        failover_s = fail_over(sentinels)
        after = {j: stack.ledger.get(j) for j in job_ids}
        lost = [j for j in job_ids if after[j] is None or after[j].token != acknowledged[j]]
        views = stack.wait_all(job_ids, timeout_s=240)
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


def fill_replication_buffers(sentinels: SentinelSet, megabytes: int = 32) -> None:
    with contextlib.closing(sentinels.primary.client()) as primary:
        for n in range(megabytes):
            primary.set(f"filler:{n}", b"x" * (1 << 20))


def polling(stack, job_ids) -> list[str]:
    waiting = (JobState.SUBMITTED, JobState.RUNNING)
    return [j for j in job_ids if stack.job(j).state in waiting]


def test_a_failover_in_the_middle_of_paid_submits_pays_each_job_once(chaos):
    """The jobs are in Redis (and on the replica) before the replica stops; the workers start
    and submit while it is stopped, so the moves around each paid submit are acknowledged by
    the primary alone when it dies. Those moves wait for the replica, and are written again on
    the promoted one, so no submit is sent twice."""
    jobs = 8
    with on_sentinels(chaos, run_s=1.0) as (sentinels, stack):
        job_ids = enqueue_many(stack, jobs)
        assert stack.ledger.redis.wait(1, 5000) == 1  # the jobs and messages are replicated
        sentinels.replica.signal(signal.SIGSTOP)
        fill_replication_buffers(sentinels)
        stack.start_worker(concurrency=2, name="pa")
        stack.start_worker(concurrency=2, name="pb")
        wait_for(
            lambda: any(stack.job(j).state is not JobState.QUEUED for j in job_ids),
            timeout_s=30,
            what="a submit to begin",
        )
        time.sleep(1.0)
        fail_over(sentinels)
        views = stack.wait_all(job_ids, timeout_s=240)
    not_done = [(v.job_id, v.state.value, v.error) for v in views if v.state is not JobState.DONE]
    assert not not_done, not_done
    totals = audit(stack, views)
    assert totals["paid"] == jobs, totals
    assert totals["ambiguous"] == 0, totals
