"""A clock that moves only when something sleeps on it: timing logic in virtual time.

Pass an instance as ``clock=`` and its ``sleep`` as ``sleep=`` to any timing component
(``RetryPolicy``, ``RateLimiter``, ``CircuitBreaker``, ``AdaptiveThrottle``...): a 30 s
backoff then takes no time, and the sleeps it asked for are kept in ``sleeps``. Used by
notebooks 02-04, their checks, and the tests.
"""

from __future__ import annotations


class VirtualClock:
    """``clock()`` is ``now``; ``sleep(s)`` moves ``now`` by ``s`` and records ``s`` (to the
    millisecond, so printed schedules read well). A check or test may also set ``now``."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 3))
        self.now += seconds
