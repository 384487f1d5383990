"""Global limits on Vidgo, kept in Redis so every worker process on every host shares them.

- **Request rate**: a token bucket per kind of request, ``submit`` (paid) and ``query`` (detail,
  status, balance), each with its own rate and burst. A caller *reserves* a token: the bucket may
  go into debt, and the caller sleeps until its turn, so waiting callers are served in order and
  the bucket never allows more than ``burst + rate * T`` requests in any ``T`` seconds.
- **Adaptive rate**: a 429 halves the current rate of both buckets (never below
  ``rate_floor_ratio`` of the configured rate); it then recovers linearly, reaching the configured
  rate again ``rate_recovery_s`` after falling to the floor.
- **In-flight cap**: at most ``max_in_flight`` jobs hold a Vidgo task at once. A job takes a slot
  before its first submit and keeps it through resubmissions; the ledger frees it in the same
  Lua step that moves the job to DOWNLOADING or ends it, so a crash cannot leak a slot.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal, cast

import redis

from vidgo_stems.keys import Keys
from vidgo_stems.settings import Settings

Kind = Literal["submit", "query"]

# KEYS[1]: bucket hash, KEYS[2]: the shared 429 cool-down. ARGV: now, max rate, burst, floor
# rate, recovery per second, cost. Returns {seconds to wait for the token, seconds of cool-down
# left} as strings: during a cool-down no token is taken, and the caller must ask again.
_RESERVE = """
local hold = redis.call('PTTL', KEYS[2])
if hold > 0 then return {'0', tostring(hold / 1000)} end
local now = tonumber(ARGV[1])
local max_rate, burst = tonumber(ARGV[2]), tonumber(ARGV[3])
local floor, recover, cost = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local h = redis.call('HMGET', KEYS[1], 'tokens', 'ts', 'rate', 'rate_ts', 'expire_at')
local tokens = tonumber(h[1]) or burst
local ts = tonumber(h[2]) or now
local rate = tonumber(h[3]) or max_rate
local rate_ts = tonumber(h[4]) or ts
rate = math.min(max_rate, math.max(floor, rate + recover * math.max(0, now - rate_ts)))
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate) - cost
local wait = 0
if tokens < 0 then wait = -tokens / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now),
           'rate', tostring(rate), 'rate_ts', tostring(now))
-- The bucket expires a day after its last use; its expiry is pushed back twice a day.
if (tonumber(h[5]) or 0) < now then
  redis.call('EXPIRE', KEYS[1], 86400)
  redis.call('HSET', KEYS[1], 'expire_at', tostring(now + 43200))
end
return {tostring(wait), '0'}
"""

# KEYS: bucket hashes. ARGV: now, then floor rate and max rate per key (same order).
_PENALISE = """
for i, key in ipairs(KEYS) do
  local rate = tonumber(redis.call('HGET', key, 'rate')) or tonumber(ARGV[1 + 2 * i])
  local floor = tonumber(ARGV[2 * i])
  redis.call('HSET', key, 'rate', tostring(math.max(floor, rate / 2)), 'rate_ts', ARGV[1])
  redis.call('EXPIRE', key, 86400)
end
return 1
"""

# KEYS[1]: in-flight zset. ARGV: member, cap, now. 1 when the member holds a slot.
_TAKE_SLOT = """
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 1 end
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
  return 1
end
return 0
"""


def configured_rate(settings: Settings, kind: Kind) -> tuple[float, float]:
    """The configured (rate per second, burst) of one kind of request."""
    if kind == "submit":
        return settings.vidgo_submit_rate_per_s, settings.vidgo_submit_burst
    return settings.vidgo_query_rate_per_s, settings.vidgo_query_burst


class VidgoLimits:
    """The shared request-rate buckets and the in-flight cap."""

    def __init__(
        self,
        client: redis.Redis,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._redis = client
        self._settings = settings
        self._keys = Keys(settings.redis_key_prefix)
        self._clock = clock
        self._sleep = sleep
        self._reserve = client.register_script(_RESERVE)
        self._penalise = client.register_script(_PENALISE)
        self._take_slot = client.register_script(_TAKE_SLOT)
        self.in_flight_key = self._keys.in_flight

    def bucket_key(self, kind: Kind) -> str:
        return self._keys.rate_bucket(kind)

    def _rates(self, kind: Kind) -> tuple[float, float]:
        return configured_rate(self._settings, kind)

    def reserve(self, kind: Kind) -> float:
        """Take one token of ``kind``; returns how long to wait before sending (0: now).
        During a shared cool-down it takes none and returns minus the cool-down left."""
        rate, burst = self._rates(kind)
        floor = rate * self._settings.rate_floor_ratio
        recovery = (rate - floor) / self._settings.rate_recovery_s
        wait, hold = cast(
            list[bytes],
            self._reserve(
                keys=[self.bucket_key(kind), self._keys.cooldown],
                args=[self._clock(), rate, burst, floor, recovery, 1],
            ),
        )
        return -float(hold) if float(hold) > 0 else float(wait)

    def cooldown_left(self) -> float:
        """Seconds left of the shared 429 cool-down (0: none)."""
        ttl_ms = cast(int, self._redis.pttl(self._keys.cooldown))
        return ttl_ms / 1000 if ttl_ms > 0 else 0.0

    def throttle(self, kind: Kind) -> float:
        """Wait until a request of ``kind`` may go: no cool-down, and a token. The cool-down is
        checked in the step that takes the token and again after any wait for it, right before
        the request, so no worker sends inside another's cool-down. Returns the seconds waited.
        """
        waited = 0.0
        while True:
            wait = self.reserve(kind)
            if wait < 0:  # cooling down: no token taken, ask again after it
                self._sleep(-wait)
                waited -= wait
                continue
            if wait > 0:
                self._sleep(wait)
                waited += wait
                hold = self.cooldown_left()
                while hold > 0:  # a 429 elsewhere while this one waited for its turn
                    self._sleep(hold)
                    waited += hold
                    hold = self.cooldown_left()
            if waited:  # time a worker slot slept instead of working, for everyone to see
                self._redis.hincrby(self._keys.counters, f"{kind}_wait_ms", int(waited * 1000))
            return waited

    def penalise(self) -> None:
        """Vidgo said 429: halve the current rate of both kinds (it recovers by itself)."""
        kinds: tuple[Kind, Kind] = ("submit", "query")
        args: list[float] = [self._clock()]
        for kind in kinds:
            rate, _ = self._rates(kind)
            args.extend((rate * self._settings.rate_floor_ratio, rate))
        self._penalise(keys=[self.bucket_key(k) for k in kinds], args=args)

    def current_rate(self, kind: Kind) -> float:
        """The bucket's rate as last stored (the configured rate when untouched)."""
        raw = self._redis.hget(self.bucket_key(kind), "rate")
        return float(cast(bytes, raw)) if raw is not None else self._rates(kind)[0]

    def take_slot(self, member: str) -> bool:
        """Hold an in-flight slot for ``member`` (a job key); True if held (already or now)."""
        held = self._take_slot(
            keys=[self.in_flight_key],
            args=[member, self._settings.max_in_flight, self._clock()],
        )
        return bool(held)

    def in_flight(self) -> int:
        return cast(int, self._redis.zcard(self.in_flight_key))
