"""Jobs in a given state, for tests: create one and walk it there along the state machine.

The way to a state is found in the transitions table (a breadth-first search from where the job
is), never typed out per state, so these helpers follow the machine when it changes. They use
the ledger's public calls only: the creation call (in :func:`create_job`, the one place that
knows it), ``advance`` and ``get``.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from tests import steps
from vidgo_stems.models import JobRequest, parse_request
from vidgo_stems.pipeline.states import TRANSITIONS, JobState

REQUEST = parse_request({"audio_url": "https://cdn.example/a.mp3"})


class ManualClock:
    """A clock that stands still until a test moves it: ``clock.now += 30``."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def path_to(state: JobState, start: JobState = JobState.QUEUED) -> list[JobState]:
    """The states a job passes through from ``start`` to ``state`` (``start`` excluded), by the
    fewest legal moves that do not end the job on the way (a retry out of FAILED is no short
    cut); ties go to the state declared first."""
    if state is start:
        return []
    came_from: dict[JobState, JobState] = {start: start}
    frontier = deque([start])
    while frontier:
        here = frontier.popleft()
        for there in JobState:  # declaration order: the same path on every run
            if (here, there) in TRANSITIONS and there not in came_from:
                came_from[there] = here
                if there is state:
                    path = [there]
                    while came_from[path[-1]] is not start:
                        path.append(came_from[path[-1]])
                    return path[::-1]
                if not there.is_terminal:
                    frontier.append(there)
    raise ValueError(f"no way from {start.value} to {state.value} in the transitions table")


def create_job(
    ledger: Any,
    job_id: str = "j1",
    request: JobRequest = REQUEST,
    *,
    token: str = "t0",
    **subscription: Any,
) -> None:
    """Create a QUEUED job holding ``token`` (``webhook_url=``/``metadata=`` subscribe its
    creator). The only place these helpers create a job."""
    steps.create_job(ledger, job_id, request, token=token, **subscription)


def move_to(
    ledger: Any,
    job_id: str,
    state: JobState,
    *,
    new_token: str | None = None,
    fields: dict[str, Any] | None = None,
    event: str = "e",
) -> None:
    """Move an existing job from where it is to ``state`` along :func:`path_to`, with the token
    it holds. ``fields`` and ``new_token`` go with the last move; every move is recorded as
    ``event``. Raises AssertionError when the ledger refuses a move."""
    job = ledger.get(job_id)
    assert job is not None, f"job {job_id} is not in the ledger"
    here, token = job.state, job.token
    path = path_to(state, here)
    for n, there in enumerate(path):
        last = n == len(path) - 1
        moved = ledger.advance(
            job_id,
            expect=here,
            token=token,
            to=there,
            new_token=new_token if last else None,
            fields=fields if last else None,
            event=event,
        )
        assert moved, f"the ledger refused to move job {job_id} from {here.value} to {there.value}"
        here = there


def job_in(
    ledger: Any,
    state: JobState,
    job_id: str = "j1",
    request: JobRequest = REQUEST,
    *,
    token: str = "t0",
    new_token: str | None = None,
    fields: dict[str, Any] | None = None,
    event: str = "e",
    **subscription: Any,
) -> str:
    """Create ``job_id`` holding ``token`` and move it to ``state`` (see :func:`move_to`);
    returns the job id."""
    create_job(ledger, job_id, request, token=token, **subscription)
    if state is not JobState.QUEUED:
        move_to(ledger, job_id, state, new_token=new_token, fields=fields, event=event)
    return job_id
