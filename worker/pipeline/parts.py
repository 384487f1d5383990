"""Post-processing in parts: one step per stem and one for the source track, run in parallel
on any worker process of any host, and one join when the last part is done.

The ledger drives it like every other step. A job enters POSTPROCESSING with a step token;
its ``vidgo.postprocess`` message fans out (``lua/fanout.lua``): one ``vidgo.postprocess_stem``
message per part not yet done, all carrying that token, sent once per token. Each part step
does its work, stores what it made, and records its result (``lua/part_done.lua``): once per
part, and only while the job still holds the token. The part that completes the set hands the
job to its join in the same script (a fresh token and the join's ``vidgo.postprocess``
message), so the join runs exactly once however the parts race; a part's late duplicate then
holds a stale token and does nothing. No Celery chord, no polling for siblings.

The recovery sweep needs nothing new: a job stuck in POSTPROCESSING is kicked like any other
(a fresh token, its ``vidgo.postprocess`` message), which sends again only the parts still
missing, or joins when none are.

Results live in a hash beside the job (``<prefix>:job:<id>:parts``), cleared when the job
(re-)enters post-processing and when it is done::

    parts = Parts(ledger)
    parts.fan_out(job_id, token, steps)        # FanOut(sent=["bass", ...]) or joined / stale
    parts.record(job_id, token, "bass", {...}, count=7, worker="w1@host")   # PartOutcome
    parts.results(job_id)                      # {"bass": {...}, "source": {...}}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, cast

from vidgo_stems.keys import text
from vidgo_stems.pipeline.ledger import Ledger
from vidgo_stems.pipeline.scripts import FANOUT, PART_DONE
from vidgo_stems.pipeline.states import JobState, Step, TaskName, new_token

#: The part that fetches and analyses the source track (every other part is a stem).
SOURCE = "source"


class PartOutcome(StrEnum):
    STALE = "stale"  # the job moved on, or holds another token
    RECORDED = "recorded"
    JOINED = "joined"  # the last part: the join was sent
    DUPLICATE = "duplicate"  # recorded already (a duplicate delivery)


@dataclass(frozen=True)
class FanOut:
    """What fanning out did: ``stale`` (the token is not current), ``join`` (every part is
    done: the caller joins now), or the parts whose step was sent now (none when a duplicate
    of the message sent them already)."""

    stale: bool = False
    join: bool = False
    sent: list[str] = field(default_factory=list)


_OUTCOMES = {
    0: PartOutcome.STALE,
    1: PartOutcome.RECORDED,
    2: PartOutcome.JOINED,
    3: PartOutcome.DUPLICATE,
}


class Parts:
    """The parts of jobs in post-processing, beside the ledger."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._redis = ledger.redis
        self._fanout = FANOUT.bind(ledger.redis)
        self._done = PART_DONE.bind(ledger.redis)

    def fan_out(self, job_id: str, token: str, parts: list[str]) -> FanOut:
        """Send the step of each of ``parts`` not done yet (once per token)."""
        messages: list[str] = []
        queue = ""
        for part in parts:
            queue, message = self.ledger.encode(
                Step(TaskName.POSTPROCESS_STEM, job_id, token, part=part)
            )
            messages += [part, message]
        reply = self._fanout(
            keys={"job": self.ledger.keys.job(job_id), "parts": self._key(job_id), "queue": queue},
            args={
                "token": token,
                "state": JobState.POSTPROCESSING.value,
                "fanned": json.dumps(token),
            },
            rest=messages,
        )
        status = int(reply[0])
        return FanOut(stale=status == 0, join=status == 2, sent=[text(p) for p in reply[1:]])

    def record(
        self,
        job_id: str,
        token: str,
        part: str,
        result: Mapping[str, Any],
        *,
        count: int,
        worker: str,
        started_at: float | None = None,
    ) -> PartOutcome:
        """Record ``part``'s result, once, while the job holds ``token``; the last of
        ``count`` parts sends the join. The history entry names the worker and when the part
        started, so which host did what, and in parallel with what, can be read back."""
        now = self.ledger.clock()
        join = Step(TaskName.POSTPROCESS, job_id, new_token())
        queue, message = self.ledger.encode(join)
        state = JobState.POSTPROCESSING.value
        entry = {
            "from": state,
            "to": None,
            "at": now,
            "event": "part_done",
            "part": part,
            "worker": worker,
            "started_at": started_at,
        }
        keys = self.ledger.keys
        reply = self._done(
            keys={
                "job": keys.job(job_id),
                "parts": self._key(job_id),
                "history": keys.history(job_id),
                "active": keys.active,
                "queue": queue,
            },
            args={
                "token": token,
                "state": state,
                "part": part,
                "result": json.dumps(result),
                "count": count,
                "new_token": join.token,
                "message": message,
                "now": now,
                "entry": json.dumps(entry),
            },
        )
        return _OUTCOMES[int(reply)]

    def is_done(self, job_id: str, part: str) -> bool:
        return bool(self._redis.hexists(self._key(job_id), part))

    def results(self, job_id: str) -> dict[str, dict[str, Any]]:
        raw = cast(Mapping[Any, Any], self._redis.hgetall(self._key(job_id)))
        return {text(k): json.loads(v) for k, v in raw.items()}

    def reset(self, job_id: str) -> None:
        """Forget every part's result (the job enters post-processing again, or is done)."""
        self._redis.delete(self._key(job_id))

    def _key(self, job_id: str) -> str:
        return self.ledger.keys.parts(job_id)
