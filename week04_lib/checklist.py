"""The forced-failure checklist (`make demo`): every failure the course names, forced
against the embedded fake server, expected vs observed, PASS/FAIL.

Taught in notebook 01 (the self-check "can you show your client does not hang
forever?") and grown by every later part. Exit status 1 if any row fails.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from . import errors
from .cache import MemoryCache, cache_key, cacheable, storable
from .circuit import CircuitBreaker
from .config import Timeouts
from .degrade import DurableQueue, first_success, stale_answer
from .fakeserver import FakeLLMServer
from .ratelimit import RateLimiter, estimate_tokens
from .retry import RetryBudget, RetryPolicy, new_request_id, wait_backoff
from .transport import Transport

BUDGET = Timeouts(connect=1.0, read=1.0, total=1.5)
SLACK_S = 0.25  # how far past the total deadline a failure may land
PAYLOAD = {"model": "fake-mini", "messages": [{"role": "user", "content": "Is anyone there?"}]}


@dataclass(frozen=True)
class Check:
    scenario: str
    expected: str
    run: Callable[[], tuple[str, bool]]  # returns (observed, passed)


@dataclass(frozen=True)
class Row:
    scenario: str
    expected: str
    observed: str
    seconds: float
    passed: bool


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _attempt(url: str) -> str:
    """One call through the transport; the outcome's class name."""
    transport = Transport(url)
    try:
        transport.chat(PAYLOAD, timeouts=BUDGET)
        return "ok"
    except errors.LLMError as exc:
        return type(exc).__name__
    finally:
        transport.close()


def expect_error(scenario: str, fault: str | None, error: type[errors.LLMError]) -> Check:
    """``fault`` against the fake server (None: a port nobody listens on) ends in ``error``
    within the total budget."""

    def run() -> tuple[str, bool]:
        start = time.monotonic()
        if fault is None:
            outcome = _attempt(f"http://127.0.0.1:{_closed_port()}/v1")
        else:
            with FakeLLMServer([fault], latency=0) as srv:
                outcome = _attempt(srv.url)
        in_time = time.monotonic() - start <= BUDGET.total + SLACK_S
        passed = outcome in _names(error) and in_time
        return outcome + ("" if in_time else " (too late)"), passed

    return Check(scenario, f"{error.__name__} in <= {BUDGET.total + SLACK_S:g}s", run)


def _names(error: type[errors.LLMError]) -> list[str]:
    """The class and all its subclasses' names: LLMTimeout covers DeadlineExceeded."""
    found, todo = [], [error]
    while todo:
        cls = todo.pop()
        found.append(cls.__name__)
        todo.extend(cls.__subclasses__())
    return found


def part01_checks() -> list[Check]:
    return [
        expect_error("hang (accept, never answer)", "hang", errors.LLMTimeout),
        expect_error("trickle (1 byte / 0.2 s)", "trickle:0.2", errors.DeadlineExceeded),
        expect_error("connection refused", None, errors.ConnectionFailed),
        expect_error("connection reset", "reset", errors.ConnectionFailed),
        expect_error("HTTP 500", "500", errors.ServerError),
        expect_error("HTTP 503", "503", errors.ServerError),
        expect_error("HTTP 401 (bad key)", "401", errors.AuthError),
        expect_error("HTTP 404 (bad model)", "404", errors.NotFound),
        expect_error("invalid JSON body", "invalid_json", errors.InvalidResponse),
        expect_error("HTML error page", "html", errors.InvalidResponse),
        expect_error("JSON without choices", "empty", errors.InvalidResponse),
    ]


def _retried_call(url: str, policy: RetryPolicy, idempotency_keys: bool = True) -> str:
    """One logical call with retries (one request id for all attempts); its outcome."""
    transport = Transport(url, idempotency_keys=idempotency_keys)
    rid = new_request_id()
    try:
        policy.call(lambda n: transport.chat(PAYLOAD, timeouts=BUDGET, request_id=rid, attempt=n), request_id=rid)
        return "ok"
    except errors.LLMError as exc:
        return type(exc).__name__
    finally:
        transport.close()


def expect_retries(scenario: str, script: Sequence[str], expected: str, judge: Callable[..., bool]) -> Check:
    """Run ``script`` through a retried call; ``judge(outcome, server, seconds)`` passes it."""

    def run() -> tuple[str, bool]:
        policy = RetryPolicy(4, wait=wait_backoff("full", base=0.05, cap=0.5))
        with FakeLLMServer(script, latency=0) as srv:
            start = time.monotonic()
            outcome = _retried_call(srv.url, policy)
            seconds = time.monotonic() - start
        observed = f"{outcome}, {len(srv.attempts)} attempt(s), billed {srv.billed_requests}x, waited {seconds:.2f}s"
        return observed, judge(outcome, srv, seconds)

    return Check(scenario, expected, run)


