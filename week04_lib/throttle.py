"""Adaptive throttling: send less when the service answers less, by itself.

Taught in notebook 02, section 2.8. A fixed retry budget (10 % of calls) cannot tell a
flaky service, where retries pay, from a dead one, where they hurt: it runs out at any
failure rate above 10 %. Google SRE's client-side adaptive throttling ("Handling
Overload", SRE book ch. 21) follows what requests achieve instead: over the last
``window_s`` seconds, with ``requests`` sent and ``accepts`` the service answered, each
retry is refused locally with probability

    max(0, (requests - K * accepts - allowance) / (requests + 1))

which stays 0 while at least 1/K of the requests succeed (K = 2: up to half may fail,
and retries go on) and rises smoothly as the service dies: at 100 % failures almost no
retry is sent. It gates retries only (``RetryPolicy(budget=...)``): every call's first
attempt goes, so a dead service costs about one request a call, and that request is the
probe that notices the recovery. Two choices differ from the book, and say why:

- ``requests`` counts requests actually sent, not the ones refused here. Counting the
  refused ones (as the book does) drives the refusal to 1 whenever fewer than 1/K of
  requests succeed: right for a backend whose accepts are capped by its capacity,
  wrong for a flaky one whose failures are a fixed share (at 70 % failures the client
  would answer nothing where a plain loop answers three calls in four).
- ``allowance`` requests beyond K * accepts are always let through, so a quiet client
  (one call at a time, one failure in two) still retries every time.

The same idea, differently tuned, is in AWS SDKs' adaptive retry (retries cost tokens,
successes refill them), gRPC's retry throttling and Finagle's retry budget.
Thread-safe; ``clock`` and the random source are injectable.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable

__all__ = ["AdaptiveThrottle", "AdaptiveThrottles"]


class AdaptiveThrottle:
    """One service's throttle: ``allow()`` before sending, ``record(accepted)`` after."""

    def __init__(
        self,
        k: float = 2.0,
        *,
        allowance: int = 5,
        window_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        if not k >= 1:
            raise ValueError(f"k must be at least 1, got {k}")
        self.k, self.allowance, self.window_s, self.clock = k, allowance, window_s, clock
        self._rng = rng or random.Random()
        self._sent: deque[tuple[float, bool]] = deque()  # (time, accepted) per request sent
        self._accepts = 0
        self._lock = threading.Lock()

    def _forget_old(self, now: float) -> None:
        while self._sent and self._sent[0][0] <= now - self.window_s:
            self._accepts -= self._sent.popleft()[1]

    def refusal_probability(self) -> float:
        with self._lock:
            self._forget_old(self.clock())
            return self._probability()

    def _probability(self) -> float:
        requests = len(self._sent)
        return max(0.0, (requests - self.k * self._accepts - self.allowance) / (requests + 1))

    def allow(self) -> bool:
        """May a request go now? False: refuse it here, nothing sent."""
        with self._lock:
            self._forget_old(self.clock())
            return self._rng.random() >= self._probability()

    # As a retry budget (RetryPolicy(budget=...)): every retry asks, first attempts go.
    refusal = "the service failed most requests lately (adaptive throttle)"

    def record_call(self) -> None:
        """A logical call began: nothing to count (``record`` counts what was sent)."""

    def try_spend(self) -> bool:
        return self.allow()

    def record(self, accepted: bool) -> None:
        """A request was sent: did the service answer it (any answer but an overload or
        a failure of its own)?"""
        with self._lock:
            now = self.clock()
            self._forget_old(now)
            self._sent.append((now, accepted))
            self._accepts += accepted


class AdaptiveThrottles:
    """One throttle per model, made on first use with the same settings."""

    def __init__(self, **settings: object) -> None:
        self.settings = settings
        self._throttles: dict[str, AdaptiveThrottle] = {}
        self._lock = threading.Lock()

    def __getitem__(self, model: str) -> AdaptiveThrottle:
        with self._lock:
            if model not in self._throttles:
                self._throttles[model] = AdaptiveThrottle(**self.settings)  # type: ignore[arg-type]
            return self._throttles[model]
