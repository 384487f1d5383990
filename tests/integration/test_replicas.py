"""A primary with too few replicas, on real ``redis-server`` processes started for each test:
NOREPLICAS (``min-replicas-to-write``) is retried by the ledger until a replica connects, and
with durable writes on no submit is paid until a replica confirms the move before it."""

from __future__ import annotations

import signal
import threading
import time

import httpx
import pytest

from tests.jobs import create_job
from tests.sentinel import Node
from tests.steps import StepLog
from tests.support import Stack
from tests.waiting import wait_until
from vidgo_stems.devstack.redis_server import free_port
from vidgo_stems.pipeline.durable import Need
from vidgo_stems.pipeline.ledger import Ledger
from vidgo_stems.pipeline.states import JobState, Step, TaskName
from vidgo_stems.redisconn import NoReplicasError, connect
from vidgo_stems.settings import Settings

pytestmark = pytest.mark.integration

PLAIN = ["--save", "", "--appendonly", "no"]


@pytest.fixture
def nodes(tmp_path):
    """``nodes(name, *args)`` starts a redis-server; all are stopped after the test."""
    started: list[Node] = []

    def start(name: str, *args: str) -> Node:
        node = Node(tmp_path / "redis", name, [*PLAIN, *args]).start()
        started.append(node)
        node.wait_ping()
        return node

    yield start
    for node in started:
        node.stop()


def url_of(node: Node) -> str:
    return f"redis://127.0.0.1:{node.port}/0"


def noreplicas_refusals(node: Node) -> int:
    """Error replies the server sent but NOSCRIPT (a script's first call): here, only the
    NOREPLICAS refusals (Redis 6 counts a script's refused write under ERR, Redis 7 under
    NOREPLICAS)."""
    stats = node.client().info("errorstats")
    return sum(int(v["count"]) for k, v in stats.items() if k != "errorstat_NOSCRIPT")


def test_a_ledger_write_refused_with_noreplicas_is_retried_until_a_replica_connects(nodes):
    primary = nodes("primary", "--min-replicas-to-write", "1", "--min-replicas-max-lag", "10")
    client = connect(Settings(redis_url=url_of(primary), redis_retries=12))
    ledger = Ledger(client, prefix="nr")
    created: list[object] = []
    writer = threading.Thread(target=lambda: created.append(create_job(ledger, "j1")))
    writer.start()
    wait_until(
        lambda: noreplicas_refusals(primary) > 0,
        what="the primary to refuse the write with NOREPLICAS",
        seen=lambda: primary.client().info("errorstats"),
    )
    nodes("replica", "--replicaof", "127.0.0.1", str(primary.port))
    writer.join()  # bounded by the client's retries (VIDGO_STEMS_REDIS_RETRIES)
    job = ledger.get("j1")
    assert created and job is not None and job.state is JobState.QUEUED
    client.close()


def test_noreplicas_that_lasts_past_the_retries_is_raised_as_what_it_is(nodes):
    primary = nodes("primary", "--min-replicas-to-write", "1")
    client = connect(Settings(redis_url=url_of(primary), redis_retries=1))
    with pytest.raises(NoReplicasError, match="Not enough good replicas"):
        create_job(Ledger(client, prefix="nr"), "j1")
    assert noreplicas_refusals(primary) >= 2  # the write and its one retry, both refused
    client.close()


def test_a_durable_move_sends_its_next_message_only_once_a_replica_holds_the_move(nodes):
    """Nothing may build on a paid record a failover could still take back: the poll that
    follows it is sent after the replica confirmed the record, not with it."""
    primary = nodes("primary")
    replica = nodes("replica", "--replicaof", "127.0.0.1", str(primary.port))
    wait_until(
        lambda: replica.client().info("replication").get("master_link_status") == "up",
        what="the replica to sync",
    )
    client = connect(Settings(redis_url=url_of(primary)))
    sent = StepLog(client, "dm")
    ledger = Ledger(client, prefix="dm", encode=sent, durable_replicas=1, durable_timeout_s=30)
    create_job(ledger, "j1", token="t0")
    replica.signal(signal.SIGSTOP)
    moved: list[bool] = []
    step = Step(TaskName.POLL, "j1", "t1")
    record = threading.Thread(
        target=lambda: moved.append(
            ledger.advance(
                "j1",
                expect=JobState.QUEUED,
                token="t0",
                to=JobState.SUBMITTING,
                new_token="t1",
                event="submitting",
                durable=Need.KEEP,
                step=step,
            )
        )
    )
    record.start()
    wait_until(lambda: ledger.get("j1").token == "t1", what="the move on the primary")
    time.sleep(1.5)  # WAIT steps of one second: the move is on the primary, unconfirmed
    assert list(sent) == [], "the next message went out before a replica held the move"
    replica.signal(signal.SIGCONT)
    record.join()
    assert moved == [True] and [s.token for s in sent] == ["t1"]
    assert [h["event"] for h in ledger.history("j1")] == ["enqueued", "submitting"]
    client.close()


