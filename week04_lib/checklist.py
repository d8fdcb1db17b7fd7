"""The forced-failure checklist (`make demo`, `python -m week04_lib checklist`): every
failure the course names, forced against the embedded fake server and handled end to
end by ``LLMClient``. Each row: scenario, expected, observed, time, PASS/FAIL.

It grades any other client too: ``run_checks(all_checks(), make_client=make)``, where
``make(base_url, **settings)`` returns an object with ``.chat(messages, **params)`` that
returns something with a ``.text`` (and ``.cached`` if it caches) or raises an
``errors.LLMError``. ``settings`` are among ``PLAIN_SETTINGS`` (the names and meanings of
``ClientConfig``); a row that needs any other setting (a retry budget, a breaker, a
fallback model, a queue) is "n/a" for such a client.

Taught in notebook 01 (the self-check "can you show your client does not hang
forever?") and in notebook 05, which runs it and grades the workshop's own client with it.
Exit status 1 if any row fails.
"""

from __future__ import annotations

import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import errors
from .client import LLMClient
from .config import ClientConfig, Timeouts
from .fakeserver import FakeLLMServer, encoding

BUDGET = Timeouts(connect=1.0, read=1.0, total=1.5)
SLACK_S = 0.25  # how far past the total deadline a failure may land
HELLO = [{"role": "user", "content": "Is anyone there?"}]
# What a plain client's factory may be asked for (same names and meanings as ClientConfig)
PLAIN_SETTINGS = ("model", "timeouts", "max_attempts", "backoff_base", "backoff_cap", "cache")
PLAIN_BASE: dict[str, Any] = dict(
    model="fake-mini", timeouts=BUDGET, max_attempts=4, backoff_base=0.05, backoff_cap=0.5
)

ClientFactory = Callable[..., Any]  # make(base_url, **settings) -> an object with .chat(messages, **params)


@dataclass(frozen=True)
class Check:
    scenario: str
    expected: str
    # run(make=None) -> (observed, passed); ``make`` builds the client (None: LLMClient via client_for)
    run: Callable[..., tuple[str, bool]]


@dataclass(frozen=True)
class Row:
    scenario: str
    expected: str
    observed: str
    seconds: float
    passed: bool | None  # None: not applicable to the client graded

    @property
    def result(self) -> str:
        return "n/a" if self.passed is None else "PASS" if self.passed else "FAIL"


class NotApplicable(Exception):
    """A row needs a setting or a feature the graded client does not have."""


def client_for(url: str, **settings: Any) -> LLMClient:
    """A client with the checklist's budget: fast backoff, no retry budget, no cache."""
    base: dict[str, Any] = dict(
        base_url=url,
        model="fake-mini",
        timeouts=BUDGET,
        max_attempts=4,
        backoff_base=0.05,
        backoff_cap=0.5,
        retry_budget=None,
    )
    return LLMClient(ClientConfig(**{**base, **settings}))


def plain_factory(make_client: ClientFactory) -> ClientFactory:
    """``make_client`` with the checklist's budget; a row asking for any setting beyond
    PLAIN_SETTINGS is not applicable to it."""

    def make(url: str, **settings: Any) -> Any:
        beyond = sorted(set(settings) - set(PLAIN_SETTINGS))
        if beyond:
            raise NotApplicable(f"needs {', '.join(beyond)} (LLMClient only)")
        return make_client(url, **{**PLAIN_BASE, **settings})

    return make


@contextmanager
def opened(make: ClientFactory | None, url: str, **settings: Any) -> Iterator[Any]:
    """The client ``make`` builds (LLMClient when None), closed afterwards if it can be."""
    client = (make or client_for)(url, **settings)
    try:
        yield client
    finally:
        close = getattr(client, "close", None)
        if callable(close):
            close()


def outcome_of(call: Callable[[], Any]) -> str:
    """'ok', 'stale', 'cached', or the error's class name."""
    try:
        result = call()
    except errors.LLMError as exc:
        return type(exc).__name__
    return "stale" if getattr(result, "stale", False) else "cached" if getattr(result, "cached", False) else "ok"


def _kinds(error: type) -> set[str]:
    """The class and all its subclasses' names: LLMTimeout covers DeadlineExceeded."""
    return {error.__name__} | {name for sub in error.__subclasses__() for name in _kinds(sub)}


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"


