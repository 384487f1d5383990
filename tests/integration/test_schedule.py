"""The schedule on a real Redis: racing promoters push each entry once, a Redis restart (AOF)
keeps every waiting entry, and the promoter never blocks for ever on its wake list."""

from __future__ import annotations

import json
import multiprocessing
import secrets
import time

import pytest
import redis

from tests.steps import StepLog, create_job
from tests.waiting import wait_until
from vidgo_stems.devstack.redis_server import RedisServer
from vidgo_stems.models import parse_request
from vidgo_stems.pipeline.ledger import Ledger
from vidgo_stems.pipeline.schedule import Promoter, Schedule
from vidgo_stems.pipeline.states import ACTIVE_STATES, Step, TaskName

pytestmark = pytest.mark.integration

REQUEST = parse_request({"audio_url": "https://cdn.example/a.mp3"})


def fill(client: redis.Redis, prefix: str, queue: str, count: int, due: float) -> None:
    schedule = Schedule(client, prefix)
    for start in range(0, count, 2000):
        pipe = client.pipeline(transaction=False)
        for n in range(start, min(count, start + 2000)):
            entry = f"{prefix}:job:{n}"
            pipe.zadd(schedule.keys.schedule, {entry: due + n * 1e-6})
            pipe.hset(schedule.keys.schedule_messages, entry, f"{queue}\n{json.dumps({'n': n})}")
        pipe.execute()


def promote_until_empty(url: str, prefix: str, start, out) -> None:
    """One racing promoter (a separate process): promote in a tight loop, no lease, from the
    moment every racer has reached the ``start`` barrier."""
    client = redis.Redis.from_url(url)
    schedule = Schedule(client, prefix)
    start.wait(timeout=60)
    pushed = 0
    while True:
        done = schedule.promote(time.time(), limit=100, max_depth=10**9)
        pushed += done.pushed
        if done.next_due is None and done.pushed == 0:
            break
    out.put(pushed)
    client.close()


def test_two_promoters_racing_push_each_entry_exactly_once(redis_server, redis_client):
    prefix, queue = f"race-{secrets.token_hex(4)}", f"race-q-{secrets.token_hex(4)}"
    count = 20_000
    fill(redis_client, prefix, queue, count, due=time.time() - 1)
    spawn = multiprocessing.get_context("spawn")
    out = spawn.Queue()
    start = spawn.Barrier(2)
    racers = [
        spawn.Process(target=promote_until_empty, args=(redis_server.url, prefix, start, out))
        for _ in range(2)
    ]
    for racer in racers:
        racer.start()
    counts = [out.get(timeout=120) for _ in racers]
    for racer in racers:
        racer.join(timeout=30)
    pushed = [json.loads(m)["n"] for m in redis_client.lrange(queue, 0, -1)]
    assert sum(counts) == count == len(pushed) == len(set(pushed))
    assert min(counts) > 0, f"both promoters took part: {counts}"
    assert redis_client.zcard(f"{prefix}:schedule") == 0
    assert redis_client.hlen(f"{prefix}:schedule:messages") == 0
    redis_client.delete(queue)


def test_with_the_lease_only_one_of_two_promoters_works_and_the_other_takes_over(
    redis_client,
):
    prefix, queue = f"lease-{secrets.token_hex(4)}", f"lease-q-{secrets.token_hex(4)}"
    fill(redis_client, prefix, queue, 50, due=time.time() + 0.5)
    first = Promoter(redis_client, prefix, max_depth=1000, hostname="first", lease_s=1.5)
    second = Promoter(redis_client, prefix, max_depth=1000, hostname="second", lease_s=1.5)
    lease = f"{prefix}:schedule:lease"
    first.start()
    wait_until(
        lambda: redis_client.get(lease) == first.owner.encode(),
        what="the first promoter to hold the lease",
        seen=lambda: redis_client.get(lease),
    )
    second.start()
    try:
        wait_until(
            lambda: redis_client.llen(queue) >= 50,
            what="50 entries on the queue",
            seen=lambda: (redis_client.llen(queue), first.pushed, second.pushed),
        )
        assert (first.pushed, second.pushed) == (50, 0)
        first.stop()
        first.join(timeout=5)
        fill(redis_client, prefix, queue, 10, due=time.time())
        wait_until(
            lambda: second.pushed >= 10,
            what="the second promoter to push the 10 new entries",
            seen=lambda: second.pushed,
        )
        assert second.pushed == 10
    finally:
        first.stop()
        second.stop()
        second.join(timeout=5)
    assert redis_client.llen(queue) == 60
    redis_client.delete(queue)


def test_a_wait_shorter_than_a_millisecond_still_ends(redis_client):
    schedule = Schedule(redis_client, f"wake-{secrets.token_hex(4)}")
    started = time.monotonic()
    schedule.wait_for_wake(0.0004)
    assert time.monotonic() - started < 2.0


def test_waiting_entries_survive_a_redis_restart_and_are_pushed_once():
    with RedisServer(appendonly=True) as own:
        client = redis.Redis.from_url(own.url)
        try:
            log = StepLog(client, "aof")
            ledger = Ledger(client, prefix="aof", encode=log)
            for n in range(200):
                create_job(ledger, f"j{n}", REQUEST, token="t0")
                assert ledger.advance(
                    f"j{n}",
                    expect=ACTIVE_STATES,
                    token="t0",
                    new_token=f"t{n}",
                    event="e",
                    step=Step(TaskName.POLL, f"j{n}", f"t{n}", 1.0 + n / 1000),
                )
            before = client.zrange("aof:schedule", 0, -1, withscores=True)
            own.restart()
            client.connection_pool.disconnect()
            assert client.zrange("aof:schedule", 0, -1, withscores=True) == before
            schedule = Schedule(client, "aof")
            # Promoted as at the moment the last entry is due (promote takes the time).
            last_due = max(score for _, score in before)
            wait_until(
                lambda: schedule.promote(last_due).next_due is None,
                what="every waiting entry to be promoted",
                seen=schedule.size,
            )
            pushed = [json.loads(m) for m in client.lrange(log.queue, 0, -1)]
            assert sorted(m["token"] for m in pushed) == sorted(f"t{n}" for n in range(200))
        finally:
            client.close()


def test_the_promoter_carries_on_after_redis_restarts_under_it():
    with RedisServer(appendonly=True) as own:
        client = redis.Redis.from_url(own.url, socket_timeout=5)
        promoter = Promoter(client, "pr", max_depth=1000, hostname="h", lease_s=1.5)
        promoter.start()
        try:
            fill(client, "pr", "pr-q", 20, due=time.time() + 1.0)
            wait_until(  # the promoter is asleep on its wake list (flag b: blocked)
                lambda: any("b" in c["flags"] for c in client.client_list()),
                what="the promoter to block on its wake list",
                seen=lambda: [(c["cmd"], c["flags"]) for c in client.client_list()],
            )
            own.restart()
            wait_until(
                lambda: client.llen("pr-q") >= 20,
                what="the 20 entries on the queue after the restart",
                timeout_s=15,
                interval_s=0.1,
                seen=lambda: (client.llen("pr-q"), promoter.is_alive()),
            )
            assert promoter.is_alive() and client.llen("pr-q") == 20
        finally:
            promoter.stop()
            promoter.join(timeout=5)
            client.close()
