"""The durable-write loop and the ledger's reading of a re-sent move, without a server: a
scripted stand-in for the Redis client plays the failover cases."""

from __future__ import annotations

from redis.exceptions import NoScriptError

from tests.jobs import create_job
from vidgo_stems.pipeline.durable import Durability
from vidgo_stems.pipeline.states import JobState, new_token


class Pipe:
    def __init__(self, client: Client) -> None:
        self.client = client

    def wait(self, replicas: int, timeout_ms: int) -> None:
        pass

    def hset(self, *args: object) -> None:
        pass

    def execute(self) -> list:
        step = self.client.steps.pop(0)
        if isinstance(step, BaseException):
            raise step
        return step


class Client:
    """Each pipeline.execute() answers the next scripted [result, acked] (or raises it)."""

    def __init__(self, steps: list, replicas: int = 1) -> None:
        self.steps = steps
        self.replicas = replicas

    def pipeline(self, transaction: bool = False) -> Pipe:
        return Pipe(self)

    def info(self, section: str) -> dict:
        return {"connected_slaves": self.replicas}


def durable(client: Client) -> Durability:
    return Durability(client, replicas=1, timeout_s=5, sleep=lambda s: None)  # type: ignore[arg-type]


def write(d: Durability, *, landed=lambda: True):
    return d.write(
        lambda pipe: None,
        applied=lambda r: bool(r[0]),
        landed=landed,
        touch="k",
        what="test write",
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
