"""One compare-and-set of a job, as ``lua/advance.lua`` takes it.

:meth:`vidgo_stems.pipeline.ledger.Ledger.advance` builds a :class:`Move` from its arguments, which
checks them (a move the state machine does not have, a field the job record does not have),
and sends what the move says as the script's ARGV::

    move = Move(expect=(JobState.QUEUED,), token="t0", to=JobState.SUBMITTING, event="submit")
    move.args(now=..., message="", retention_s=..., index_prefix="vidgo-stems:jobs:state:")
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vidgo_stems.errors import IllegalTransition
from vidgo_stems.files.stems import record_json
from vidgo_stems.pipeline.record import JobRecord
from vidgo_stems.pipeline.states import (
    SLOT_FREE_STATES,
    TERMINAL_STATES,
    TRANSITIONS,
    JobState,
    Step,
    state_list,
)

#: What a move may set: the fields of a job record (state and token are moved by the script).
JOB_FIELDS = frozenset(JobRecord.__dataclass_fields__) - {"job_id", "state", "token", "extra"}


@dataclass(frozen=True)
class Move:
    """Apply when the job is in one of ``expect`` and holds ``token`` (None: any token); go
    to ``to`` (None: stay), hold ``new_token`` (None: keep), set ``fields``, add ``incr``,
    record ``event`` with ``detail`` (an empty ``event``: no history entry), and send
    ``step`` in the same step."""

    expect: tuple[JobState, ...]
    token: str | None
    event: str
    to: JobState | None = None
    new_token: str | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)
    incr: Mapping[str, int] = field(default_factory=dict)
    detail: Mapping[str, Any] = field(default_factory=dict)
    unless_subscribed: bool = False
    step: Step | None = None

    def __post_init__(self) -> None:
        bad = [s for s in self.expect if self.to is not None and (s, self.to) not in TRANSITIONS]
        if bad and self.to is not None:
            raise IllegalTransition(f"no transition {bad[0].value} -> {self.to.value}")
        unknown = sorted((set(self.fields) | set(self.incr)) - JOB_FIELDS)
        if unknown:
            raise ValueError(f"not fields of a job record: {', '.join(unknown)}")

    @property
    def held_token(self) -> str:
        """The token the job holds once the move applied."""
        return self.new_token or self.token or ""

    def args(
        self, *, now: float, message: str, retention_s: int, index_prefix: str
    ) -> dict[str, Any]:
        """The script's named ARGV (``message``: the encoded ``step``, or "")."""
        to = self.to.value if self.to else ""
        entry = {"to": to or None, "at": now, "event": self.event, **self.detail}
        due = now + self.step.countdown_s if self.step is not None else 0
        return {
            "expect": state_list(self.expect),
            "token": self.token or "",
            "to": to,
            "new_token": self.new_token or "",
            "now": now,
            "entry": json.dumps(entry) if self.event else "",
            "ttl": retention_s,
            "terminal": state_list(TERMINAL_STATES),
            "slot_free": state_list(SLOT_FREE_STATES),
            "index_prefix": index_prefix,
            "unless_subscribed": "1" if self.unless_subscribed else "0",
            "due": repr(due),
            "message": message,
            "n_set": len(self.fields),
        }

    def rest(self) -> list[str]:
        """The field/value pairs to set, then the field/increment pairs."""
        sets = [(k, json.dumps(v, default=record_json)) for k, v in self.fields.items()]
        adds = [(k, str(int(v))) for k, v in self.incr.items()]
        return [part for pair in (*sets, *adds) for part in pair]
