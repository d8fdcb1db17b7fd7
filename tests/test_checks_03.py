"""Notebook 03's exercise checks: the reference passes, and wrong answers fail them."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest

from week04_lib.exercises import load_file
from week04_lib.ratelimit import parse_duration

NOTEBOOKS = Path(__file__).parents[1] / "notebooks"


checks = load_file(NOTEBOOKS / "checks" / "checks_03.py")
solutions = load_file(NOTEBOOKS / "solutions" / "03_solutions.py")


@pytest.mark.parametrize("name", ["binding_limit", "new_bucket", "adaptive_wait"])
def test_the_reference_passes(name: str) -> None:
    getattr(checks, f"check_{name}")(getattr(solutions, name))


# ★ binding_limit: wrong answers
def binding_limit_ignores_latency(tokens_per_call, latency_s, rpm=60, tpm=90_000, max_concurrency=5):
    allowed = {"RPM": rpm, "TPM": tpm / tokens_per_call, "concurrency": max_concurrency * 60}
    name = min(allowed, key=allowed.get)
    return name, allowed[name]


def binding_limit_largest(tokens_per_call, latency_s, rpm=60, tpm=90_000, max_concurrency=5):
    allowed = {"RPM": rpm, "TPM": tpm / tokens_per_call}
    if max_concurrency is not None:
        allowed["concurrency"] = max_concurrency * 60 / latency_s
    name = max(allowed, key=allowed.get)
    return name, allowed[name]


def binding_limit_none_means_zero(tokens_per_call, latency_s, rpm=60, tpm=90_000, max_concurrency=5):
    allowed = {
        "RPM": rpm or 0,
        "TPM": (tpm or 0) / tokens_per_call,
        "concurrency": (max_concurrency or 0) * 60 / latency_s,
    }
    name = min(allowed, key=allowed.get)
    return name, allowed[name]


@pytest.mark.parametrize("wrong", [binding_limit_ignores_latency, binding_limit_largest, binding_limit_none_means_zero])
def test_wrong_binding_limit_fails(wrong) -> None:
    with pytest.raises(AssertionError):
        checks.check_binding_limit(wrong)


# ★★ new_bucket: wrong answers (the virtual-time part fails them before any real call)
class NoCap:
    """Refills without a ceiling: a long idle earns a huge burst."""

    def __init__(self, rate, capacity, clock=time.monotonic):
        self.rate, self.clock, self.level, self.stamp = rate, clock, float(capacity), clock()

    def try_take(self, amount=1):
        now = self.clock()
        self.level, self.stamp = self.level + (now - self.stamp) * self.rate, now
        if self.level < amount:
            return False
        self.level -= amount
        return True


class WholeSecondRefill:
    """Refills once a whole second has passed, not continuously."""

    def __init__(self, rate, capacity, clock=time.monotonic):
        self.rate, self.capacity, self.clock, self.level, self.stamp = rate, capacity, clock, capacity, clock()

    def try_take(self, amount=1):
        now = self.clock()
        seconds = math.floor(now - self.stamp)
        if seconds:
            self.level, self.stamp = min(self.capacity, self.level + seconds * self.rate), self.stamp + seconds
        if self.level < amount:
            return False
        self.level -= amount
        return True


class TakesWhenRefused:
    """Takes the amount even when it is not there (the level goes negative)."""

    def __init__(self, rate, capacity, clock=time.monotonic):
        self.rate, self.capacity, self.clock, self.level, self.stamp = rate, capacity, clock, capacity, clock()

    def try_take(self, amount=1):
        now = self.clock()
        self.level, self.stamp = min(self.capacity, self.level + (now - self.stamp) * self.rate), now
        enough = self.level >= amount
        self.level -= amount
        return enough


@pytest.mark.parametrize("wrong", [NoCap, WholeSecondRefill, TakesWhenRefused])
def test_wrong_bucket_fails(wrong) -> None:
    with pytest.raises(AssertionError):
        checks.check_new_bucket(wrong)


# ★★★ adaptive_wait: wrong answers
def _budgets(headers):
    """(kind, limit a second, remaining, reset) for each budget the headers describe."""
    lowered = {k.lower(): v for k, v in headers.items()}
    for kind in ("requests", "tokens"):
        if f"x-ratelimit-remaining-{kind}" in lowered:
            yield (
                kind,
                float(lowered[f"x-ratelimit-limit-{kind}"]) / 60,
                float(lowered[f"x-ratelimit-remaining-{kind}"]),
                parse_duration(lowered[f"x-ratelimit-reset-{kind}"]),
            )


def always_full_reset(headers, next_tokens):
    """The issue's wrong answer: whenever a budget is short, wait the whole reset."""
    need = {"requests": 1, "tokens": next_tokens}
    waits = [reset for kind, _, remaining, reset in _budgets(headers) if remaining < need[kind]]
    return max(waits) + 0.001 if waits else 0.0


def refill_only(headers, next_tokens):
    """Trusts remaining = 0 as 'empty': too early after a large call drove the bucket below zero."""
    need = {"requests": 1, "tokens": next_tokens}
    waits = [
        (need[kind] - remaining) / rate for kind, rate, remaining, _ in _budgets(headers) if remaining < need[kind]
    ]
    return max(waits) + 0.001 if waits else 0.0


def requests_only(headers, next_tokens):
    """Follows the request budget and forgets the tokens."""
    return solutions.adaptive_wait({k: v for k, v in headers.items() if "tokens" not in k}, next_tokens)


def no_margin(headers, next_tokens):
    """Right, but a hair early: the server rounds its reset to the millisecond."""
    return max(0.0, solutions.adaptive_wait(headers, next_tokens) - solutions.MARGIN_S)


@pytest.mark.parametrize("wrong", [always_full_reset, refill_only, requests_only, no_margin])
def test_wrong_adaptive_wait_fails(wrong) -> None:
    with pytest.raises(AssertionError):
        checks.check_adaptive_wait(wrong)


def test_the_full_reset_pacer_fails_on_the_wait_it_returns() -> None:
    with pytest.raises(AssertionError, match="not the whole reset"):
        checks.check_adaptive_wait(always_full_reset)
