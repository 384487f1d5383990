"""The job state machine in one table: every state, the task that moves a job on from it, and
what the rest of the system needs to know about it.

The ledger's Lua scripts, the recovery sweep, the API's stage names, the stages' own guards and
the Celery task names all read this module; none of them names a state on its own.

::

    QUEUED ─► SUBMITTING ─► SUBMITTED ─► RUNNING ─► DOWNLOADING ⇄ POSTPROCESSING ─► DONE
      ▲           │             │           │
      └───────────┴─────────────┴───────────┘  (submit again later: paused, resubmit)
    (POSTPROCESSING goes back to DOWNLOADING when a stored stem is missing or changed;
     a retry moves FAILED or CANCELLED back to the first step that still needs doing)
    any active state ─► FAILED | CANCELLED      any active state ─► itself (a hand-off)
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from enum import StrEnum


class JobState(StrEnum):
    QUEUED = "QUEUED"
    SUBMITTING = "SUBMITTING"
    SUBMITTED = "SUBMITTED"
    RUNNING = "RUNNING"
    DOWNLOADING = "DOWNLOADING"
    POSTPROCESSING = "POSTPROCESSING"
    DONE = "DONE"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return STATES[self].terminal

    @property
    def info(self) -> StateInfo:
        return STATES[self]


class TaskName(StrEnum):
    """The stable Celery task names: a wire format, never renamed."""

    ENQUEUE = "vidgo.enqueue"
    SUBMIT = "vidgo.submit"
    POLL = "vidgo.poll"
    DOWNLOAD = "vidgo.download"
    POSTPROCESS = "vidgo.postprocess"
    POSTPROCESS_STEM = "vidgo.postprocess_stem"
    WEBHOOK = "vidgo.webhook"
    PURGE = "vidgo.purge"


@dataclass(frozen=True)
class StateInfo:
    """What one state means to the rest of the system."""

    #: The task whose message moves a job on from this state (None: the job has ended).
    task: TaskName | None
    #: The stage name callers see in a job view.
    stage: str
    #: A message for the job may be running (or waiting on a brake) for up to the task time
    #: limit, so the recovery sweep allows that much more before it calls the job lost.
    working: bool
    #: A job in this state may hold one of the global Vidgo in-flight slots; moving to a state
    #: that holds none releases it in the same ledger step.
    holds_slot: bool
    terminal: bool = False


S = JobState
STATES: dict[JobState, StateInfo] = {
    S.QUEUED: StateInfo(TaskName.SUBMIT, "submit", working=True, holds_slot=True),
    S.SUBMITTING: StateInfo(TaskName.SUBMIT, "submit", working=True, holds_slot=True),
    S.SUBMITTED: StateInfo(TaskName.POLL, "poll", working=False, holds_slot=True),
    S.RUNNING: StateInfo(TaskName.POLL, "poll", working=False, holds_slot=True),
    S.DOWNLOADING: StateInfo(TaskName.DOWNLOAD, "download", working=True, holds_slot=False),
    S.POSTPROCESSING: StateInfo(
        TaskName.POSTPROCESS, "postprocess", working=True, holds_slot=False
    ),
    S.DONE: StateInfo(None, "done", working=False, holds_slot=False, terminal=True),
    S.FAILED: StateInfo(None, "failed", working=False, holds_slot=False, terminal=True),
    S.CANCELLED: StateInfo(None, "cancelled", working=False, holds_slot=False, terminal=True),
}

ACTIVE_STATES = frozenset(s for s in JobState if not STATES[s].terminal)
TERMINAL_STATES = frozenset(s for s in JobState if STATES[s].terminal)
#: States a job leaves its in-flight slot behind in.
SLOT_FREE_STATES = frozenset(s for s in JobState if not STATES[s].holds_slot)

#: Every legal move.
TRANSITIONS: frozenset[tuple[JobState, JobState]] = frozenset(
    {
        (S.QUEUED, S.SUBMITTING),
        (S.SUBMITTING, S.QUEUED),  # the submit never left, or submits are paused: try later
        (S.SUBMITTING, S.SUBMITTED),
        (S.SUBMITTED, S.RUNNING),
        (S.SUBMITTED, S.DOWNLOADING),
        (S.RUNNING, S.DOWNLOADING),
        (S.SUBMITTED, S.QUEUED),  # resubmit a failed or stalled Vidgo task
        (S.RUNNING, S.QUEUED),
        (S.DOWNLOADING, S.POSTPROCESSING),
        (S.POSTPROCESSING, S.DOWNLOADING),  # a stored stem went missing: fetch it again
        (S.POSTPROCESSING, S.DONE),
        # A self-move hands the baton on: a poll re-queueing, a deferral, the recovery sweep.
        *((s, s) for s in ACTIVE_STATES),
        *((s, S.FAILED) for s in ACTIVE_STATES),
        *((s, S.CANCELLED) for s in ACTIVE_STATES),
        # A caller retries an ended job from the first step that still needs doing.
        *(
            (ended, to)
            for ended in (S.FAILED, S.CANCELLED)
            for to in (S.QUEUED, S.SUBMITTED, S.DOWNLOADING, S.POSTPROCESSING)
        ),
    }
)


#: The states in which a job waits on Vidgo and is polled.
POLLING_STATES = (JobState.SUBMITTED, JobState.RUNNING)


def states_of(task: TaskName) -> tuple[JobState, ...]:
    """The states in which a message of ``task`` may act."""
    return tuple(s for s in JobState if STATES[s].task is task)


def state_list(states: frozenset[JobState] | tuple[JobState, ...]) -> str:
    """States as the ``,A,B,`` string the Lua scripts search."""
    return "," + ",".join(sorted(s.value for s in states)) + ","


def new_token() -> str:
    """A fresh step token: the baton a message must hold for its stage to act."""
    return secrets.token_urlsafe(12)


@dataclass(frozen=True)
class Step:
    """The next message to send: task, job, the token it carries, when it is due, how many
    times this stage was retried before (Celery's ``retries``), and the part of the job it
    works on (post-processing's stem steps)."""

    task: TaskName
    job_id: str
    token: str
    countdown_s: float = 0.0
    retries: int = 0
    part: str | None = None
