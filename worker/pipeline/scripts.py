"""The Lua scripts of the ledger and the schedule, each described once.

A script reads its KEYS and ARGV by position; the positions are written down in the script's
own header, one line each, and nowhere else by hand. A :class:`LuaSpec` names them in that
order, and a call names every key and argument, so a call site never counts positions::

    -- KEYS[1] job: the job hash                        (the header of lua/annotate.lua)
    -- ARGV[1..] pairs: field/value pairs to set

    ANNOTATE = LuaSpec("annotate", keys=("job",), rest="pairs")
    annotate = ANNOTATE.bind(client)
    annotate(keys={"job": "<prefix>:job:j1"}, rest=["webhook_status", '"sent"'])

A missing or unknown name is a TypeError before anything is sent. ``tests/unit/test_scripts.py``
reads each header and checks it against the spec, so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import redis


@dataclass(frozen=True)
class LuaSpec:
    """One script under ``lua/``: its KEYS and ARGV by name, in the order its header lists them,
    and the name of the variable tail of ARGV (field/value pairs), if it takes one."""

    name: str
    keys: tuple[str, ...]
    args: tuple[str, ...] = ()
    rest: str | None = None

    def source(self) -> str:
        return (
            resources.files("vidgo_stems.pipeline").joinpath("lua", f"{self.name}.lua").read_text()
        )

    def bind(self, client: redis.Redis) -> BoundScript:
        """Register the script with ``client`` (EVALSHA, loaded again after a script flush)."""
        return BoundScript(self, client.register_script(self.source()))


class BoundScript:
    """A :class:`LuaSpec` registered with one client, called by names."""

    def __init__(self, spec: LuaSpec, script: Any) -> None:
        self.spec = spec
        self._script = script

    def __call__(
        self,
        *,
        keys: Mapping[str, str],
        args: Mapping[str, Any] | None = None,
        rest: Sequence[Any] = (),
        client: Any = None,
    ) -> Any:
        """Run the script (on ``client`` when given: another connection or a pipeline)."""
        values = args or {}
        _check(self.spec.name, "KEYS", self.spec.keys, keys)
        _check(self.spec.name, "ARGV", self.spec.args, values)
        if rest and self.spec.rest is None:
            raise TypeError(f"{self.spec.name}.lua takes no further ARGV")
        return self._script(
            keys=[keys[name] for name in self.spec.keys],
            args=[*(values[name] for name in self.spec.args), *rest],
            client=client,
        )


def _check(script: str, kind: str, names: tuple[str, ...], given: Mapping[str, Any]) -> None:
    missing = [n for n in names if n not in given]
    unknown = [n for n in given if n not in names]
    if missing or unknown:
        raise TypeError(f"{script}.lua {kind}: missing {missing}, unknown {unknown}")


ADVANCE = LuaSpec(
    "advance",
    keys=(
        "job",
        "history",
        "active",
        "webhooks_due",
        "in_flight",
        "ended",
        "subscriptions",
        "hooks",
        "schedule",
        "schedule_messages",
        "schedule_wake",
        "queue",
    ),
    args=(
        "expect",
        "token",
        "to",
        "new_token",
        "now",
        "entry",
        "ttl",
        "terminal",
        "slot_free",
        "index_prefix",
        "unless_subscribed",
        "due",
        "message",
        "n_set",
    ),
    rest="pairs",
)
CREATE = LuaSpec(
    "create",
    keys=(
        "job",
        "history",
        "active",
        "state_index",
        "created",
        "subscriptions",
        "hooks",
        "webhooks_due",
        "queue",
    ),
    args=(
        "now",
        "entry",
        "state",
        "sub_id",
        "subscription",
        "has_webhook",
        "max_subscribers",
        "refused",
        "message",
        "same_as",
    ),
    rest="fields",
)
ANNOTATE = LuaSpec("annotate", keys=("job",), rest="pairs")
PROMOTE = LuaSpec(
    "promote", keys=("schedule", "schedule_messages"), args=("now", "limit", "max_depth")
)
LEASE = LuaSpec("lease", keys=("lease",), args=("owner", "ms"))

FANOUT = LuaSpec(
    "fanout", keys=("job", "parts", "queue"), args=("token", "state", "fanned"), rest="messages"
)
PART_DONE = LuaSpec(
    "part_done",
    keys=("job", "parts", "history", "active", "queue"),
    args=("token", "state", "part", "result", "count", "new_token", "message", "now", "entry"),
)

ALL = (ADVANCE, CREATE, ANNOTATE, PROMOTE, LEASE, FANOUT, PART_DONE)
