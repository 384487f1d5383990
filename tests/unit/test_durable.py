"""The durable-write loop and the ledger's reading of a re-sent move, without a server: a
scripted stand-in for the Redis client plays the failover cases."""

from __future__ import annotations

import pytest
from redis.exceptions import NoScriptError

from tests.jobs import create_job
from vidgo_stems.pipeline.durable import Durability, Need, NotReplicated
from vidgo_stems.pipeline.states import JobState, new_token
from vidgo_stems.redisconn import NoReplicasError


class Clock:
    """The Durability's clock: it moves one second per pipeline run."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Pipe:
    def __init__(self, client: Client) -> None:
        self.client = client

    def wait(self, replicas: int, timeout_ms: int) -> None:
        pass

    def hset(self, *args: object) -> None:
        pass

    def execute(self) -> list:
        self.client.clock.now += 1.0  # a WAIT blocks up to a second
        step = self.client.steps.pop(0)
        if isinstance(step, BaseException):
            raise step
        return step


class Client:
    """Each pipeline.execute() answers the next scripted [result, acked] (or raises it)."""

    def __init__(self, steps: list, replicas: int = 1) -> None:
        self.steps = steps
        self.replicas = replicas
        self.clock = Clock()

    def pipeline(self, transaction: bool = False) -> Pipe:
        return Pipe(self)

    def info(self, section: str) -> dict:
        return {"connected_slaves": self.replicas}


def durable(client: Client) -> Durability:
    return Durability(client, replicas=1, timeout_s=5, clock=client.clock, sleep=lambda s: None)  # type: ignore[arg-type]


def write(d: Durability, *, landed=lambda: True, need: Need = Need.WAIT):
    return d.write(
        lambda pipe: None,
        applied=lambda r: bool(r[0]),
        landed=landed,
        probe=lambda pipe: None,
        holds=lambda seen: seen != "gone",
        touch="k",
        what="test write",
        need=need,
    )


def test_a_write_acknowledged_by_a_replica_returns_at_once():
    client = Client([[[1, "QUEUED"], 1]])
    assert write(durable(client)) == [1, "QUEUED"] and client.steps == []


def test_a_script_cache_emptied_by_a_failover_is_loaded_again_not_raised():
    client = Client([NoScriptError("NOSCRIPT"), [[1, "QUEUED"], 1]])
    assert write(durable(client)) == [1, "QUEUED"]


def test_a_write_lost_in_a_failover_is_written_again_and_a_refused_rewrite_is_reported():
    lost = iter([False, False])
    client = Client([[[1, "QUEUED"], 0], [[1, "QUEUED"], 1]])
    assert write(durable(client), landed=lambda: next(lost)) == [1, "QUEUED"]
    client = Client([[[1, "QUEUED"], 0], [[0, "CANCELLED"], 0]])
    assert write(durable(client), landed=lambda: False) == [0, "CANCELLED"]


def test_a_refused_write_that_an_earlier_send_applied_is_still_waited_for():
    client = Client([[[0, "SUBMITTED"], 0], [None, 1]])
    assert write(durable(client), landed=lambda: True) == [0, "SUBMITTED"]
    assert client.steps == []  # it waited (a second WAIT) instead of returning at once


def test_with_no_replica_connected_the_write_goes_on_without_waiting():
    client = Client([[[1, "QUEUED"], 0]], replicas=0)
    assert write(durable(client)) == [1, "QUEUED"]


def test_the_move_before_paying_is_refused_on_a_primary_without_replicas():
    """A primary cut off from its replicas (a zombie) can never start a paid submit."""
    client = Client([[[1, "SUBMITTING"], 0]], replicas=0)
    with pytest.raises(NotReplicated, match="fewer than 1 replica"):
        write(durable(client), need=Need.CONFIRM)


def test_the_move_before_paying_is_refused_when_no_replica_confirms_in_time():
    client = Client([[[1, "SUBMITTING"], 0]] + [[None, 0]] * 10)
    with pytest.raises(NotReplicated, match=r"not confirmed on 1 replica.*within 5s"):
        write(durable(client), need=Need.CONFIRM)


def test_the_move_before_paying_is_refused_on_noreplicas_after_the_client_retries():
    client = Client([NoReplicasError("Not enough good replicas to write.")])
    with pytest.raises(NotReplicated, match="refused by the primary"):
        write(durable(client), need=Need.CONFIRM)
    client = Client([NoReplicasError("Not enough good replicas to write.")])
    with pytest.raises(NoReplicasError):  # any other write: left to the stage's retry
        write(durable(client))


def test_the_move_before_paying_goes_on_once_a_replica_confirms():
    client = Client([[[1, "SUBMITTING"], 0], [None, 0], [None, 1]])
    assert write(durable(client), need=Need.CONFIRM) == [1, "SUBMITTING"]


def test_a_paid_record_on_a_primary_without_replicas_waits_and_is_rewritten_after_demotion():
    """The zombie primary holds the record but has no replica: the write is not given up on
    at once; when the client next finds it gone (the zombie was demoted and the client
    moved to the new primary), it is written there, and confirmed."""
    where = iter([True, True, False])
    client = Client([[[1, "SUBMITTED"], 0], [None, 0], [[1, "SUBMITTED"], 1]], replicas=0)
    assert write(durable(client), landed=lambda: next(where), need=Need.KEEP) == [1, "SUBMITTED"]
    assert client.steps == []


def test_a_move_re_sent_after_its_reply_was_lost_counts_as_applied(fake_ledger):
    ledger = fake_ledger
    create_job(ledger, "j1", token="t0")
    token = new_token()
    move = {
        "expect": JobState.QUEUED,
        "token": "t0",
        "to": JobState.SUBMITTING,
        "new_token": token,
        "event": "submitting",
    }
    assert ledger.advance("j1", **move)
    assert ledger.advance("j1", **move)  # the client's retry of the same move
    other = {**move, "new_token": new_token()}
    assert not ledger.advance("j1", **other)  # anyone else's is still refused


def test_a_confirmation_from_a_primary_that_lacks_the_write_does_not_count():
    """The client moved to a new primary between the look and the touch: the WAIT there
    confirms the touch, not the write, which is then written again."""
    landed = iter([True, False])
    client = Client([[[1, "SUBMITTED"], 0], ["gone", 1], [[1, "SUBMITTED"], 1]], replicas=1)
    result = write(durable(client), landed=lambda: next(landed), need=Need.KEEP)
    assert result == [1, "SUBMITTED"] and client.steps == []  # it wrote it again
