"""Client-side rate limiting: requests per minute, tokens per minute, concurrency.

Taught in notebook 03, sections 3.2 to 3.4. Providers enforce RPM and TPM as token
buckets refilled continuously ("60 RPM" behaves like one request a second), so the
client meters itself the same way and never sends what the server would refuse:

- every ``acquire`` *reserves* its request and its estimated tokens, then sleeps until
  the reservation is due (first come, first served; no thundering herd);
- a wait that would pass the caller's deadline fails at once (``ClientRateLimited``);
- a 429 pauses the whole limiter for the ``Retry-After`` time, every thread included;
- concurrency slots go strictly in order of arrival (``FifoSlots``): a thread that
  releases a slot and asks again queues behind the threads already waiting;
- the real ``usage`` is reconciled afterwards, and ``x-ratelimit-*`` headers followed.

Thread-safe; ``clock`` and ``sleep`` are injectable for virtual-time tests.
"""

from __future__ import annotations

import math
import numbers
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from . import errors

__all__ = ["FifoSlots", "Permit", "RateLimiter", "TokenBucket", "estimate_tokens", "parse_duration"]


def estimate_prompt_tokens(messages: Any) -> int:
    """About four characters a token, plus a few per message (as OpenAI counts)."""
    if not isinstance(messages, list):
        return 0
    text = sum(len(str(m.get("content", ""))) if isinstance(m, dict) else 0 for m in messages)
    return 3 + 4 * len(messages) + math.ceil(text / 4)


def estimate_tokens(messages: Any, max_tokens: int | None = None) -> int:
    """What a request may cost before it is sent: the prompt plus ``max_tokens``
    (providers count ``max_tokens`` against TPM up front, as this does)."""
    return estimate_prompt_tokens(messages) + (max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else 0)


