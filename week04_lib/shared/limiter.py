"""One RPM and TPM budget for every client on the same Redis and account.

The local ``RateLimiter``'s buckets, kept in Redis and changed only inside Lua scripts,
so a reservation is one atomic step whoever else is asking: the same token buckets
(``TokenBucket``: the level may go below zero, time pays it back), the same reservation
as of the time the request may go, the same deadline check (nothing is charged when
the wait would pass it), the same ``reconcile`` and the same 429 pause, seen by all.
Time is Redis's own clock, the one clock every machine shares.

Concurrency slots (``max_concurrency``) stay per process: a slot is held for a whole
call, and a process that dies holding one must not take it along.
"""

from __future__ import annotations

from typing import Any

from ..ratelimit import RateLimiter
from . import SharedState

__all__ = ["SharedRateLimiter"]

# Shared by the scripts: the clock, and a bucket's level as of a time (TokenBucket.level_at).
_BUCKET = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local function load(key, cap)
  local v = redis.call('HMGET', key, 'level', 'stamp')
  if v[1] then return tonumber(v[1]), tonumber(v[2]) end
  return cap, now
end
local function level_at(level, stamp, rate, cap, at)
  if at >= stamp then return math.min(cap, level + (at - stamp) * rate) end
  return level - (stamp - at) * rate
end
local function save(key, level, stamp, rate, cap)
  redis.call('HSET', key, 'level', string.format('%.17g', level), 'stamp', string.format('%.17g', stamp))
  -- gone once full again (plus a minute): an idle account leaves nothing behind
  redis.call('PEXPIRE', key, math.ceil(((cap - level) / rate + math.max(0, stamp - now) + 60) * 1000))
end
local function charge(key, rate, cap, amount, at)
  local level, stamp = load(key, cap)
  if at >= stamp then level, stamp = level_at(level, stamp, rate, cap, at) - amount, at
  else level = level - amount end
  save(key, level, stamp, rate, cap)
end
"""

# KEYS: requests bucket, tokens bucket, pause. ARGV: request rate, capacity, token rate,
# capacity (a rate of 0: no such limit), tokens, the longest wait allowed (< 0: any).
# Returns {granted 0/1, wait, the pause's end, now}: charged as of now + wait only when granted.
RESERVE = (
    _BUCKET
    + """
local tokens, max_wait = tonumber(ARGV[5]), tonumber(ARGV[6])
local paused_until = tonumber(redis.call('GET', KEYS[3]) or '0')
local wait = math.max(0, paused_until - now)
local limits = {{KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), 1},
                {KEYS[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tokens}}
for _, b in ipairs(limits) do
  if b[2] > 0 then
    local level, stamp = load(b[1], b[3])
    wait = math.max(wait, (math.min(b[4], b[3]) - level_at(level, stamp, b[2], b[3], now)) / b[2])
  end
end
local pause = {string.format('%.17g', paused_until), string.format('%.17g', now)}
if max_wait >= 0 and wait > max_wait then return {0, string.format('%.17g', wait), pause[1], pause[2]} end
for _, b in ipairs(limits) do
  if b[2] > 0 then charge(b[1], b[2], b[3], b[4], now + wait) end
end
return {1, string.format('%.17g', wait), pause[1], pause[2]}
"""
)

# KEYS: a bucket. ARGV: rate, capacity, amount (> 0: give back, capped; < 0: charge now).
ADJUST = (
    _BUCKET
    + """
local rate, cap, amount = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if amount < 0 then charge(KEYS[1], rate, cap, -amount, now) return 1 end
local level, stamp = load(KEYS[1], cap)
save(KEYS[1], math.min(cap, level + amount), stamp, rate, cap)
return 1
"""
)

# KEYS: pause, requests bucket, tokens bucket. ARGV: seconds (0: only look), then each
# bucket's rate and capacity. The time a pause adds moves every reservation later
# (TokenBucket.postpone). Returns {the pause's end, now}, on Redis's clock.
PAUSE = (
    _BUCKET
    + """