def one_call(
    scenario: str,
    script: Sequence[str],
    expect: str | type,
    requests: int | None = None,
    default: str = "ok",
    server: dict[str, Any] | None = None,
    **settings: Any,
) -> Check:
    """One ``client.chat`` against ``script`` (``server``: more FakeLLMServer options): the
    outcome (an error class covers its subclasses), how many requests reached the server,
    and within the total budget."""
    wanted = _kinds(expect) if isinstance(expect, type) else {expect}
    name = expect.__name__ if isinstance(expect, type) else expect
    expected = name + (f" after {requests} request(s)" if requests else "") + f", <= {BUDGET.total + SLACK_S:g}s"

    def run(make: ClientFactory | None = None) -> tuple[str, bool]:
        start = time.monotonic()
        with (
            FakeLLMServer(script, default=default, latency=0, **(server or {})) as srv,
            opened(make, srv.url, **settings) as client,
        ):
            outcome = outcome_of(lambda: client.chat(HELLO, temperature=0))
        elapsed = time.monotonic() - start
        sent = len(srv.attempts)
        passed = outcome in wanted and (requests is None or sent == requests) and elapsed <= BUDGET.total + SLACK_S
        return f"{outcome} after {sent} request(s)", passed

    return Check(scenario, expected, run)


def connection_refused() -> Check:
    def run(make: ClientFactory | None = None) -> tuple[str, bool]:
        start = time.monotonic()
        with opened(make, _closed_port_url(), max_attempts=2) as client:
            outcome = outcome_of(lambda: client.chat(HELLO))
        return outcome, outcome == "ConnectionFailed" and time.monotonic() - start <= BUDGET.total + SLACK_S

    return Check("connection refused", "ConnectionFailed, <= 1.75s", run)


def compressed_reply(coding: str = "gzip") -> Check:
    def run(make: ClientFactory | None = None) -> tuple[str, bool]:
        with FakeLLMServer(compress=coding, latency=0) as srv, opened(make, srv.url) as client:
            text = client.chat(HELLO).text
        sent = encoding.negotiate(coding, srv.attempts[0].headers.get("Accept-Encoding")) or "plain"
        return f"{sent} body decoded: {text[:22]!r}...", sent == coding and HELLO[0]["content"] in text

    return Check(f"{coding}-compressed reply", "answered, text decoded", run)


def retry_after_honoured() -> Check:
    def run(make: ClientFactory | None = None) -> tuple[str, bool]:
        with (
            FakeLLMServer(["429:retry-after=1", "ok"], latency=0) as srv,
            opened(make, srv.url, timeouts=Timeouts(1, 1, 3)) as client,
        ):
            outcome = outcome_of(lambda: client.chat(HELLO))
        waited = srv.attempts[1].t - srv.attempts[0].t
        return f"{outcome}, retried after {waited:.2f}s", outcome == "ok" and waited >= 1.0

    return Check("429 with Retry-After: 1", "ok, second request >= 1s later", run)


def drop_with_idempotency() -> Check:
    def run(make: ClientFactory | None = None) -> tuple[str, bool]:
        with FakeLLMServer(["drop", "ok"], latency=0) as srv, opened(make, srv.url) as client:
            outcome = outcome_of(lambda: client.chat(HELLO))
        observed = f"{outcome}, {len(srv.attempts)} requests, billed {srv.billed_requests}x"
        return observed, outcome == "ok" and len(srv.attempts) == 2 and srv.billed_requests == 1

    return Check("drop (work done, answer lost), retried", "ok, billed once (Idempotency-Key)", run)


def outage_with_budget(calls: int = 100) -> Check:
    def run(make: ClientFactory | None = None) -> tuple[str, bool]:
        with (
            FakeLLMServer(default="503", latency=0) as srv,
            opened(
                make, srv.url, retry_budget=0.1, backoff_base=0.001, backoff_cap=0.01, breaker_failures=10**6
            ) as client,
        ):
            for _ in range(calls):
                outcome_of(lambda: client.chat(HELLO))
        per_call = len(srv.attempts) / calls
        return f"{per_call:.2f} requests per call", per_call <= 1.15

    return Check(f"outage, {calls} calls, 10% retry budget", "<= 1.15 requests per call (no budget: 4)", run)


