"""Self-checks for the exercises of notebook 03 (rate limiting and graceful degradation).

Each ``check_<exercise>(fn)`` raises AssertionError with a message that says what is
wrong, and returns None when ``fn`` passes. The notebook runs them on your function (or
on the reference solution while yours still returns None); tests/test_checks_03.py runs
them on the reference and on wrong answers, so every check is known to be able to fail.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from typing import Any

from week04_lib.fakeserver import FakeLLMServer
from week04_lib.ratelimit import TokenBucket
from week04_lib.transport import Transport, parse_retry_after
from week04_lib.virtual_time import VirtualClock

PAYLOAD = {"model": "fake-mini", "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 8}


# ★ Exercise 1
# The three workloads of section 3.3: (tokens counted, latency s) -> (limit that bites, calls a minute).
WORKLOADS = {(150, 1.0): ("RPM", 60.0), (4_200, 3.0): ("TPM", 21.4), (5_000, 25.0): ("concurrency", 12.0)}


def check_binding_limit(binding_limit: Callable[..., tuple[str, float]]) -> None:
    """The smallest of RPM, TPM / tokens and concurrency x 60 / latency; None limits left out."""
    for (tokens, latency), (name, per_minute) in WORKLOADS.items():
        found = binding_limit(tokens, latency)
        assert found[0] == name and round(found[1], 1) == per_minute, (
            f"{tokens} tokens a call, {latency:g} s a call, the course's limits: expected ({name!r}, {per_minute}), "
            f"got {found!r}"
        )
    found = binding_limit(5_000, 25.0, max_concurrency=None)
    assert found == ("TPM", 18), f"max_concurrency=None does not apply: expected ('TPM', 18), got {found!r}"
    found = binding_limit(5_000, 25.0, rpm=10, max_concurrency=None)
    assert found == ("RPM", 10), f"rpm=10, max_concurrency=None: expected ('RPM', 10), got {found!r}"


# ★★ Exercise 2
def check_new_bucket(new_bucket: Callable[..., Any]) -> None:
    """Starts full, refills continuously at ``rate``, never above ``capacity``; paces real calls."""
    clock = VirtualClock()
    bucket = new_bucket(2, 5, clock)
    burst = [bucket.try_take() for _ in range(7)]
    assert burst == [True] * 5 + [False] * 2, f"a full bucket of 5 gives a burst of 5, then False: got {burst}"
    clock.now = 0.4
    assert not bucket.try_take(), "after 0.4 s at 2 a second, 0.8 has refilled: not a whole one yet"
    clock.now = 0.5
    assert bucket.try_take(), "after 0.5 s at 2 a second, 1.0 has refilled: try_take() must be True"
    clock.now = 1000
    earned = sum(bucket.try_take() for _ in range(20))
    assert earned == 5, f"idle time earns at most the capacity (5), got {earned} takes after a long idle"

    clock = VirtualClock()
    bucket = new_bucket(1, 3, clock)
    admitted = 0
    for k in range(600):  # a request every 0.1 s for 60 s
        clock.now = k / 10
        admitted += bool(bucket.try_take())
    assert admitted == 62, f"1 a second, capacity 3, asked every 0.1 s for 60 s: expected 62 admitted, got {admitted}"

    clock = VirtualClock()
    tokens = new_bucket(1_500, 1_500, clock)  # TPM 90,000: 1,500 tokens a second
    assert tokens.try_take(1_000), "a full bucket of 1,500 gives 1,000"
    assert not tokens.try_take(600), "500 left: 600 must be refused (and nothing taken)"
    assert tokens.try_take(500), "a refused take takes nothing: the 500 left are still there"

    # Real time: the bucket paces calls to a 1,200 RPM server (20 a second) for 0.5 s.
    pacer = new_bucket(20, 1)
    with FakeLLMServer(rpm=1200, latency=0) as srv, Transport(srv.url) as transport:
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            if pacer.try_take():
                transport.chat(PAYLOAD)
            else:
                time.sleep(0.002)
    paced = [a.fault for a in srv.attempts]
    refused = paced.count("rate_limited")
    assert refused == 0 and 8 <= len(paced) <= 13, (
        f"paced at 20 a second for 0.5 s with the default clock: expected 8 to 13 calls and no 429, "
        f"got {len(paced)} calls, {refused} refused"
    )


# ★★★ Exercise 3
class VirtualProvider:
    """The fake server's admission rule (RPM and TPM buckets holding 1 s of budget), in virtual time."""

    def __init__(self, rpm: float, tpm: float, clock: Callable[[], float]) -> None:
        self.buckets = {
            "requests": TokenBucket(rpm / 60, max(1.0, rpm / 60), clock),
            "tokens": TokenBucket(tpm / 60, max(1.0, tpm / 60), clock),
        }
        self.refused = 0

    def request(self, tokens: int) -> tuple[int, dict[str, str]]:
        need = {"requests": 1, "tokens": tokens}
        wait = max(bucket.wait_for(need[kind]) for kind, bucket in self.buckets.items())
        headers = {}
        for kind, bucket in self.buckets.items():
            if wait == 0:
                bucket.take(need[kind])
            headers[f"x-ratelimit-limit-{kind}"] = str(round(bucket.rate * 60))
            headers[f"x-ratelimit-remaining-{kind}"] = str(max(0, int(bucket.level)))
            headers[f"x-ratelimit-reset-{kind}"] = f"{bucket.reset_s():.3f}s"
        if wait:
            self.refused += 1
            headers["retry-after-ms"] = str(int(wait * 1000) + 1)
        return (429 if wait else 200), headers


