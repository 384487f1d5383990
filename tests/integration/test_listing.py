"""Listing jobs by state, by batch and by time against a real Redis: pages walk the ledger's
indexes, and every job is listed exactly once."""

from __future__ import annotations

import itertools
import secrets

import pytest

from tests.steps import create_job
from vidgo_stems.batch.store import BatchStore
from vidgo_stems.errors import InvalidRequest
from vidgo_stems.models import parse_request
from vidgo_stems.pipeline.ledger import Ledger
from vidgo_stems.pipeline.listing import list_jobs
from vidgo_stems.pipeline.states import JobState

pytestmark = pytest.mark.integration


class Clock:
    def __init__(self, start: float, step: float) -> None:
        self.now, self.step = start, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


@pytest.fixture
def ledger(redis_client):
    prefix = f"list-{secrets.token_hex(4)}"
    yield Ledger(redis_client, prefix=prefix, clock=Clock(1_000_000.0, 0.001))
    for key in redis_client.scan_iter(f"{prefix}:*"):
        redis_client.delete(key)


def make_jobs(ledger: Ledger, n: int, tag: str) -> list[str]:
    ids = []
    for i in range(n):
        request = parse_request({"audio_url": f"https://cdn.example.com/{tag}/{i}.mp3"})
        job_id = request.fingerprint()
        create_job(ledger, job_id, request, token="t")
        ids.append(job_id)
    return ids


def every_page(ledger: Ledger, **filters) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        page = list_jobs(ledger, cursor=cursor, **filters)
        pages.append([job.job_id for job in page.jobs])
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor


def test_listing_by_state_and_by_batch_pages_through_1000_jobs_exactly_once(ledger):
    ids = make_jobs(ledger, 1000, "a")
    failed = ids[::3]
    for job_id in failed:
        ledger.advance(job_id, expect=JobState.QUEUED, token="t", to=JobState.FAILED, event="e")
    batch = BatchStore(ledger, "b1")
    in_batch = ids[100:700]
    for start in range(0, len(in_batch), 64):
        batch.add_jobs(in_batch[start : start + 64])

    pages = every_page(ledger, state=JobState.FAILED, limit=37)
    listed = list(itertools.chain.from_iterable(pages))
    assert listed == failed  # oldest first, each once
    assert all(len(p) == 37 for p in pages[:-1])

    queued = list(
        itertools.chain.from_iterable(every_page(ledger, state=JobState.QUEUED, limit=50))
    )
    assert sorted(queued) == sorted(set(ids) - set(failed)) and len(queued) == len(set(queued))

    by_batch = list(itertools.chain.from_iterable(every_page(ledger, batch="b1", limit=41)))
    assert sorted(by_batch) == sorted(in_batch) and len(by_batch) == 600
    failed_in_batch = every_page(ledger, batch="b1", state=JobState.FAILED, limit=29)
    assert sorted(itertools.chain.from_iterable(failed_in_batch)) == sorted(
        set(in_batch) & set(failed)
    )
    everything = list(itertools.chain.from_iterable(every_page(ledger, limit=333)))
    assert everything == ids


def test_jobs_created_at_the_same_instant_are_still_listed_once(redis_client):
    prefix = f"list-ties-{secrets.token_hex(4)}"
    ledger = Ledger(redis_client, prefix=prefix, clock=lambda: 42.0)
    try:
        ids = make_jobs(ledger, 450, "ties")
        listed = list(itertools.chain.from_iterable(every_page(ledger, limit=7)))
        assert sorted(listed) == sorted(ids) and len(listed) == 450
    finally:
        for key in redis_client.scan_iter(f"{prefix}:*"):
            redis_client.delete(key)


def test_since_lists_only_jobs_created_from_then_on(ledger):
    ids = make_jobs(ledger, 20, "s")
    cutoff = ledger.get(ids[12]).created_at
    page = list_jobs(ledger, since=cutoff, limit=100)
    assert [job.job_id for job in page.jobs] == ids[12:] and page.next_cursor is None


def test_a_job_moving_state_between_pages_is_not_listed_twice(ledger):
    ids = make_jobs(ledger, 10, "m")
    first = list_jobs(ledger, state=JobState.QUEUED, limit=4)
    ledger.advance(ids[1], expect=JobState.QUEUED, token="t", to=JobState.FAILED, event="e")
    ledger.advance(ids[8], expect=JobState.QUEUED, token="t", to=JobState.FAILED, event="e")
    rest = list_jobs(ledger, state=JobState.QUEUED, cursor=first.next_cursor, limit=100)
    assert [j.job_id for j in first.jobs] == ids[:4]
    assert [j.job_id for j in rest.jobs] == [i for i in ids[4:] if i != ids[8]]


@pytest.mark.parametrize(("cursor", "limit"), [("not-a-cursor!", 10), (None, 0), (None, 5000)])
def test_bad_cursors_and_limits_say_what_to_pass(ledger, cursor, limit):
    with pytest.raises(InvalidRequest, match=r"cursor|limit"):
        list_jobs(ledger, cursor=cursor, limit=limit)
