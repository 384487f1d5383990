"""Shared brakes on Vidgo calls, kept in Redis so that every worker on every host obeys them.

- *Cool-down*: a 429 seen by one worker makes every worker hold off Vidgo until it expires
  (its Retry-After, else ``rate_limit_cooldown_s``). A later, longer 429 extends it; a shorter
  one never shortens it.
- *Credits pause*: a 402 pauses every submit for ``credits_pause_s`` with the reason; jobs wait
  in QUEUED rather than failing one by one. The next submit after the pause probes again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import redis

from vidgo_stems.keys import Keys

# KEYS[1]: key. ARGV: milliseconds, value. Sets the key unless it already lives longer.
_EXTEND = """
local ttl = redis.call('PTTL', KEYS[1])
if ttl < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[1])
  return 1
end
return 0
"""


@dataclass(frozen=True)
class Hold:
    """An active brake: how long it still lasts and why."""

    remaining_s: float
    reason: str


class VidgoGate:
    """Reads and sets the cool-down and the credits pause."""

    def __init__(self, client: redis.Redis, *, prefix: str) -> None:
        self._redis = client
        keys = Keys(prefix)
        self._cooldown_key = keys.cooldown
        self._pause_key = keys.submit_pause
        self._balance_key = keys.balance
        self._extend = client.register_script(_EXTEND)

    def _hold(self, key: str) -> Hold | None:
        ttl_ms = cast(int | None, self._redis.pttl(key))  # one command when nothing holds
        if ttl_ms is None or ttl_ms <= 0:
            return None
        reason = self._redis.get(key)
        text = reason.decode() if isinstance(reason, bytes) else str(reason or "")
        return Hold(remaining_s=ttl_ms / 1000.0, reason=text)

    def record_balance(self, credits: int, *, at: float) -> None:
        """Remember the account's balance as just read (metrics and alerts show it)."""
        self._redis.hset(self._balance_key, mapping={"credits": credits, "at": at})

    def balance(self) -> tuple[int, float] | None:
        """The balance last read and when (epoch seconds), or None if never read."""
        raw = cast(list[Any], self._redis.hmget(self._balance_key, ["credits", "at"]))
        if raw[0] is None or raw[1] is None:
            return None
        return int(raw[0]), float(raw[1])

    def cooldown(self) -> Hold | None:
        """The active rate-limit cool-down, if any."""
        return self._hold(self._cooldown_key)

    def submit_pause(self) -> Hold | None:
        """The active credits pause, if any."""
        return self._hold(self._pause_key)

    def cool_down(self, seconds: float, reason: str) -> bool:
        """Make every worker hold off Vidgo for ``seconds`` (extends, never shortens)."""
        return bool(
            self._extend(keys=[self._cooldown_key], args=[max(1, int(seconds * 1000)), reason])
        )

    def pause_submits(self, seconds: float, reason: str) -> bool:
        """Pause every submit for ``seconds`` with a reason operators can read."""
        return bool(
            self._extend(keys=[self._pause_key], args=[max(1, int(seconds * 1000)), reason])
        )

    def resume_submits(self) -> None:
        """Lift a credits pause at once (after topping up)."""
        self._redis.delete(self._pause_key)
