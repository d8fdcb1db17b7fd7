"""Reference solutions for the exercises of notebook 03 (rate limiting and graceful degradation).

Try the exercises first: the notebook's self-check cells fall back on these only
while your own function still returns None.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping

from week04_lib.ratelimit import parse_duration


# ★ Exercise 1: which limit bites first
def binding_limit(
    tokens_per_call: int,
    latency_s: float,
    rpm: float | None = 60,
    tpm: float | None = 90_000,
    max_concurrency: int | None = 5,
) -> tuple[str, float]:
    """The limit that caps this workload first, and the calls per minute it allows.

    Each limit allows its own number of calls a minute: ``rpm`` of them; ``tpm`` divided
    by the tokens one call counts (prompt plus ``max_tokens``); and ``max_concurrency``
    calls in flight, each holding its slot for ``latency_s`` seconds, so
    ``max_concurrency * 60 / latency_s`` a minute (Little's law). The smallest one bites.
    A limit that is None does not apply.
    """
    allowed = {}
    if rpm is not None:
        allowed["RPM"] = float(rpm)
    if tpm is not None:
        allowed["TPM"] = tpm / tokens_per_call if tokens_per_call > 0 else math.inf
    if max_concurrency is not None:
        allowed["concurrency"] = max_concurrency * 60 / latency_s if latency_s > 0 else math.inf
    if not allowed:
        return "none", math.inf
    name = min(allowed, key=lambda limit: allowed[limit])
    return name, allowed[name]


# ★★ Exercise 2: a token bucket with an injectable clock
class MiniBucket:
    """``rate`` units a second, at most ``capacity`` saved up; starts full.

    The level is refilled lazily, from the time that passed since the last look: no
    background thread, and a virtual clock makes it testable without waiting.
    """

    def __init__(self, rate: float, capacity: float, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or capacity <= 0:
            raise ValueError("rate and capacity must be positive")
        self.rate, self.capacity, self.clock = rate, capacity, clock
        self.level = float(capacity)
        self.stamp = clock()
        self.lock = threading.Lock()  # a bucket is shared by every thread of a client

    def try_take(self, amount: float = 1) -> bool:
        """Take ``amount`` if the bucket holds that much now; False (and take nothing) if not."""
        with self.lock:
            now = self.clock()
            self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.level + 1e-9 < amount:  # tolerate float dust: 0.1 * 10 is not quite 1.0
                return False
            self.level -= amount
            return True


def new_bucket(rate: float, capacity: float, clock: Callable[[], float] = time.monotonic) -> MiniBucket:
    """A token bucket: ``try_take(amount=1) -> bool``."""
    return MiniBucket(rate, capacity, clock)


# ★★★ Exercise 3: follow the server's x-ratelimit-* headers
MARGIN_S = 0.001


def adaptive_wait(headers: Mapping[str, str], next_tokens: int) -> float:
    """Seconds to wait before the next request, from the last reply's rate-limit headers.

    For requests (the next call needs 1) and for tokens (it needs ``next_tokens``):

    - enough remains: no wait;
    - some remains, not enough: wait until the missing part has refilled,
      ``(need - remaining) / (limit / 60)`` seconds, at most the reset time;
    - nothing remains: wait the reset time (until the bucket is full again). The server
      reports ``remaining`` as 0 even when a large request drove its bucket below zero,
      so 0 says nothing about how deep the hole is; the reset time does.

    A positive wait gets a millisecond more: the server rounds its reset time to the
    millisecond, and arriving a hair early is a 429. Headers that are missing or
    unreadable give no advice: 0.
    """
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    wait = 0.0
    for kind, need in (("requests", 1), ("tokens", next_tokens)):
        try:
            remaining = float(lowered[f"x-ratelimit-remaining-{kind}"])
            per_second = float(lowered[f"x-ratelimit-limit-{kind}"]) / 60
        except (KeyError, ValueError):
            continue
        reset = parse_duration(lowered.get(f"x-ratelimit-reset-{kind}", ""))
        if remaining >= need or per_second <= 0:
            continue
        refill = (need - remaining) / per_second
        if reset is None:
            wait = max(wait, refill)
        elif remaining <= 0:
            wait = max(wait, reset)
        else:
            wait = max(wait, min(refill, reset))
    return wait + MARGIN_S if wait > 0 else 0.0