def flaky_service(share: float = 0.3, calls: int = 200) -> Check:
    """A service that fails a share of requests at random: retries pay, the adaptive
    throttle must let them (a fixed 10 % budget answered 39 % here)."""

    def run(make: ClientFactory | None = None) -> tuple[str, bool]:
        mix = {"ok": 1 - share, "503": share}
        with FakeLLMServer(mix=mix, seed=5, latency=0) as srv, opened(make, srv.url, backoff_base=0.001) as client:
            answered = sum(outcome_of(lambda: client.chat(HELLO)) == "ok" for _ in range(calls))
        return (
            f"{answered / calls:.0%} answered, {len(srv.attempts) / calls:.2f} requests per call",
            answered >= 0.95 * calls,
        )

    return Check(f"{share:.0%} of requests fail ({calls} calls)", "at least 95% of calls answered", run)


def limited_burst(rpm: int = 2400, calls: int = 40, threads: int = 8) -> Check:
    def run(make: ClientFactory | None = None) -> tuple[str, bool]:
        with FakeLLMServer(rpm=rpm, latency=0) as srv, opened(make, srv.url, rpm=rpm) as client:
            with ThreadPoolExecutor(threads) as pool:
                outcomes = list(pool.map(lambda i: outcome_of(lambda: client.chat(HELLO)), range(calls)))
        refused = sum(a.fault == "rate_limited" for a in srv.attempts)
        observed = f"{outcomes.count('ok')}/{calls} ok, {refused} x 429"
        return observed, refused == 0 and outcomes.count("ok") == calls

    return Check(f"burst: {threads} threads, server limit {rpm} RPM, client rpm={rpm}", "all ok, no 429", run)


def fallback_answers() -> Check:
    def run(make: ClientFactory | None = None) -> tuple[str, bool]:
        with (
            FakeLLMServer(model_faults={"fake-large": "503"}, latency=0) as srv,
            opened(make, srv.url, model="fake-large", fallback_models=["fake-mini"], max_attempts=2) as client,
        ):
            result = client.chat(HELLO)
        return f"answered by {result.model}", result.model == "fake-mini"

    return Check("primary model down (503)", "the fallback model answers", run)


def stale_when_all_down() -> Check:
    def run(make: ClientFactory | None = None) -> tuple[str, bool]:
        with (
            FakeLLMServer(["ok"], default="503", latency=0) as srv,
            opened(make, srv.url, cache="memory", cache_ttl_s=0.05, serve_stale=True, max_attempts=1) as client,
        ):
            client.chat(HELLO, temperature=0)
            time.sleep(0.06)  # the cached answer expires; the server is down
            outcome = outcome_of(lambda: client.chat(HELLO, temperature=0))
        return f"{outcome} answer served", outcome == "stale"

    return Check("every model down, serve_stale=True", "an earlier answer, marked stale", run)


def queue_then_drain() -> Check:
    def run(make: ClientFactory | None = None) -> tuple[str, bool]:
        with tempfile.TemporaryDirectory() as folder, FakeLLMServer(["503", "503"], latency=0) as srv:
            with opened(
                make,
                srv.url,
                fallback_models=["fake-large"],
                max_attempts=1,
                queue_path=str(Path(folder) / "queue.sqlite"),
            ) as client:
                outcome = outcome_of(lambda: client.chat(HELLO))
                first, again = client.drain_queue(), client.drain_queue()
        observed = f"{outcome}; drained {len(first.sent)}, then {len(again.sent)}; billed {srv.billed_requests}x"
        return observed, outcome == "QueuedForLater" and len(first.sent) == 1 and srv.billed_requests == 1

    return Check("every model down, queue_path set", "queued, drained once, billed once", run)


def twice(scenario: str, script: Sequence[str], expected: str, requests: int, **params: Any) -> Check:
    """The same call twice through a client with a memory cache."""

    def run(make: ClientFactory | None = None) -> tuple[str, bool]:
        with FakeLLMServer(script, latency=0) as srv, opened(make, srv.url, cache="memory", max_attempts=1) as client:
            outcomes = [outcome_of(lambda: client.chat(HELLO, **params)) for _ in range(2)]
        observed = f"{' then '.join(outcomes)}; {len(srv.attempts)} request(s)"
        return observed, len(srv.attempts) == requests

    return Check(scenario, expected, run)