def test_no_submit_is_paid_until_a_replica_confirms_the_move_before_it(
    nodes, emulator, tracks_url, tmp_path
):
    """A primary without a replica (as a cut-off one is): the worker claims the job, finds the
    send unconfirmed, pays nothing and puts it back QUEUED; once a replica connects, the job is
    submitted once and ends DONE."""
    primary = nodes("primary")
    client = connect(Settings(redis_url=url_of(primary)))
    metrics_port = free_port()
    stack = Stack(
        client,
        url_of(primary),
        emulator,
        tracks_url,
        tmp_path,
        VIDGO_STEMS_REDIS_DURABLE_REPLICAS="1",
        VIDGO_STEMS_REDIS_DURABLE_TIMEOUT_S="2",
    )
    try:
        stack.start_worker(
            concurrency=1,
            name="held",
            env={
                "VIDGO_STEMS_METRICS_PORT": str(metrics_port),
                "VIDGO_STEMS_METRICS_ADDR": "127.0.0.1",
                "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
            },
        )
        url = stack.track_url()
        job_id = stack.enqueue(url, output_type="general")
        events = lambda: [h["event"] for h in stack.ledger.history(job_id)]  # noqa: E731
        wait_until(lambda: events().count("submit_held") >= 2, what="two held submits", seen=events)
        paid = [e for e in emulator.record("submit") if e.get("audio_url") == url]
        assert paid == [], "a submit was paid on an unreplicated move"
        scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
        assert held_count(scraped) >= 2, scraped[-2000:]
        nodes("replica", "--replicaof", "127.0.0.1", str(primary.port))
        view = stack.wait_terminal(job_id, timeout_s=60)
        assert view.state is JobState.DONE, (view.state, view.error)
        paid = [e for e in emulator.record("submit") if e.get("audio_url") == url]
        assert len(paid) == 1 and list(view.vidgo_task_ids) == [paid[0]["task_id"]]
        assert "submit_ambiguous" not in events()
    finally:
        stack.stop()
        client.close()


def held_count(scraped: str) -> float:
    name = "vidgo_stems_submits_held_unreplicated_total"
    lines = [line for line in scraped.splitlines() if line.startswith(name)]
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines)


def test_a_worker_outlives_a_primary_that_refuses_writes_for_want_of_replicas(
    nodes, emulator, tracks_url, tmp_path
):
    """``min-replicas-to-write``: while the replica is stopped the primary answers NOREPLICAS
    to every write, Celery's own included. kombu takes NOREPLICAS on its BRPOP for an
    unrecoverable error and Celery exits; the supervisor (``vidgo-stems worker``) starts it
    again, and the jobs end DONE once the replica is back."""
    primary = nodes("primary", "--min-replicas-to-write", "1", "--min-replicas-max-lag", "2")
    replica = nodes("replica", "--replicaof", "127.0.0.1", str(primary.port))
    wait_until(
        lambda: primary.client().info("replication").get("min_slaves_good_slaves") == 1,
        what="the primary to count its replica as good",
        seen=lambda: primary.client().info("replication"),
    )
    client = connect(Settings(redis_url=url_of(primary)))
    stack = Stack(client, url_of(primary), emulator, tracks_url, tmp_path)
    try:
        worker = stack.start_worker(concurrency=2, name="norepl")
        first = stack.enqueue(stack.track_url(), output_type="general")
        assert stack.wait_terminal(first, timeout_s=60).state is JobState.DONE
        replica.signal(signal.SIGSTOP)
        wait_until(
            lambda: noreplicas_refusals(primary) > 0,
            what="the primary to refuse writes with NOREPLICAS",
            timeout_s=30,
            seen=lambda: primary.client().info("replication"),
        )
        wait_until(
            lambda: "NOREPLICAS" in stack.worker_logs(),
            what="the worker to meet NOREPLICAS",
            timeout_s=30,
        )
        assert worker.alive, stack.worker_logs()  # the supervisor, whatever Celery did
        replica.signal(signal.SIGCONT)
        second = stack.enqueue(stack.track_url(), output_type="general")
        view = stack.wait_terminal(second, timeout_s=120)
        assert view.state is JobState.DONE, (view.state, view.error)
        assert worker.alive
    finally:
        replica.signal(signal.SIGCONT)
        stack.stop()
        client.close()
