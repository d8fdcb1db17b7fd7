"""How long a request needs: the slow end of the model's recent answer times.

The rate limiter must never let a request go that cannot finish in the time left
(issue 12). "Can finish" is a bet on the model's answer time, which has a long tail
(notebook 01, section 1.2): a mean, or even three of them, lets go requests that the
slow tenth of answers then kills, and each of those spends a slot of the rate limit on
nothing. So a request needs the 99th percentile of the model's recent answer times:
that of a log-normal fitted to them (the tail extrapolated from the body, steadier
than the slowest of a few dozen) or the one seen, whichever is longer; but never more
than the read timeout (past it the answer is cut anyway) and never more than most of
the call's budget (some requests must always go, or the estimate would never be
refreshed).

Answers cut short by a timeout are the slow ones, and they are never seen complete: left
out, they would pull the estimate down, which lets more requests go too late, which hides
more slow answers (each round a little lower). So a request cut short counts as an answer
as slow as the whole budget.

Measured in ``make bench`` (section "contention"): 32 threads, ``rpm=540``, a server with
a long tail; the share of the limiter's slots that brought an answer.
"""

from __future__ import annotations

import math
import threading
from collections import defaultdict, deque

from .config import Timeouts

RECENT = 50  # answers remembered per model
ENOUGH = 20  # answers needed before the fit replaces the cautious guess
Z99 = 2.326  # the standard normal's 99th percentile
GUESS_SHARE = 0.5  # the cautious guess: half the call's budget (at most the read timeout)
SHARE_OF_BUDGET = 0.8  # the most a request may ask of the call's total budget


class AnswerTimes:
    """Recent answer times per model; ``needed`` says how long a request should have left.

    >>> times = AnswerTimes()
    >>> times.needed("m", Timeouts(1, 2, 3))  # nothing known yet: half the budget
    1.5
    >>> for s in [0.2, 0.3, 0.4, 0.5] * 5:
    ...     times.record("m", s)
    >>> round(times.needed("m", Timeouts(1, 2, 3)), 2)  # the fitted tail, past the slowest seen
    0.75
    >>> times.cut_short("m", Timeouts(1, 2, 3))
    >>> times.needed("m", Timeouts(1, 2, 3))  # a request died: up to the read timeout
    2
    """

    def __init__(self, recent: int = RECENT) -> None:
        self._lock = threading.Lock()
        self._seen: defaultdict[str, deque[float]] = defaultdict(lambda: deque(maxlen=recent))

    def record(self, model: str, seconds: float) -> None:
        with self._lock:
            self._seen[model].append(seconds)

    def cut_short(self, model: str, timeouts: Timeouts) -> None:
        """A request sent and then cut by a read timeout or the deadline: as slow as the budget."""
        self.record(model, timeouts.total)

    def needed(self, model: str, timeouts: Timeouts) -> float:
        """The 99th percentile (fitted or seen, the longer), at least a little (0.25 s, or a fifth of a short
        budget), at most the read timeout and 80% of the total. Until enough answers are
        in, half the budget or the slowest answer if longer: a few fast answers say little
        about the tail, and many threads starting at once would otherwise all send too
        late; half the budget still leaves a quiet client room to retry."""
        with self._lock:
            seen = list(self._seen[model])
        least = min(0.25, 0.2 * timeouts.total)
        most = max(min(timeouts.read, SHARE_OF_BUDGET * timeouts.total), least)
        if len(seen) < ENOUGH:
            slow = max([min(timeouts.read, GUESS_SHARE * timeouts.total), *seen])
        else:
            slow = max(_fitted_p99(seen), _seen_p99(seen))
        return min(max(slow, least), most)


def _fitted_p99(seen: list[float]) -> float:
    """The 99th percentile of a log-normal with the sample's mean and spread of logs.
    (By hand: ``statistics`` computes exactly, with fractions, 40 times slower, and this
    runs before every request that goes through a limiter.)"""
    logs = [math.log(max(s, 1e-3)) for s in seen]
    mean = sum(logs) / len(logs)
    spread = math.sqrt(sum((x - mean) ** 2 for x in logs) / (len(logs) - 1))
    return math.exp(mean + Z99 * spread)


def _seen_p99(seen: list[float]) -> float:
    """The 99th percentile seen, interpolated as ``statistics.quantiles(method="inclusive")``."""
    ordered = sorted(seen)
    position = 0.99 * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