def drive(pacer: Callable[[Mapping[str, str], int], float], sizes: list[int], rpm: float, tpm: float):
    """Send every request in order, waiting pacer(last headers, size) first; a 429 is retried
    after its Retry-After. Returns (429s, share of the binding limit's throughput)."""
    clock = VirtualClock()
    provider = VirtualProvider(rpm, tpm, clock)
    headers: dict[str, str] = {}
    for size in sizes:
        clock.sleep(pacer(headers, size))
        status, headers = provider.request(size)
        while status == 429:
            clock.sleep(parse_retry_after(headers))
            status, headers = provider.request(size)
    share = max(len(sizes) / (rpm / 60), sum(sizes) / (tpm / 60)) / clock()
    return provider.refused, share


def scenarios() -> dict[str, tuple[list[int], float, float]]:
    """label -> (request sizes in tokens, rpm, tpm): 300 calls where TPM bites, 200 where RPM does."""
    rng = random.Random(0)
    return {
        "TPM bites": ([rng.randint(100, 4_000) for _ in range(300)], 600, 90_000),
        "RPM bites": ([30] * 200, 60, 90_000),
    }


def _headers(requests: tuple[int, int, str], tokens: tuple[int, int, str]) -> dict[str, str]:
    """Rate-limit headers from (limit a minute, remaining, reset) for requests and for tokens."""
    headers = {}
    for kind, (limit, remaining, reset) in (("requests", requests), ("tokens", tokens)):
        headers |= {
            f"x-ratelimit-limit-{kind}": str(limit),
            f"x-ratelimit-remaining-{kind}": str(remaining),
            f"x-ratelimit-reset-{kind}": reset,
        }
    return headers


# (what the reply said, the next call's tokens, the shortest safe wait, why)
ONE_REPLY = [
    (_headers((600, 5, "0.5s"), (90_000, 5_000, "2.333s")), 1_200, 0.0, "enough requests and tokens remain"),
    (
        _headers((600, 5, "0.5s"), (90_000, 1_000, "0.333s")),
        1_200,
        0.2 / 1.5,
        "1,000 tokens remain, the call needs 1,200: wait until the missing 200 have refilled at 1,500 a second, "
        "not the whole reset",
    ),
    (
        _headers((60, 0, "1.000s"), (90_000, 50_000, "0.5s")),
        100,
        1.0,
        "no request remains at 60 RPM: wait for the request bucket's reset",
    ),
    (
        _headers((600, 5, "0.5s"), (90_000, 0, "2.5s")),
        100,
        2.5,
        "0 tokens remain: the bucket may be deep below zero after a large call, only the reset says how deep",
    ),
]


def check_adaptive_wait(adaptive_wait: Callable[[Mapping[str, str], int], float]) -> None:
    """The wait from one reply's headers, then no 429 and full throughput against a simulated provider."""
    got = adaptive_wait({}, 100)
    assert got == 0, f"no rate-limit headers give no advice: expected 0, got {got!r}"
    for headers, tokens, shortest, why in ONE_REPLY:
        got = adaptive_wait(headers, tokens)
        assert shortest <= got <= shortest + 0.05, (
            f"next call {tokens} tokens, headers {headers}: expected a wait from {shortest:.3f} s to "
            f"{shortest + 0.05:.3f} s, got {got!r} ({why})"
        )
    for label, (sizes, rpm, tpm) in scenarios().items():
        refused, share = drive(adaptive_wait, sizes, rpm, tpm)
        assert refused == 0 and share >= 0.95, (
            f"{label}: expected no 429 and at least 95 % of the limit's throughput, got {refused} x 429 and {share:.0%}"
        )
