"""Notebook 02's exercise checks: the reference passes, and wrong answers fail them."""

from __future__ import annotations

import threading
import time
from collections import deque
from pathlib import Path

import pytest

from week04_lib.exercises import load_file

NOTEBOOKS = Path(__file__).parents[1] / "notebooks"


checks = load_file(NOTEBOOKS / "checks" / "checks_02.py")
solutions = load_file(NOTEBOOKS / "solutions" / "02_solutions.py")


@pytest.mark.parametrize("name", ["exponential", "retry_wait", "new_budget"])
def test_the_reference_passes(name: str) -> None:
    getattr(checks, f"check_{name}")(getattr(solutions, name))


# ★ exponential: wrong answers
def exponential_overflows(n, base=0.5, cap=8.0):
    return [min(cap, base * 2.0 ** (retry - 1)) for retry in range(1, n + 1)]


def exponential_off_by_one(n, base=0.5, cap=8.0):
    return [min(cap, base * 2.0**retry) for retry in range(1, n + 1)]


def exponential_uncapped(n, base=0.5, cap=8.0):
    return [base * 2.0 ** min(retry - 1, 64) for retry in range(1, n + 1)]


@pytest.mark.parametrize("wrong", [exponential_overflows, exponential_off_by_one, exponential_uncapped])
def test_wrong_exponential_fails(wrong) -> None:
    with pytest.raises(AssertionError):
        checks.check_exponential(wrong)


# ★★ retry_wait: wrong answers
def retry_wait_hint_uncapped(error, retry_number, base=0.5, cap=8.0, max_hint_s=60.0):
    hint = getattr(error, "retry_after", None)
    backoff = min(cap, base * 2.0 ** min(retry_number - 1, 64))
    return backoff if hint is None else max(backoff, hint)


def retry_wait_hint_replaces_backoff(error, retry_number, base=0.5, cap=8.0, max_hint_s=60.0):
    hint = getattr(error, "retry_after", None)
    backoff = min(cap, base * 2.0 ** min(retry_number - 1, 64))
    return backoff if hint is None else min(hint, max_hint_s)


def retry_wait_ignores_hint(error, retry_number, base=0.5, cap=8.0, max_hint_s=60.0):
    return min(cap, base * 2.0 ** min(retry_number - 1, 64))


@pytest.mark.parametrize("wrong", [retry_wait_hint_uncapped, retry_wait_hint_replaces_backoff, retry_wait_ignores_hint])
def test_wrong_retry_wait_fails(wrong) -> None:
    with pytest.raises(AssertionError):
        checks.check_retry_wait(wrong)


# ★★★ new_budget: wrong answers
class TumblingBudget:
    """The issue's wrong answer: the counts start afresh every window_s seconds."""

    def __init__(self, ratio, window_s=10.0, min_retries=3, clock=time.monotonic):
        self.ratio, self.window_s, self.min_retries, self.clock = ratio, window_s, min_retries, clock
        self.window_start, self.calls, self.retries = clock(), 0, 0
        self.lock = threading.Lock()

    def _roll(self):
        now = self.clock()
        if now - self.window_start >= self.window_s:
            self.window_start, self.calls, self.retries = now, 0, 0

    def record_call(self):
        with self.lock:
            self._roll()
            self.calls += 1

    def try_spend(self):
        with self.lock:
            self._roll()
            if self.retries >= self.min_retries + self.ratio * self.calls:
                return False
            self.retries += 1
            return True


class NeverForgets:
    """Counts every call and retry since the start: old ones never leave the window."""

    def __init__(self, ratio, window_s=10.0, min_retries=3, clock=time.monotonic):
        self.ratio, self.min_retries = ratio, min_retries
        self.calls, self.retries = 0, 0

    def record_call(self):
        self.calls += 1

    def try_spend(self):
        if self.retries >= self.min_retries + self.ratio * self.calls:
            return False
        self.retries += 1
        return True


class ForgetsRetriesOnly:
    """Lets retries leave the window but keeps every call: the budget grows without bound."""

    def __init__(self, ratio, window_s=10.0, min_retries=3, clock=time.monotonic):
        self.ratio, self.window_s, self.min_retries, self.clock = ratio, window_s, min_retries, clock
        self.calls, self.retries = 0, deque()

    def record_call(self):
        self.calls += 1

    def try_spend(self):
        now = self.clock()
        while self.retries and self.retries[0] <= now - self.window_s:
            self.retries.popleft()
        if len(self.retries) >= self.min_retries + self.ratio * self.calls:
            return False
        self.retries.append(now)
        return True


@pytest.mark.parametrize("wrong", [TumblingBudget, NeverForgets, ForgetsRetriesOnly])
def test_wrong_budget_fails(wrong) -> None:
    with pytest.raises(AssertionError):
        checks.check_new_budget(wrong)


def test_the_tumbling_window_fails_on_the_sliding_window_rule() -> None:
    with pytest.raises(AssertionError, match="tumbling"):
        checks.check_new_budget(TumblingBudget)