def outage_with_budget(calls: int = 100) -> Check:
    def run() -> tuple[str, bool]:
        policy = RetryPolicy(4, wait=wait_backoff("none", base=0.001, cap=0.01), budget=RetryBudget(0.1))
        with FakeLLMServer(default="503", latency=0) as srv:
            outcomes = {_retried_call(srv.url, policy) for _ in range(calls)}
        per_call = len(srv.attempts) / calls
        return f"{per_call:.2f} attempts/call ({', '.join(sorted(outcomes))})", per_call <= 1.15

    return Check(f"outage, {calls} calls, 10% retry budget", "<= 1.15 attempts per call (no budget: 4)", run)


def part02_checks() -> list[Check]:
    return [
        expect_retries(
            "503 then ok",
            ["503", "ok"],
            "ok on attempt 2",
            lambda outcome, srv, s: outcome == "ok" and len(srv.attempts) == 2,
        ),
        expect_retries(
            "429 with Retry-After: 1",
            ["429:retry-after=1", "ok"],
            "ok, waited >= 1s",
            lambda outcome, srv, s: outcome == "ok" and s >= 1.0,
        ),
        expect_retries(
            "401 is not retried",
            ["401", "ok"],
            "AuthError after 1 attempt",
            lambda outcome, srv, s: outcome == "AuthError" and len(srv.attempts) == 1,
        ),
        expect_retries(
            "drop, retried with idempotency key",
            ["drop", "ok"],
            "ok, billed once",
            lambda outcome, srv, s: outcome == "ok" and srv.billed_requests == 1,
        ),
        outage_with_budget(),
    ]


def limited_burst(rpm: int = 2400, calls: int = 40, threads: int = 8) -> Check:
    def run() -> tuple[str, bool]:
        limiter = RateLimiter(rpm=rpm)
        with FakeLLMServer(rpm=rpm, latency=0) as srv, Transport(srv.url) as transport:

            def one_call(_: int) -> None:
                with limiter.acquire(estimate_tokens(PAYLOAD["messages"])), contextlib.suppress(errors.LLMError):
                    transport.chat(PAYLOAD, timeouts=BUDGET)

            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(one_call, range(calls)))
        refused = sum(a.fault == "rate_limited" for a in srv.attempts)
        return f"{len(srv.attempts)} sent, {refused} x 429", refused == 0 and len(srv.attempts) == calls

    return Check(f"burst: {threads} threads, server at {rpm} RPM, limiter on", "no 429", run)


def _chain(srv: FakeLLMServer, models: list[str]) -> tuple[str, object]:
    policy = RetryPolicy(2, wait=wait_backoff("none", base=0.01, cap=0.01))
    with Transport(srv.url) as transport:
        return first_success(
            models, lambda m: policy.call(lambda n: transport.chat({**PAYLOAD, "model": m}, timeouts=BUDGET))
        )


def fallback_answers() -> Check:
    def run() -> tuple[str, bool]:
        with FakeLLMServer(model_faults={"fake-large": "503"}, latency=0) as srv:
            model, _ = _chain(srv, ["fake-large", "fake-mini"])
        return f"answered by {model}", model == "fake-mini"

    return Check("primary model down (503)", "the fallback model answers", run)


def stale_when_all_down() -> Check:
    def run() -> tuple[str, bool]:
        earlier = {"prompt-key": "an answer from an hour ago"}
        with FakeLLMServer(default="503", latency=0) as srv:
            try:
                _chain(srv, ["fake-large", "fake-mini"])
                return "answered?", False
            except errors.AllModelsFailed:
                value = stale_answer(earlier, "prompt-key")
        return ("stale answer served" if value else "nothing to serve"), value is not None

    return Check("every model down, stale allowed", "a stale answer, marked stale", run)


def queue_then_drain() -> Check:
    def run() -> tuple[str, bool]:
        with tempfile.TemporaryDirectory() as folder:
            queue = DurableQueue(Path(folder) / "queue.sqlite")
            rid = new_request_id()
            with FakeLLMServer(default="503", latency=0) as down:
                try:
                    _chain(down, ["fake-large", "fake-mini"])
                except errors.AllModelsFailed:
                    queue.enqueue(rid, PAYLOAD)
            queued = len(queue)
            with FakeLLMServer(latency=0) as up, Transport(up.url) as transport:
                queue.drain(lambda r, req: transport.chat(req, request_id=r, timeouts=BUDGET))
                queue.drain(lambda r, req: transport.chat(req, request_id=r, timeouts=BUDGET))  # nothing left
            observed = f"{queued} queued, {len(queue)} left after drain, billed {up.billed_requests}x"
            return observed, queued == 1 and len(queue) == 0 and up.billed_requests == 1

    return Check("every model down, queue allowed", "queued, then drained and billed once", run)


