"""Backoff schedules: pure, seeded, so a notebook can plot them and tests can pin them.

Taught in notebook 02, section 2.3. Four strategies, after "Exponential Backoff and
Jitter" (AWS Architecture Blog, 2015):

- ``none``: plain exponential, ``base * 2**(attempt-1)`` capped (0.5 -> 1 -> 2 -> 4 ...)
- ``full``: uniform between 0 and the exponential ceiling
- ``equal``: half the ceiling, plus uniform over the other half
- ``decorrelated``: uniform between ``base`` and three times the previous delay, capped

Every delay lies in ``[0, cap]``.
"""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["STRATEGIES", "delay", "schedule"]


def _ceiling(attempt: int, base: float, cap: float) -> float:
    # min() before the power would overflow for very late attempts
    return min(cap, base * 2.0 ** min(attempt - 1, 64))


def _none(attempt: int, previous: float, base: float, cap: float, rng: random.Random) -> float:
    return _ceiling(attempt, base, cap)


def _full(attempt: int, previous: float, base: float, cap: float, rng: random.Random) -> float:
    return rng.uniform(0.0, _ceiling(attempt, base, cap))


def _equal(attempt: int, previous: float, base: float, cap: float, rng: random.Random) -> float:
    half = _ceiling(attempt, base, cap) / 2
    return half + rng.uniform(0.0, half)


def _decorrelated(attempt: int, previous: float, base: float, cap: float, rng: random.Random) -> float:
    return min(cap, rng.uniform(base, max(base, previous) * 3))


Strategy = Callable[[int, float, float, float, random.Random], float]
STRATEGIES: dict[str, Strategy] = {
    "none": _none,
    "full": _full,
    "equal": _equal,
    "decorrelated": _decorrelated,
}


def delay(
    kind: str, attempt: int, *, previous: float = 0.0, base: float = 0.5, cap: float = 8.0, rng: random.Random
) -> float:
    """The sleep before retry number ``attempt`` (1 = the first retry)."""
    if kind not in STRATEGIES:
        raise ValueError(f"unknown backoff {kind!r}; choose one of {', '.join(STRATEGIES)}")
    if attempt < 1:
        raise ValueError(f"attempt counts from 1, got {attempt}")
    if not 0 <= base <= cap:
        raise ValueError(f"need 0 <= base <= cap, got base={base}, cap={cap}")
    return STRATEGIES[kind](attempt, previous, base, cap, rng)


def schedule(kind: str, n: int, *, base: float = 0.5, cap: float = 8.0, seed: int | None = 0) -> list[float]:
    """The first ``n`` delays of a strategy, reproducible for a given seed."""
    rng = random.Random(seed)
    delays: list[float] = []
    previous = base
    for attempt in range(1, n + 1):
        previous = delay(kind, attempt, previous=previous, base=base, cap=cap, rng=rng)
        delays.append(previous)
    return delays
