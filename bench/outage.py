"""The first seconds of an outage, met by a warm client (issue 12).

The sweep's 100% point starts every client cold. Here each client first makes
WARM_CALLS answered calls (its retry throttle and breaker full of successes), then the
server answers 503 to everything, and THREADS threads go on calling, each at most one
call every PACE_S (a steady load, not a tight loop of refused calls), for WINDOW_S.
Reported: calls started and requests received in that window, and their ratio.

Run it alone with ``python bench/run.py outage``.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from sweep import CLIENTS, KINDS, caller

from week04_lib.fakeserver import FakeLLMServer

WARM_CALLS = 400
WINDOW_S = 10.0
THREADS = 8
PACE_S = 0.05  # each thread starts at most 20 calls a second


def outcome(call, i: int) -> str:  # type: ignore[no-untyped-def]
    try:
        call(i)
        return "answered"
    except Exception as exc:  # each client's own failure
        return type(exc).__name__


def run_client(client: str) -> tuple[int, int, Counter[str]]:
    """Calls started and requests received in the first WINDOW_S of the outage, and the
    calls' outcomes."""
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    with FakeLLMServer(script=["ok"] * WARM_CALLS, default="503", latency=0) as srv:
        with caller(client, KINDS[0], srv.url) as call:
            with ThreadPoolExecutor(THREADS) as pool:
                warm = Counter(pool.map(lambda i: outcome(call, i), range(WARM_CALLS)))
            assert warm == {"answered": WARM_CALLS}, warm  # the outage starts with the next request
            start = time.monotonic()

            def worker(thread: int) -> None:
                due, n = start, 0
                while time.monotonic() < start + WINDOW_S:
                    kind = outcome(call, WARM_CALLS + THREADS * n + thread)
                    n += 1
                    with lock:
                        outcomes[kind] += 1
                    due += PACE_S
                    time.sleep(max(0.0, due - time.monotonic()))

            with ThreadPoolExecutor(THREADS) as pool:
                list(pool.map(worker, range(THREADS)))
        requests = sum(start <= a.t < start + WINDOW_S for a in srv.attempts)
    return sum(outcomes.values()), requests, outcomes


def outage_section() -> list[str]:
    rows = []
    for client in CLIENTS:
        calls, requests, outcomes = run_client(client)
        seen = ", ".join(f"{kind} {n}" for kind, n in outcomes.most_common())
        rows.append(f"| {client} | {calls} | {requests} | {requests / max(calls, 1):.2f} | {seen} |")
    return [
        f"### The first {WINDOW_S:g} s of an outage, for a warm client ({THREADS} threads, one run)",
        "",
        f"Each client first has {WARM_CALLS} calls answered; then every request gets a 503 and each thread goes",
        f"on starting a call every {PACE_S * 1000:g} ms (or as soon as its previous call ends, if later) for",
        f"{WINDOW_S:g} s. Timeouts and backoff as in the 503 sweep below.",
        "",
        "| client | calls started | requests received | requests per call | calls' outcomes |",
        "|---|---|---|---|---|",
        *rows,
    ]
