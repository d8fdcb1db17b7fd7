"""`make bench`: side-by-side measurements against the fake server, in one run.

Each figure is the median of RUNS runs; the table and the machine go to bench/RESULTS.md.
Not a test: nothing here asserts, it measures. Sections are added part by part.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from week04_lib import errors
from week04_lib.fakeserver import FakeLLMServer
from week04_lib.ratelimit import RateLimiter, estimate_tokens
from week04_lib.retry import RetryPolicy, wait_backoff
from week04_lib.transport import Transport

RUNS = 3
PAYLOAD = {"model": "fake-mini", "messages": [{"role": "user", "content": "Summarise the incident in one line."}]}


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


# ---------------------------------------------------------------- rate limiting (part 03)


def goodput(rpm: int, seconds: float, threads: int, limited: bool) -> tuple[float, int]:
    """Share of ``rpm`` answered in ``seconds`` by ``threads`` busy threads, and 429s received.
    Both clients retry with backoff and honour Retry-After; one also has the limiter."""
    limiter = RateLimiter(rpm=rpm) if limited else None
    policy = RetryPolicy(4, wait=wait_backoff("full", 0.05, 2.0))
    answered = 0
    lock = threading.Lock()
    with FakeLLMServer(rpm=rpm, latency=0) as srv, Transport(srv.url) as transport:
        end = time.monotonic() + seconds

        def call() -> None:
            if limiter is None:
                return transport.chat(PAYLOAD)
            with limiter.acquire(estimate_tokens(PAYLOAD["messages"]), deadline=end):
                return transport.chat(PAYLOAD)

        def worker(_: int) -> None:
            nonlocal answered
            while time.monotonic() < end:
                try:
                    policy.call(lambda n: call(), deadline=end)
                except errors.LLMError:
                    continue
                if time.monotonic() <= end:
                    with lock:
                        answered += 1

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(worker, range(threads)))
        refused = sum(a.fault == "rate_limited" for a in srv.attempts)
    return answered / (rpm / 60 * seconds), refused


def rate_limit_section(rpm: int = 600, seconds: float = 10.0, threads: int = 8) -> list[str]:
    rows = []
    for label, limited in (("no limiter (retries honour Retry-After)", False), ("RateLimiter(rpm=R)", True)):
        shares, refusals = zip(*(goodput(rpm, seconds, threads, limited) for _ in range(RUNS)), strict=True)
        rows.append(f"| {label} | {statistics.median(shares):.1%} | {statistics.median(refusals):.0f} |")
    return [
        f"### Goodput under a server limit (R = {rpm} RPM, {threads} threads, {seconds:g} s, median of {RUNS})",
        "",
        "| client | answered, share of R | 429s received |",
        "|---|---|---|",
        *rows,
        "",
        "The server's bucket holds one second of budget, so a client without a limiter can",
        "exceed R briefly at the start; it pays for it in 429s.",
    ]


SECTIONS: list[Callable[[], list[str]]] = [rate_limit_section]


def main() -> int:
    started = time.monotonic()
    lines = ["# Benchmarks", "", f"Machine: {machine()}. Every figure: median of {RUNS} runs, in one process.", ""]
    for section in SECTIONS:
        part = section()
        print("\n".join(part), flush=True)
        lines += [*part, ""]
    lines.append(f"Total time: {time.monotonic() - started:.0f} s. Rerun with `make bench`.")
    Path(__file__).with_name("RESULTS.md").write_text("\n".join(lines) + "\n")
    print(f"\nwritten to bench/RESULTS.md in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