class TokenBucket:
    """``rate`` units a second, holding at most ``capacity``. Not locked: owners lock.

    ``take(amount, at=t)`` charges the bucket as of time ``t``, which may be in the
    future: that is a reservation. The level may go below zero; time pays it back.
    """

    def __init__(self, rate: float, capacity: float, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or capacity < 0:
            raise ValueError(f"need rate > 0 and capacity >= 0, got rate={rate}, capacity={capacity}")
        self.rate, self.capacity, self.clock = rate, capacity, clock
        self.level = capacity
        self._stamp = clock()  # the time ``level`` is as of (the latest charge may be ahead of now)

    @classmethod
    def per_minute(cls, limit: float, burst_s: float, clock: Callable[[], float] = time.monotonic) -> TokenBucket:
        return cls(limit / 60.0, limit / 60.0 * burst_s, clock)

    def level_at(self, t: float) -> float:
        """The level at time ``t``: refilled (up to capacity) after the last charge,
        or that charge's level less what time had not yet paid back before it."""
        if t >= self._stamp:
            return min(self.capacity, self.level + (t - self._stamp) * self.rate)
        return self.level - (self._stamp - t) * self.rate

    def wait_for(self, amount: float, at: float | None = None) -> float:
        """Seconds after ``at`` (default now) until ``amount`` may go; a request larger
        than the bucket waits until the bucket is full."""
        at = self.clock() if at is None else at
        return max(0.0, (min(amount, self.capacity) - self.level_at(at)) / self.rate)

    def take(self, amount: float, at: float | None = None) -> None:
        at = self.clock() if at is None else at
        if at >= self._stamp:
            self.level, self._stamp = self.level_at(at) - amount, at
        else:  # behind the latest reservation: charge it on top of that one
            self.level -= amount

    def postpone(self, seconds: float, at: float | None = None) -> None:
        """Move every reservation ``seconds`` later (a pause from ``at``, default now):
        the queue goes on after it at the same pace, instead of all at once."""
        at = self.clock() if at is None else at
        if at > self._stamp:
            self.level, self._stamp = self.level_at(at), at
        self._stamp += seconds

    def give_back(self, amount: float) -> None:
        self.level = min(self.capacity, self.level + amount)

    def reset_s(self) -> float:
        """Seconds until the bucket is full again."""
        return max(0.0, (self.capacity - self.level_at(self.clock())) / self.rate)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def parse_duration(text: str) -> float | None:
    """OpenAI's reset format: ``"1s"``, ``"6m0s"``, ``"20ms"``, ``"1h2m3.5s"``, or bare
    seconds. None when it cannot be read."""
    text = str(text).strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    return sum(float(n) * scale[u] for n, u in parts)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_whole(value: Any, least: int) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= least


class FifoSlots:
    """``size`` concurrency slots, granted first come, first served.

    A semaphore lets whoever asks when a slot is free take it, so a thread that releases
    and asks again at once keeps winning against threads woken too late (issue 11: one
    thread waited 10 s while another finished three calls). Here every caller that
    cannot have a slot at once joins a queue, and a slot goes only to the head of the
    queue; a newcomer finding others queued waits behind them even if a slot is free.

    ``acquire`` gives up at ``deadline`` (on ``clock``, the owner's clock) and leaves
    the queue. The time left is read on ``clock`` at the call and then waited for on
    the real monotonic clock: a wait for another thread's release is real, and a virtual
    clock that never moves must not keep it waiting for ever.
    """

    def __init__(self, size: int, clock: Callable[[], float] = time.monotonic) -> None:
        if not _is_whole(size, 1):
            raise ValueError(f"need a whole number of slots >= 1, got {size!r}")
        self.size, self.clock = int(size), clock
        self._lock = threading.Lock()
        self._in_use = 0
        self._queue: deque[threading.Condition] = deque()  # one condition per waiter, all on _lock

    @property
    def in_use(self) -> int:
        return self._in_use

    @property
    def waiting(self) -> int:
        return len(self._queue)

    def acquire(self, deadline: float | None = None) -> bool:
        """Take a slot in turn; False (and out of the queue) once ``deadline`` has come."""
        with self._lock:
            if self._in_use < self.size and not self._queue:
                self._in_use += 1
                return True
            left = None if deadline is None else deadline - self.clock()
            if left is not None and left <= 0:
                return False
            ends = None if left is None else time.monotonic() + left
            turn = threading.Condition(self._lock)
            self._queue.append(turn)
            try:
                while self._queue[0] is not turn or self._in_use >= self.size:
                    if ends is None:
                        turn.wait()
                        continue
                    left = ends - time.monotonic()
                    if left <= 0:
                        return False
                    turn.wait(left)
                self._in_use += 1
                return True
            finally:
                self._queue.remove(turn)
                self._wake_next()  # the next in line: a slot may still be free, or this one left

    def release(self) -> None:
        with self._lock:
            if self._in_use <= 0:
                raise ValueError("FifoSlots released more often than acquired")
            self._in_use -= 1
            self._wake_next()

    def _wake_next(self) -> None:
        """Wake the head of the queue when a slot is free for it (the caller holds the lock)."""
        if self._queue and self._in_use < self.size:
            self._queue[0].notify()


class Permit:
    """What ``acquire`` grants: hold it for the call, then ``reconcile`` and release."""

    def __init__(self, limiter: RateLimiter, tokens: int, granted_at: float, has_slot: bool) -> None:
        self.limiter, self.tokens, self.granted_at = limiter, tokens, granted_at
        self._has_slot = has_slot

    def reconcile(self, actual_tokens: int) -> None:
        """Correct the token estimate with the real usage (refund or charge the rest)."""
        self.limiter._adjust_tokens(self.tokens - actual_tokens)
        self.tokens = actual_tokens

    def release(self) -> None:
        if self._has_slot:
            self._has_slot = False
            self.limiter._slots.release()

    def __enter__(self) -> Permit:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class RateLimiter:
    """RPM, TPM and concurrency limits for one client (any of them may be None).

    ``burst_s`` is how many seconds of budget may go at once; the default 0 spaces
    requests evenly, which keeps a provider's own bucket from ever running dry.
    """

    def __init__(
        self,
        rpm: float | None = None,
        tpm: float | None = None,
        max_concurrency: int | None = None,
        *,
        burst_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        for name, value in (("rpm", rpm), ("tpm", tpm)):
            if value is not None and not (_is_number(value) and math.isfinite(value) and value > 0):
                raise errors.InvalidRequest(f"{name} must be a positive number or None, got {value!r}")
        if max_concurrency is not None and not _is_whole(max_concurrency, 1):
            raise errors.InvalidRequest(f"max_concurrency must be a whole number >= 1 or None, got {max_concurrency!r}")
        self.rpm, self.tpm, self.max_concurrency = rpm, tpm, max_concurrency
        self.clock, self.sleep = clock, sleep
        self._requests = TokenBucket.per_minute(rpm, burst_s, clock) if rpm else None
        self._tokens = TokenBucket.per_minute(tpm, burst_s, clock) if tpm else None
        self._slots = FifoSlots(max_concurrency, clock) if max_concurrency else None
        self._paused_until = -math.inf
        self._pause_shift = 0.0  # how much later pauses have made every reservation so far
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RateLimiter(rpm={self.rpm}, tpm={self.tpm}, max_concurrency={self.max_concurrency})"

    def acquire(self, tokens: int = 0, deadline: float | None = None) -> Permit:
        """Wait for budget for one request of ``tokens`` (estimated); never past ``deadline``."""
        now = self.clock()
        wait, shifted = self._reserve(now, tokens, deadline)
        granted_at = self._sleep_until(now + wait, tokens, deadline, shifted)
        has_slot = self._take_slot(tokens, deadline)
        return Permit(self, tokens, granted_at, has_slot)

    def _reserve(self, now: float, tokens: int, deadline: float | None) -> tuple[float, float]:
        """Charge the buckets for one request as of the time it may go: that wait, and the
        pause shift it was made under (a later pause moves it later)."""
        with self._lock:
            wait = self._wait_needed(now, tokens)
            self._check_deadline(now, wait, deadline, "the rate limit")
            # charged as of the grant: a limit's refill while another one holds the call back
            # must not let the next call through early
            if self._requests:
                self._requests.take(1, at=now + wait)
            if self._tokens:
                self._tokens.take(tokens, at=now + wait)
            return wait, self._pause_shift

    def _wait_needed(self, now: float, tokens: int) -> float:
        wait = self._paused_until - now
        if self._requests:
            wait = max(wait, self._requests.wait_for(1))
        if self._tokens:
            wait = max(wait, self._tokens.wait_for(tokens))
        return max(0.0, wait)

    def _check_deadline(self, now: float, wait: float, deadline: float | None, what: str) -> None:
        if deadline is not None and now + wait > deadline:
            raise errors.ClientRateLimited(
                f"{what} needs a {wait:.2f}s wait but the request must go within {max(0.0, deadline - now):.2f}s "
                "to be answered before the call's deadline; lower the load or allow more time",
                retry_after=wait,
            )

    def _sleep_until(self, due: float, tokens: int, deadline: float | None, shifted: float) -> float:
        """Sleep until the reservation is due, and later by whatever a 429 paused everyone
        since (``shifted``: the pause shift when it was made). Returns the time it may go."""
        now = self.clock()
        while True:
            left = self._pause_left(now)  # first: it may hear of a pause set elsewhere
            until = max(due + self._pause_shift - shifted, now + left)
            if until > due:  # paused after we reserved: the pause may break the deadline
                try:
                    self._check_deadline(now, until - now, deadline, "a 429 pause")
                except errors.ClientRateLimited:
                    self._refund(tokens)
                    raise
            if until <= now:
                return until
            self.sleep(until - now)
            now = max(self.clock(), until)  # a virtual sleep moves no clock

    def _take_slot(self, tokens: int, deadline: float | None) -> bool:
        if self._slots is None:
            return False
        if not self._slots.acquire(deadline):
            self._refund(tokens)
            raise errors.ClientRateLimited(
                f"all {self.max_concurrency} concurrent slots stayed busy until the deadline", retry_after=None
            )
        return True

    def _refund(self, tokens: int) -> None:
        """Give back an unused reservation."""
        with self._lock:
            if self._requests:
                self._requests.give_back(1)
            if self._tokens:
                self._tokens.give_back(tokens)

    def _adjust_tokens(self, difference: int) -> None:
        if self._tokens is None or difference == 0:
            return
        with self._lock:
            if difference > 0:
                self._tokens.give_back(difference)
            else:
                self._tokens.take(-difference)

    def pause(self, seconds: float) -> None:
        """Stop every thread for ``seconds`` (a 429's Retry-After). Every reservation moves
        later by the time the pause adds, so the queue resumes at its pace afterwards
        rather than all at once (which would overrun the server's refilled bucket)."""
        with self._lock:
            now = self.clock()
            until = now + max(0.0, seconds)
            added = until - max(now, self._paused_until)
            if added <= 0:
                return
            self._paused_until = until
            self._pause_shift += added
            for bucket in (self._requests, self._tokens):
                if bucket is not None:
                    bucket.postpone(added, now)

    def _pause_left(self, now: float) -> float:
        with self._lock:
            return self._paused_until - now

    @property
    def paused_for(self) -> float:
        return max(0.0, self._pause_left(self.clock()))

    def observe_headers(self, headers: Mapping[str, str]) -> None:
        """Follow the server's ``x-ratelimit-remaining-*`` / ``x-ratelimit-reset-*``: when a
        budget is at zero, pause until it resets."""
        lowered = {str(k).lower(): str(v) for k, v in headers.items()}
        for kind in ("requests", "tokens"):
            remaining = lowered.get(f"x-ratelimit-remaining-{kind}")
            reset = parse_duration(lowered.get(f"x-ratelimit-reset-{kind}", ""))
            if remaining is not None and reset is not None and remaining.strip() in ("0", "0.0"):
                self.pause(reset)
