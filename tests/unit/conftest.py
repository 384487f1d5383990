"""Unit fixtures: Redis is fakeredis (with Lua), named ``fake_redis`` so that it is never taken
for the real server of the integration suites (``redis_client``).

``fake_ledger`` is the ledger most unit tests use (prefix ``t``, its messages readable through
``step_log``); ``make_fake_ledger`` builds one with another prefix, clock or retention on the
same client. Jobs in a given state come from :mod:`tests.jobs`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import fakeredis
import pytest

from tests.steps import StepLog
from vidgo_stems.pipeline.ledger import Ledger

#: The key prefix of the unit tests' ledger.
PREFIX = "t"


@pytest.fixture
def fake_redis():
    """A fresh, empty fakeredis client that runs the ledger's Lua scripts."""
    client = fakeredis.FakeRedis()
    yield client
    client.close()


@pytest.fixture
def step_log(fake_redis) -> StepLog:
    """The messages ``fake_ledger`` sent (pushed or scheduled), in order."""
    return StepLog(fake_redis, PREFIX)


@pytest.fixture
def make_fake_ledger(fake_redis) -> Callable[..., Ledger]:
    """``make_fake_ledger(prefix=..., clock=..., retention_s=...)``: a Ledger on ``fake_redis``
    with the Ledger's own defaults, whose messages a ``StepLog`` of the same prefix reads
    back."""

    def make(*, prefix: str = PREFIX, **options: Any) -> Ledger:
        options.setdefault("encode", StepLog(fake_redis, prefix))
        return Ledger(fake_redis, prefix=prefix, **options)

    return make


@pytest.fixture
def fake_ledger(fake_redis, step_log) -> Ledger:
    """A Ledger on ``fake_redis`` under prefix ``t``, retention 100 s, sending into
    ``step_log``."""
    return Ledger(fake_redis, prefix=PREFIX, retention_s=100, encode=step_log)
