"""The circuit breaker: when a model keeps failing, stop calling it for a while.

Taught in notebook 04, section 4.5. Three states, as in the course:

- **closed**: calls flow; transient failures are counted (consecutive, or a failure rate
  over the last ``window`` calls once at least ``failures`` calls are in it, as
  resilience4j's minimum number of calls); at the threshold the breaker opens;
- **open**: calls fail fast with ``CircuitOpen``, no request is sent, for ``reset_s``;
- **half-open**: exactly one probe goes through (others still fail fast); its success
  closes the breaker, its failure opens it again.

Only transient failures count: a 400 or a 401 means the service is up and answering,
and a 429 means it is limiting this client, not failing.
Thread-safe; ``clock`` is injectable; ``on_change(name, old, new)`` hears every change.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TypeVar

from . import errors

__all__ = ["CLOSED", "HALF_OPEN", "OPEN", "CircuitBreaker", "CircuitBreakers"]

log = logging.getLogger("week04_lib.circuit")
T = TypeVar("T")
CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
Listener = Callable[[str, str, str], None]


class CircuitBreaker:
    def __init__(
        self,
        name: str = "default",
        *,
        failures: int = 5,
        reset_s: float = 30.0,
        failure_rate: float | None = None,
        window: int = 20,
        clock: Callable[[], float] = time.monotonic,
        on_change: Listener | None = None,
    ) -> None:
        if failures < 1 or reset_s <= 0:
            raise ValueError(f"need failures >= 1 and reset_s > 0, got {failures}, {reset_s}")
        if failure_rate is not None and not 0 < failure_rate <= 1:
            raise ValueError(f"failure_rate must be in (0, 1], got {failure_rate}")
        self.name, self.failures, self.reset_s = name, failures, reset_s
        self.failure_rate, self.clock, self.on_change = failure_rate, clock, on_change
        self.window = window
        self._outcomes: deque[bool] = deque(maxlen=window)  # True = failure, for the rate rule
        self._consecutive = 0
        self._state = CLOSED
        self._opened_at = 0.0
        self._probing = False
        self._generation = 0  # bumped at every state change: tells stragglers from current calls
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r}, state={self.state!r})"

    @property
    def state(self) -> str:
        with self._lock:
            change = self._maybe_half_open()
            state = self._state
        self._announce(change)
        return state

    def _move(self, new: str) -> tuple[str, str] | None:
        """Change state (the caller holds the lock); the change, to announce after."""
        old = self._state
        if old == new:
            return None
        self._state = new
        self._generation += 1
        if new == OPEN:
            self._opened_at = self.clock()
        return old, new

    def _announce(self, change: tuple[str, str] | None) -> None:
        """Log and tell the listener, outside the lock (a listener may read ``state``)."""
        if change is None:
            return
        old, new = change
        log.info(
            "breaker %s: %s -> %s",
            self.name,
            old,
            new,
            extra={"event": "breaker", "model": self.name, "breaker_state": new},
        )
        if self.on_change is not None:
            self.on_change(self.name, old, new)

    def _maybe_half_open(self) -> tuple[str, str] | None:
        if self._state == OPEN and self.clock() - self._opened_at >= self.reset_s:
            return self._move(HALF_OPEN)
        return None

    def allow(self) -> int:
        """Let a call through, or raise ``CircuitOpen`` (no request must be sent then).

        Returns a ticket: pass it to ``record_success``/``record_failure`` so that a call
        let through before the last state change (a straggler) cannot decide the new state.
        """
        with self._lock:
            change = self._maybe_half_open()
            state, ticket = self._state, self._generation
            go = state == CLOSED or (state == HALF_OPEN and not self._probing)
            if state == HALF_OPEN and go:
                self._probing = True  # this caller is the one probe
            wait = max(0.0, self.reset_s - (self.clock() - self._opened_at)) if state == OPEN else None
        self._announce(change)
        if go:
            return ticket
        detail = f"retry in {wait:.1f}s" if wait is not None else "a probe call is in flight"
        raise errors.CircuitOpen(f"circuit for {self.name} is {state}: failing fast, {detail}", model=self.name)

    def _stale(self, ticket: int | None) -> bool:
        """A straggler: let through before the last change (or any call while open)."""
        return self._state == OPEN or (ticket is not None and ticket != self._generation)

    def record_success(self, ticket: int | None = None) -> None:
        change = None
        with self._lock:
            if self._stale(ticket):
                return  # sent before the breaker changed: only the probe may close it
            self._probing = False
            self._consecutive = 0
            self._outcomes.append(False)
            if self._state == HALF_OPEN:
                self._outcomes.clear()
                change = self._move(CLOSED)
        self._announce(change)

    def record_failure(self, error: BaseException, ticket: int | None = None) -> None:
        """Count a transient failure. A permanent error is the service answering (a
        success here); a 429 is the service limiting *us*, not failing: it counts as
        neither (and our own limiter's refusal even less)."""
        if isinstance(error, errors.PermanentError):
            return self.record_success(ticket)
        if isinstance(error, errors.RateLimited):
            return self.abandon(ticket)
        change = None
        with self._lock:
            if self._stale(ticket):
                return  # a straggler from before the last change: already counted
            self._probing = False
            self._consecutive += 1
            self._outcomes.append(True)
            if self._state == HALF_OPEN or self._tripped():
                change = self._move(OPEN)
        self._announce(change)

    def _tripped(self) -> bool:
        if self._state != CLOSED:
            return False
        if self.failure_rate is None:
            return self._consecutive >= self.failures
        # a share of the last ``window`` calls, once at least ``failures`` calls are in it
        # (resilience4j's minimum number of calls): one bad call of two is no outage
        calls = len(self._outcomes)
        return calls >= min(self.failures, self.window) and sum(self._outcomes) / calls >= self.failure_rate

    def abandon(self, ticket: int | None = None) -> None:
        """The call ended without news of the service (a 429, our own limiter, a crash):
        count nothing, but let another probe go (if this call was the probe)."""
        with self._lock:
            if not self._stale(ticket):
                self._probing = False

    def call(self, fn: Callable[[], T]) -> T:
        """``allow``, then ``fn()``, then record how it went."""
        ticket = self.allow()
        try:
            result = fn()
        except errors.LLMError as exc:
            self.record_failure(exc, ticket)
            raise
        except BaseException:
            self.abandon(ticket)
            raise
        self.record_success(ticket)
        return result


class CircuitBreakers:
    """One breaker per model, made on first use with the same settings (a ``kind``)."""

    kind: type[CircuitBreaker] = CircuitBreaker

    def __init__(self, **settings: object) -> None:
        self.settings = settings
        self._breakers: dict[str, CircuitBreaker] = {}
        self._lock = threading.Lock()

    def __getitem__(self, model: str) -> CircuitBreaker:
        with self._lock:
            if model not in self._breakers:
                self._breakers[model] = self.kind(model, **self.settings)  # type: ignore[arg-type]
            return self._breakers[model]

    def states(self) -> dict[str, str]:
        with self._lock:
            breakers = list(self._breakers.values())
        return {b.name: b.state for b in breakers}