def part03_checks() -> list[Check]:
    return [limited_burst(), fallback_answers(), stale_when_all_down(), queue_then_drain()]


def _through_cache(transport: Transport, cache: MemoryCache, payload: dict) -> str:
    """The cache layer: a fresh hit, or a call whose complete answer is stored if allowed."""
    key = cache_key(payload, transport.base_url)
    if cache.get(key) is not None:
        return "cache hit"
    try:
        done = transport.chat(payload, timeouts=BUDGET)
    except errors.LLMError as exc:
        return type(exc).__name__
    if cacheable(payload)[0] and storable(done.raw):
        cache.put(key, done.raw)
    return "from server"


def expect_cache(scenario: str, script: Sequence[str], payload: dict, expected: str, sent: int) -> Check:
    def run() -> tuple[str, bool]:
        cache = MemoryCache()
        with FakeLLMServer(script, latency=0) as srv, Transport(srv.url) as transport:
            outcomes = [_through_cache(transport, cache, payload) for _ in range(2)]
        observed = f"{' then '.join(outcomes)}; {len(srv.attempts)} request(s), {len(cache)} cached"
        return observed, len(srv.attempts) == sent

    return Check(scenario, expected, run)


def breaker_opens_and_recovers(failures: int = 3, reset_s: float = 0.3) -> Check:
    def run() -> tuple[str, bool]:
        breaker = CircuitBreaker("fake-mini", failures=failures, reset_s=reset_s)
        with FakeLLMServer(["503"] * failures, latency=0) as srv, Transport(srv.url) as transport:

            def attempt() -> str:
                try:
                    breaker.call(lambda: transport.chat(PAYLOAD, timeouts=BUDGET))
                    return "ok"
                except errors.LLMError as exc:
                    return type(exc).__name__

            outcomes = [attempt() for _ in range(failures + 4)]
            sent_while_open = len(srv.attempts) - failures
            time.sleep(reset_s)  # the breaker's own reset time, then one probe
            recovered = attempt()
        fast = outcomes.count("CircuitOpen")
        observed = f"opened after {failures}, {fast} failed fast ({sent_while_open} sent), probe: {recovered}"
        return observed, fast == 4 and sent_while_open == 0 and recovered == "ok" and breaker.state == "closed"

    return Check("outage: 503s, then recovery", "opens, fails fast with no request, a probe closes it", run)


def part04_checks() -> list[Check]:
    deterministic = {**PAYLOAD, "temperature": 0}
    return [
        expect_cache("same request twice (temperature 0)", [], deterministic, "second from cache, 1 request", 1),
        expect_cache("an error is not cached", ["503"], deterministic, "error, then from server", 2),
        expect_cache("temperature 0.7, no seed", [], {**PAYLOAD, "temperature": 0.7}, "not cached, 2 requests", 2),
        breaker_opens_and_recovers(),
    ]


def all_checks() -> list[Check]:
    return part01_checks() + part02_checks() + part03_checks() + part04_checks()


def run_checks(checks: Sequence[Check]) -> list[Row]:
    rows = []
    for check in checks:
        start = time.monotonic()
        try:
            observed, passed = check.run()
        except Exception as exc:  # a crash is a failed row, not a crashed checklist
            observed, passed = f"crashed: {type(exc).__name__}: {exc}", False
        rows.append(Row(check.scenario, check.expected, observed, time.monotonic() - start, passed))
    return rows


def format_rows(rows: Sequence[Row]) -> str:
    header = ("scenario", "expected", "observed", "time", "result")
    cells = [header] + [
        (r.scenario, r.expected, r.observed, f"{r.seconds:.2f}s", "PASS" if r.passed else "FAIL") for r in rows
    ]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    print(
        f"Forced-failure checklist against the embedded fake server "
        f"(budget: connect {BUDGET.connect:g}s, read {BUDGET.read:g}s, total {BUDGET.total:g}s)\n"
    )
    rows = run_checks(all_checks())
    print(format_rows(rows))
    failed = sum(not r.passed for r in rows)
    print(f"\n{len(rows) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
