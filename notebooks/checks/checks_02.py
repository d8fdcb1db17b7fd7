"""Self-checks for the exercises of notebook 02 (retries, backoff and idempotency).

Each ``check_<exercise>(fn)`` raises AssertionError with a message that says what is
wrong, and returns None when ``fn`` passes. The notebook runs them on your function (or
on the reference solution while yours still returns None); tests/test_checks_02.py runs
them on the reference and on wrong answers, so every check is known to be able to fail.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import tenacity

from week04_lib import backoff, errors
from week04_lib.fakeserver import FakeLLMServer
from week04_lib.retry import RetryPolicy, wait_backoff
from week04_lib.transport import Transport
from week04_lib.virtual_time import VirtualClock

PAYLOAD = {"model": "fake-mini", "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 8}


def _equal(got: Any, expected: Any, what: str) -> None:
    assert got == expected, f"{what}: expected {expected!r}, got {got!r}"


# ★ Exercise 1
def check_exponential(exponential: Callable[..., list[float]]) -> None:
    """``exponential(n, base, cap)``: base, 2 base, 4 base ... at most cap; survives n = 1100."""
    _equal(exponential(6, 0.5, 8.0), [0.5, 1.0, 2.0, 4.0, 8.0, 8.0], "exponential(6, 0.5, 8.0)")
    _equal(exponential(5, 1.0, 3.0), backoff.schedule("none", 5, base=1.0, cap=3.0), "exponential(5, 1.0, 3.0)")
    _equal(exponential(0, 0.5, 8.0), [], "exponential(0, ...) (no retries, no sleeps)")
    try:
        late = exponential(1100, 0.5, 8.0)
    except OverflowError as e:
        raise AssertionError(f"a late retry must not overflow: exponential(1100, 0.5, 8.0) raised {e!r}") from e
    assert len(late) == 1100 and late[-1] == 8.0, "exponential(1100, 0.5, 8.0): 1100 sleeps, the last one the cap"


# ★★ Exercise 2
def check_retry_wait(retry_wait: Callable[..., float]) -> None:
    """The larger of backoff and Retry-After (the hint at most max_hint_s), then as tenacity's wait."""
    e503 = errors.ServerError("HTTP 503", status_code=503)
    _equal(retry_wait(e503, 1), 0.5, "retry 1 after a 503 without a hint")
    _equal(retry_wait(e503, 3), 2.0, "retry 3 after a 503 without a hint")
    _equal(retry_wait(e503, 10), 8.0, "retry 10 after a 503 without a hint (the cap)")
    _equal(retry_wait(errors.RateLimited("429", retry_after=3.0), 1), 3.0, "Retry-After 3 on retry 1 (hint longer)")
    _equal(
        retry_wait(errors.ServerError("503", retry_after=0.1), 3), 2.0, "Retry-After 0.1 on retry 3 (backoff longer)"
    )
    _equal(retry_wait(errors.RateLimited("429", retry_after=600.0), 1), 60.0, "Retry-After 600 (hint capped at 60)")

    clock = VirtualClock()
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(errors.TransientError),
        stop=tenacity.stop_after_attempt(5),
        wait=lambda state: retry_wait(state.outcome.exception(), state.attempt_number),
        sleep=clock.sleep,
        reraise=True,
    )
    script = ["503", "429:retry-after=3", "503:retry-after-ms=100", "ok"]
    with FakeLLMServer(script, latency=0) as srv, Transport(srv.url) as transport:
        assert retrying(transport.chat, PAYLOAD).text, "the scripted server answers on the 4th attempt"
    _equal(clock.sleeps, [0.5, 3.0, 2.0], f"tenacity's sleeps against the script {script}")


# ★★★ Exercise 3
def check_new_budget(new_budget: Callable[..., Any]) -> None:
    """A sliding window: retries of the last window_s seconds, however the windows line up."""
    clock = VirtualClock()
    budget = new_budget(0.1, window_s=10.0, min_retries=2, clock=clock)
    for _ in range(10):
        budget.record_call()
    spent = [budget.try_spend() for _ in range(4)]
    _equal(spent, [True, True, True, False], "10 calls at t=0, ratio 0.1, min_retries 2: try_spend() x4")

    # A window that slides, not one that starts afresh every 10 s (a tumbling window).
    clock = VirtualClock()
    budget = new_budget(0.1, window_s=10.0, min_retries=2, clock=clock)
    for _ in range(10):
        budget.record_call()
    clock.now = 9.5
    _equal([budget.try_spend() for _ in range(4)], [True] * 3 + [False], "at t=9.5: 2 + 10 x 0.1 retries")
    clock.now = 10.5
    assert not budget.try_spend(), (
        "at t=10.5 the 3 retries of t=9.5 are still within the last 10 s (and the calls of t=0 are not): "
        "the limit is 2 + 0 x 0.1, so no retry. Does your window start afresh every 10 s (a tumbling window)?"
    )
    clock.now = 19.6
    _equal([budget.try_spend() for _ in range(3)], [True, True, False], "at t=19.6 everything has left the window")

    # A long outage: 1,000 calls, one every 0.1 s, every attempt fails.
    clock = VirtualClock()
    budget = new_budget(0.1, window_s=10.0, min_retries=3, clock=clock)
    policy = RetryPolicy(4, wait=wait_backoff("none", 0.0, 0.0), budget=budget, clock=clock, sleep=clock.sleep)
    calls: list[float] = []
    retries: list[float] = []

    def always_503(attempt: int) -> None:
        (calls if attempt == 1 else retries).append(clock())
        raise errors.ServerError("HTTP 503", status_code=503)

    for i in range(1000):
        clock.now = i * 0.1
        with contextlib.suppress(errors.LLMError):
            policy.call(always_503)
    for j, t in enumerate(retries):  # each retry was allowed: fewer retries than the limit in its window
        in_window = sum(t - 10 < c <= t for c in calls)
        spent_before = sum(t - 10 < r for r in retries[:j])
        assert spent_before < 3 + 0.1 * in_window, (
            f"the retry at t={t:.1f} s went over the budget: {spent_before} retries in the 10 s before it, "
            f"limit 3 + 0.1 x {in_window} calls"
        )
    assert retries, "no retry at all during the outage: min_retries and 10 % of calls should be allowed"
    per_call = (len(calls) + len(retries)) / len(calls)
    assert 1.05 < per_call < 1.2, f"{per_call:.3f} attempts per call over the outage; expected about 1.1"
    assert retries[-1] > 90, (
        f"the last retry at t={retries[-1]:.0f} s: old calls must leave the window, old retries too"
    )