def breaker_opens_and_recovers(failures: int = 3, reset_s: float = 0.3) -> Check:
    def run(make: ClientFactory | None = None) -> tuple[str, bool]:
        with (
            FakeLLMServer(["503"] * failures, latency=0) as srv,
            opened(make, srv.url, max_attempts=1, breaker_failures=failures, breaker_reset_s=reset_s) as client,
        ):
            outcomes = [outcome_of(lambda: client.chat(HELLO)) for _ in range(failures + 3)]
            sent_while_open = len(srv.attempts) - failures
            time.sleep(reset_s)  # the breaker's reset time; then one probe goes through
            probe = outcome_of(lambda: client.chat(HELLO))
            state = client.breakers["fake-mini"].state
        fast = outcomes.count("CircuitOpen")
        observed = f"{fast} failed fast, {sent_while_open} sent while open; probe {probe}, {state}"
        return observed, fast == 3 and sent_while_open == 0 and probe == "ok" and state == "closed"

    return Check(f"{failures} x 503: breaker", "opens, fails fast, sends nothing; a probe closes it", run)


def all_checks() -> list[Check]:
    return [
        one_call("hang (accept, never answer)", [], errors.LLMTimeout, default="hang"),
        one_call("trickle (1 byte / 0.2 s)", ["trickle:0.2"], errors.DeadlineExceeded),
        one_call("header trickle (1 header line / 0.3 s)", ["header_trickle:0.3"], errors.DeadlineExceeded),
        connection_refused(),
        one_call("connection reset", ["reset"], errors.ConnectionFailed, requests=1, max_attempts=1),
        one_call("500 then ok", ["500", "ok"], "ok", requests=2),
        one_call("503 then ok", ["503", "ok"], "ok", requests=2),
        retry_after_honoured(),
        one_call("401 (bad key): not retried", ["401", "ok"], errors.AuthError, requests=1),
        one_call("404 (bad model): not retried", ["404", "ok"], errors.NotFound, requests=1),
        one_call("429 insufficient_quota: not retried", ["insufficient_quota", "ok"], errors.QuotaExceeded, requests=1),
        compressed_reply("gzip"),
        one_call("server takes UUID request ids only", [], "ok", requests=1, server={"strict_request_id": True}),
        one_call("invalid JSON body", ["invalid_json"], errors.InvalidResponse, requests=1, max_attempts=1),
        one_call("invalid JSON, then ok", ["invalid_json", "ok"], "ok", requests=2),
        one_call("HTML error page", ["html"], errors.InvalidResponse, requests=1, max_attempts=1),
        one_call("JSON without choices", ["empty"], errors.InvalidResponse, requests=1, max_attempts=1),
        drop_with_idempotency(),
        outage_with_budget(),
        limited_burst(),
        fallback_answers(),
        stale_when_all_down(),
        queue_then_drain(),
        twice("same request twice (temperature 0)", [], "second from cache: 1 request", 1, temperature=0),
        twice("an error is not cached", ["503"], "error, then asked again: 2 requests", 2, temperature=0),
        twice("temperature 0.7 without seed", [], "not cached: 2 requests", 2, temperature=0.7),
        breaker_opens_and_recovers(),
        flaky_service(),
    ]


def run_checks(checks: Sequence[Check], make_client: ClientFactory | None = None) -> list[Row]:
    """Each check's row, for LLMClient or, given ``make_client(base_url, **settings)``,
    for the client it makes (see the module's docstring)."""
    make = None if make_client is None else plain_factory(make_client)
    rows = []
    for check in checks:
        start = time.monotonic()
        passed: bool | None
        try:
            observed, passed = check.run() if make is None else check.run(make)
        except NotApplicable as exc:
            observed, passed = f"not applicable: {exc}", None
        except Exception as exc:  # a crash is a failed row, not a crashed checklist
            observed, passed = f"crashed: {type(exc).__name__}: {exc}", False
        rows.append(Row(check.scenario, check.expected, observed, time.monotonic() - start, passed))
    return rows


def format_rows(rows: Sequence[Row]) -> str:
    header = ("scenario", "expected", "observed", "time", "result")
    cells = [header] + [(r.scenario, r.expected, r.observed, f"{r.seconds:.2f}s", r.result) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    print(
        "Forced-failure checklist: LLMClient against the embedded fake server "
        f"(budget: connect {BUDGET.connect:g}s, read {BUDGET.read:g}s, total {BUDGET.total:g}s)\n"
    )
    rows = run_checks(all_checks())
    print(format_rows(rows))
    failed = sum(r.passed is False for r in rows)
    print(f"\n{len(rows) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