local seconds = tonumber(ARGV[1])
local until_ = tonumber(redis.call('GET', KEYS[1]) or '0')
local added = now + seconds - math.max(now, until_)
if seconds > 0 and added > 0 then
  until_ = now + seconds
  redis.call('SET', KEYS[1], string.format('%.17g', until_), 'PX', math.ceil(seconds * 1000) + 1000)
  for i = 2, 3 do
    local rate, cap = tonumber(ARGV[2 * i - 2]), tonumber(ARGV[2 * i - 1])
    if rate > 0 and redis.call('EXISTS', KEYS[i]) == 1 then
      local level, stamp = load(KEYS[i], cap)
      if now > stamp then level, stamp = level_at(level, stamp, rate, cap, now), now end
      save(KEYS[i], level, stamp + added, rate, cap)
    end
  end
end
return {string.format('%.17g', until_), string.format('%.17g', now)}
"""
)


class SharedRateLimiter(RateLimiter):
    """A ``RateLimiter`` whose RPM/TPM budget and 429 pause live in Redis. While Redis
    cannot be reached, this process falls back on its own buckets (the full budget each:
    several processes may then send more than the account allows, until Redis is back)."""

    def __init__(self, shared: SharedState, *limits: Any, **settings: Any) -> None:
        """``shared``, then ``RateLimiter``'s own arguments (rpm, tpm, max_concurrency, ...)."""
        super().__init__(*limits, **settings)
        self.shared = shared
        self._keys = [shared.key("limit", "requests"), shared.key("limit", "tokens"), shared.key("limit", "pause")]
        self._seen_pause = 0.0  # the latest shared pause's end (Redis time) adopted here
        self._shape = [
            (bucket.rate, bucket.capacity) if bucket else (0, 0) for bucket in (self._requests, self._tokens)
        ]

    def __repr__(self) -> str:
        return (
            f"SharedRateLimiter(rpm={self.rpm}, tpm={self.tpm}, max_concurrency={self.max_concurrency}, {self.shared})"
        )

    def _reserve(self, now: float, tokens: int, deadline: float | None) -> tuple[float, float]:
        max_wait = -1.0 if deadline is None else max(0.0, deadline - now)
        (rate_r, cap_r), (rate_t, cap_t) = self._shape
        args = [rate_r, cap_r, rate_t, cap_t, tokens, max_wait]
        answer = self.shared.call(RESERVE, self._keys, args, None)
        if answer is None:
            return super()._reserve(now, tokens, deadline)
        # a pause first heard of here is in this wait already: adopt it before the shift is read
        self._adopt_pause(float(answer[2]), float(answer[3]))
        wait = float(answer[1])
        if not int(answer[0]):
            self._check_deadline(now, wait, deadline, "the shared rate limit")
        return wait, self._pause_shift

    def _adjust(self, bucket: int, amount: float) -> bool:
        rate, capacity = self._shape[bucket]
        if not rate or amount == 0:
            return True
        args = [rate, capacity, amount]
        return (
            self.shared.run(lambda r: self.shared.script(ADJUST)(keys=[self._keys[bucket]], args=args), None)
            is not None
        )

    def _refund(self, tokens: int) -> None:
        if not (self._adjust(0, 1) and self._adjust(1, tokens)):
            super()._refund(tokens)

    def _adjust_tokens(self, difference: int) -> None:
        if not self._adjust(1, difference):
            super()._adjust_tokens(difference)

    def pause(self, seconds: float) -> None:
        super().pause(seconds)  # here too: it holds if Redis goes away
        self._shared_pause(max(0.0, seconds))

    def _pause_left(self, now: float) -> float:
        self._shared_pause(0.0)
        return super()._pause_left(now)

    def _shared_pause(self, seconds: float) -> None:
        """Extend the shared pause by ``seconds`` (0: only look), and adopt it."""
        (rate_r, cap_r), (rate_t, cap_t) = self._shape
        pause, requests, tokens = self._keys[2], self._keys[0], self._keys[1]
        found = self.shared.call(PAUSE, [pause, requests, tokens], [seconds, rate_r, cap_r, rate_t, cap_t], None)
        if found is not None:
            self._adopt_pause(float(found[0]), float(found[1]))

    def _adopt_pause(self, until: float, now: float) -> None:
        """A shared pause (its end and the time, on Redis's clock) another client set:
        adopted once, on this limiter's clock from then on (the one it sleeps on)."""
        if until > self._seen_pause:
            self._seen_pause = until
            super().pause(until - now)
