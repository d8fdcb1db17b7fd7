"""Retries on tenacity: transient errors only, backoff with jitter, Retry-After honoured,
never past the deadline, within a retry budget.

Taught in notebook 02. A policy composes tenacity's pieces the way tenacity does:

    retry = retry_if_worth_it       (transient errors, or what x-should-retry says)
    stop  = stop_after_attempt(n) | stop_at_deadline(deadline) | stop_when_budget_spent(budget)
    wait  = wait_server_hint(wait_backoff("full", base, cap))

``RetryPolicy.call(fn)`` runs ``fn(attempt)`` under that policy, with one request id for
every attempt (sent as ``X-Request-ID`` and ``Idempotency-Key`` by the transport).
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar, cast

import tenacity
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from . import backoff, errors
from .transport import MAX_RETRY_AFTER_S, parse_retry_after

__all__ = [
    "RetryBudget",
    "RetryPolicy",
    "new_request_id",
    "parse_retry_after",
    "retry_if_worth_it",
    "stop_at_deadline",
    "stop_when_budget_spent",
    "wait_backoff",
    "wait_server_hint",
]

log = logging.getLogger("week04_lib.retry")
T = TypeVar("T")


def new_request_id() -> str:
    """One id per logical call, the same on every retry: a UUID, since some servers
    (llama.cpp's Python server) refuse any other ``X-Request-ID``."""
    return str(uuid.uuid4())


def worth_retrying(error: BaseException) -> bool:
    """Transient errors are, unless the server said otherwise in ``x-should-retry``
    (which the official SDKs obey both ways: "true" even retries a 4xx)."""
    said = getattr(error, "should_retry", None)
    return said if said is not None else isinstance(error, errors.TransientError)


retry_if_worth_it = tenacity.retry_if_exception(worth_retrying)


class wait_backoff(wait_base):
    """A tenacity wait from one of ``backoff.STRATEGIES``, seeded if you like.

    Decorrelated jitter grows from the sleep actually taken last, Retry-After included.
    """

    def __init__(self, kind: str = "full", base: float = 0.5, cap: float = 8.0, seed: int | None = None) -> None:
        backoff.delay(kind, 1, base=base, cap=cap, rng=random.Random(0))  # validate now, not mid-call
        self.kind, self.base, self.cap = kind, base, cap
        self._rng = random.Random(seed)
        self._lock = threading.Lock()  # one policy may serve many threads

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        previous = retry_state.upcoming_sleep or self.base  # the sleep before this one
        with self._lock:
            return backoff.delay(
                self.kind, retry_state.attempt_number, previous=previous, base=self.base, cap=self.cap, rng=self._rng
            )


class wait_server_hint(wait_base):
    """The larger of ``fallback``'s delay and the server's Retry-After (at most ``max_s``),
    the hint made up to ``jitter`` longer (never shorter: the server said not before):
    threads that got the same hint must not all come back in the same instant."""

    def __init__(
        self, fallback: wait_base, max_s: float = MAX_RETRY_AFTER_S, jitter: float = 0.2, seed: int | None = None
    ) -> None:
        self.fallback, self.max_s, self.jitter = fallback, max_s, jitter
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        delay = self.fallback(retry_state)
        error = retry_state.outcome.exception() if retry_state.outcome else None
        hint = getattr(error, "retry_after", None)
        if hint is None:
            return delay
        with self._lock:
            spread = 1 + self.jitter * self._rng.random()
        return max(delay, min(hint * spread, self.max_s))


class stop_at_deadline(stop_base):
    """Stop when the next sleep would end at or past ``deadline`` (a ``clock()`` time):
    failing now beats sleeping into a certain timeout."""

    def __init__(self, deadline: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.deadline, self.clock = deadline, clock

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return self.deadline is not None and self.clock() + retry_state.upcoming_sleep >= self.deadline


class RetryBudget:
    """Retries may be at most ``ratio`` of the calls in the last ``window_s`` seconds,
    plus ``min_retries`` in that window so a quiet client can still retry (Google SRE
    book, ch. 22). In a long outage this settles at ``1 + ratio`` attempts per call plus
    ``min_retries`` per window.

    Thread-safe; ``clock`` is injectable. Taught in notebook 02, section 2.7.
    """

    def __init__(
        self,
        ratio: float = 0.1,
        *,
        min_retries: int = 3,
        window_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not ratio >= 0:
            raise ValueError(f"ratio must be >= 0, got {ratio}")
        self.ratio, self.min_retries, self.window_s, self.clock = ratio, min_retries, window_s, clock
        self._calls: deque[float] = deque()
        self._retries: deque[float] = deque()
        self._lock = threading.Lock()

    def _forget_old(self, now: float) -> None:
        for times in (self._calls, self._retries):
            while times and times[0] <= now - self.window_s:
                times.popleft()

    def record_call(self) -> None:
        with self._lock:
            now = self.clock()
            self._forget_old(now)
            self._calls.append(now)

    def try_spend(self) -> bool:
        """Take one retry from the budget; False when it is spent."""
        with self._lock:
            now = self.clock()
            self._forget_old(now)
            if len(self._retries) >= self.min_retries + self.ratio * len(self._calls):
                return False
            self._retries.append(now)
            return True


class stop_when_budget_spent(stop_base):
    """Stop when the budget refuses a retry (put it last: it spends when it says go on)."""

    def __init__(self, budget: RetryBudget | None) -> None:
        self.budget = budget
        self.refused = False  # did this stop end the call? (one instance per call)

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        if self.budget is None or self.budget.try_spend():
            return False
        self.refused = True
        return True


class RetryPolicy:
    """Retry transient errors with backoff, within attempts, deadline and budget."""

    def __init__(
        self,
        max_attempts: int = 4,
        *,
        wait: wait_base | None = None,
        budget: RetryBudget | None = None,
        max_retry_after_s: float = MAX_RETRY_AFTER_S,
        seed: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        self.max_attempts = max_attempts
        # ``seed``: the Retry-After jitter's, for reproducible runs (notebooks, tests)
        self.wait = wait_server_hint(wait or wait_backoff("full"), max_retry_after_s, seed=seed)
        self.budget = budget
        self.clock, self.sleep = clock, sleep

    def call(
        self,
        fn: Callable[[int], T],
        *,
        deadline: float | None = None,
        request_id: str | None = None,
        model: str | None = None,
        max_attempts: int | None = None,
        budget: Any = None,
    ) -> T:
        """Run ``fn(attempt_number)`` until it succeeds, a permanent error, or a stop
        (``max_attempts`` and ``budget``, such as a model's adaptive throttle, override
        the policy's for this call)."""
        budget = budget if budget is not None else self.budget
        if budget is not None:
            budget.record_call()
        budget_stop = stop_when_budget_spent(budget)
        retrying = tenacity.Retrying(
            retry=retry_if_worth_it,
            stop=tenacity.stop_after_attempt(max_attempts or self.max_attempts)
            | stop_at_deadline(deadline, self.clock)
            | budget_stop,
            wait=self.wait,
            sleep=self.sleep,
            before_sleep=lambda state: _log_retry(state, request_id, model),
            retry_error_callback=lambda state: _give_up(state, budget_stop.refused, budget),
        )
        for attempt in retrying:
            with attempt:
                result = fn(attempt.retry_state.attempt_number)
        return result


def _last_error(retry_state: tenacity.RetryCallState) -> errors.LLMError:
    """The transient error of the last attempt (only those are retried)."""
    assert retry_state.outcome is not None
    return cast(errors.LLMError, retry_state.outcome.exception())


def _give_up(retry_state: tenacity.RetryCallState, budget_refused: bool, budget: Any) -> Any:
    error = _last_error(retry_state)
    if budget_refused:
        why = getattr(budget, "refusal", "the retry budget is spent")
        raise errors.RetryBudgetExhausted(
            f"not retried, {why} (the failure: {error.message})",
            request_id=error.request_id,
            model=error.model,
            attempt=error.attempt,
            status_code=error.status_code,
            retry_after=getattr(error, "retry_after", None),  # still the server's hint
        ) from error
    raise error


def _log_retry(state: tenacity.RetryCallState, request_id: str | None, model: str | None) -> None:
    error = _last_error(state)
    log.info(
        "retry %s after %s, sleeping %.3fs",
        request_id,
        type(error).__name__,
        state.upcoming_sleep,
        extra={
            "event": "retry",
            "request_id": request_id,
            "model": model,
            "attempt": state.attempt_number,
            "error_type": getattr(error, "error_type", type(error).__name__),
            "status_code": getattr(error, "status_code", None),
            "retry_sleep_s": round(state.upcoming_sleep, 6),
        },
    )
