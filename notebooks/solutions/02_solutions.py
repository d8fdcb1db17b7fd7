"""Reference solutions for the exercises of notebook 02 (retries, backoff and idempotency).

Try the exercises first: the notebook's self-check cells fall back on these only
while your own function still returns None.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


# ★ Exercise 1: exponential backoff, capped
def exponential(n: int, base: float = 0.5, cap: float = 8.0) -> list[float]:
    """The first ``n`` sleeps of plain exponential backoff: base, 2 base, 4 base ... at most cap.

    Cap the exponent before the power: ``base * 2 ** 1099`` does not fit in a float
    (OverflowError), and a long-running retry loop does get there.
    """
    delays = []
    for retry in range(1, n + 1):
        exponent = min(retry - 1, 64)  # 2**64 times any sensible base is past any cap
        delays.append(min(cap, base * 2.0**exponent))
    return delays


# ★★ Exercise 2: Retry-After or backoff
def retry_wait(
    error: BaseException, retry_number: int, base: float = 0.5, cap: float = 8.0, max_hint_s: float = 60.0
) -> float:
    """The sleep before retry number ``retry_number`` (1 = the first retry).

    The larger of the exponential backoff and the server's Retry-After hint
    (``error.retry_after``, None when the server gave none), the hint at most
    ``max_hint_s``: a server that asks for an hour should not park the client for an hour.
    """
    backoff = exponential(retry_number, base, cap)[-1]
    hint = getattr(error, "retry_after", None)
    if hint is None:
        return backoff
    return max(backoff, min(float(hint), max_hint_s))


# ★★★ Exercise 3: a sliding-window retry budget
class SlidingWindowBudget:
    """Retries may be at most ``ratio`` of the calls of the last ``window_s`` seconds,
    plus ``min_retries``. ``record_call()`` once per logical call, ``try_spend()`` before
    each retry: True takes one retry from the budget, False means do not retry.
    """

    def __init__(
        self,
        ratio: float,
        window_s: float = 10.0,
        min_retries: int = 3,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ratio, self.window_s, self.min_retries, self.clock = ratio, window_s, min_retries, clock
        self.calls: deque[float] = deque()
        self.retries: deque[float] = deque()
        self.lock = threading.Lock()  # one budget is shared by every thread of a client

    def _forget(self, now: float) -> None:
        for times in (self.calls, self.retries):
            while times and times[0] <= now - self.window_s:
                times.popleft()

    def record_call(self) -> None:
        with self.lock:
            now = self.clock()
            self._forget(now)
            self.calls.append(now)

    def try_spend(self) -> bool:
        with self.lock:
            now = self.clock()
            self._forget(now)
            if len(self.retries) >= self.min_retries + self.ratio * len(self.calls):
                return False
            self.retries.append(now)
            return True


def new_budget(
    ratio: float, window_s: float = 10.0, min_retries: int = 3, clock: Callable[[], float] = time.monotonic
) -> SlidingWindowBudget:
    """A sliding-window retry budget that ``RetryPolicy(budget=...)`` can use."""
    return SlidingWindowBudget(ratio, window_s, min_retries, clock)
