"""The self-checks of notebook 05's exercises and workshop: each raises AssertionError
with a message that says what is wrong, and returns a short line of evidence.

Loaded by path (``week04_lib.exercises.load_file``), like ``solutions/05_solutions.py``; tests/test_checks_05.py
shows that each one fails for wrong answers.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from week04_lib import ChatResult, ClientConfig, LLMClient, Timeouts, errors
from week04_lib.checklist import HELLO, PLAIN_BASE, Row, all_checks, run_checks
from week04_lib.fakeserver import FakeLLMServer


def _outcome(call: Callable[[], Any]) -> Any:
    """The call's answer, or the LLMError it raised."""
    try:
        return call()
    except errors.LLMError as exc:
        return exc


def _name(outcome: Any) -> str:
    return type(outcome).__name__ if isinstance(outcome, BaseException) else "an answer"


# ★ Exercise 1 -------------------------------------------------------------------------

DESK_KEY = "sk-help-desk-0123456789abcdef"
QUESTION = [{"role": "user", "content": "How do I reset my password?"}]


def check_help_desk_config(fn: Callable[..., Any]) -> str:
    with FakeLLMServer(model_faults={"fake-large": "503"}, latency=0, api_key=DESK_KEY) as srv:
        desk = fn(srv.url, DESK_KEY)
        assert isinstance(desk, ClientConfig), f"return a ClientConfig, not {type(desk).__name__}"
        assert (desk.model, list(desk.fallback_models)) == ("fake-large", ["fake-mini"]), (
            f"model {desk.model!r} with fallbacks {list(desk.fallback_models)}: the primary is fake-large, "
            "fake-mini answers when it is out"
        )
        assert desk.timeouts == Timeouts.preset("quick_chat"), f"{desk.timeouts}: a person waits, use quick_chat"
        assert desk.max_attempts == 3, f"max_attempts={desk.max_attempts}: at most 3 attempts per model"
        assert (desk.backoff_base, desk.backoff_cap) == (0.1, 1.0), (
            f"backoff {desk.backoff_base}..{desk.backoff_cap} s: from 0.1 s, never more than 1 s"
        )
        assert desk.rpm == 6000, f"rpm={desk.rpm}: stay under the account's 6,000 requests a minute"
        assert (desk.cache, desk.cache_ttl_s) == ("memory", 3600), (
            f"cache={desk.cache!r}, cache_ttl_s={desk.cache_ttl_s}: answers in memory for an hour"
        )
        assert desk.serve_stale, "serve_stale: an earlier answer beats an error page"
        assert DESK_KEY not in repr(desk), "the key shows in the config's repr"
        with LLMClient(dataclasses.replace(desk, base_url=srv.url)) as client:
            first = _outcome(lambda: client.chat(QUESTION, temperature=0))
            again = _outcome(lambda: client.chat(QUESTION, temperature=0))
        models = [a.body["model"] for a in srv.attempts]
    assert isinstance(first, ChatResult), f"the first call failed: {first!r} (is the key passed on?)"
    assert first.model == "fake-mini" and not first.cached, f"fake-mini should answer the first call: {first}"
    assert isinstance(again, ChatResult) and again.cached, f"the repeat should come from the cache: {again!r}"
    assert models[:4] == ["fake-large"] * 3 + ["fake-mini"], f"requests sent, by model: {models}"
    return f"fake-large x3, then fake-mini answered; the repeat: fake-large x{len(models) - 4}, then the cache"


# ★★ Exercise 2 ------------------------------------------------------------------------

OUTCOMES = ("answered", "fallback", "cached", "stale", "failed")


def _answer(model: str, cached: bool = False, stale: bool = False) -> ChatResult:
    return ChatResult(
        text="hi", model=model, request_id="req_x", cached=cached, stale=stale, attempts=1, latency_s=0.01,
        usage=None, cost_usd=0.0,  # type: ignore[arg-type]
    )  # fmt: skip


def _budget_spent(cause: errors.LLMError) -> errors.RetryBudgetExhausted:
    error = errors.RetryBudgetExhausted("not retried")
    error.__cause__ = cause
    return error


def check_summarize_outcomes(fn: Callable[..., Any]) -> str:
    made_up = [
        _answer("fake-mini"), _answer("fake-large"), _answer("fake-mini", cached=True),
        _answer("fake-large", stale=True), errors.ServerError("503"), _budget_spent(errors.ConnectionFailed("reset")),
        errors.AllModelsFailed("both", errors=[_budget_spent(errors.ServerError("503")), errors.ReadTimeout("t")]),
    ]  # fmt: skip
    summary = fn(made_up, "fake-mini")
    assert isinstance(summary, dict), f"return a dict, not {type(summary).__name__}"
    counts = {k: summary.get(k) for k in OUTCOMES}
    wanted = {"answered": 1, "fallback": 1, "cached": 1, "stale": 1, "failed": 3}
    assert counts == wanted, f"outcome counts {counts}, expected {wanted} (stale before cached, fallback: not primary)"
    assert summary.get("served") == round(4 / 7, 4), f"served={summary.get('served')}, expected {round(4 / 7, 4)}"
    causes = {"ServerError": 2, "ConnectionFailed": 1, "ReadTimeout": 1}
    assert summary.get("causes") == causes, (
        f"causes={summary.get('causes')}, expected {causes}: unwrap AllModelsFailed.errors and the "
        "__cause__ of RetryBudgetExhausted, at any depth"
    )
    empty = fn([], "fake-mini")
    assert empty.get("failed") == 0 and empty.get("causes") == {}, f"no calls: {empty}"
    return f"7 made-up outcomes: served {summary['served']:.1%}, causes {summary['causes']}"


# ★★★ Exercise 3 -----------------------------------------------------------------------

SLOW_S, HEDGE_AFTER_S = 0.8, 0.15  # a fast answer (latency 0) is in well before 0.15 s, even on a busy machine


def _question(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Question {i}"}]


def _hedges_the_slow(fn: Callable[..., Any]) -> str:
    """20 calls, a quarter of them slow: each slow one hedged, answered fast, billed once."""
    seconds = []
    with FakeLLMServer(mix={"ok": 0.75, f"slow:{SLOW_S}": 0.25}, seed=3, latency=0) as srv:
        with LLMClient(ClientConfig(base_url=srv.url, model="fake-mini", timeouts=Timeouts(1, 1, 2))) as client:
            for i in range(20):
                t0 = time.monotonic()
                result = _outcome(lambda i=i: fn(client, _question(i), hedge_after_s=HEDGE_AFTER_S, temperature=0))
                seconds.append(time.monotonic() - t0)
                assert isinstance(result, ChatResult) and result.text.startswith(f"Re: 'Question {i}'"), (
                    f"call {i}: expected its ChatResult, got {result!r}"
                )
            time.sleep(SLOW_S + 0.05)  # let the slow originals finish before the server stops
        faults = [a.fault for a in srv.attempts]
        keys = [a.headers.get("Idempotency-Key") for a in srv.attempts]
        billed = srv.billed_requests
    hedges = len(faults) - 20
    assert faults.count(f"slow:{SLOW_S}") == 5 and hedges == 5, (
        f"{hedges} hedges for 5 slow first requests ({faults}): hedge each slow call once, no other"
    )
    assert len(set(keys)) == 20 and billed == 20, (
        f"{len(set(keys))} idempotency keys, billed {billed}: the hedge must reuse its call's request id"
    )
    assert max(seconds) < SLOW_S * 0.75, f"slowest call {max(seconds):.2f} s: the first answer should win"
    return f"5 of 20 calls hedged, {len(faults)} requests, billed {billed}, slowest {max(seconds):.2f} s"


def _short_client(url: str) -> LLMClient:
    """One attempt, read timeout 0.3 s, total 0.6 s: failures come fast and typed."""
    return LLMClient(ClientConfig(base_url=url, model="fake-mini", timeouts=Timeouts(1, 0.3, 0.6), max_attempts=1))


def _fast_failure_not_hedged(fn: Callable[..., Any]) -> str:
    with FakeLLMServer(["400", "ok"], latency=0) as srv, _short_client(srv.url) as client:
        outcome = _outcome(lambda: fn(client, _question(0), hedge_after_s=HEDGE_AFTER_S, temperature=0))
        time.sleep(3 * HEDGE_AFTER_S)  # a hedge sent after the failure has arrived by now
        sent = len(srv.attempts)
    assert isinstance(outcome, errors.BadRequest) and sent == 1, (
        f"a call that failed at once (a 400) must not be hedged: expected BadRequest after 1 request, "
        f"got {_name(outcome)} after {sent}"
    )
    return "a 400 raised at once, not hedged"


def _both_fail_first_error(fn: Callable[..., Any]) -> str:
    # the original hangs (ReadTimeout at 0.3 s); the hedge, sent at 0.15 s, trickles until its deadline (0.75 s)
    with FakeLLMServer(["hang", "trickle:0.1"], latency=0) as srv, _short_client(srv.url) as client:
        outcome = _outcome(lambda: fn(client, _question(0), hedge_after_s=HEDGE_AFTER_S, temperature=0))
        sent = len(srv.attempts)
    assert sent == 2, f"the original hung: it should have been hedged once, {sent} request(s) sent"
    assert isinstance(outcome, errors.ReadTimeout), (
        "both failed, the original first (ReadTimeout at 0.3 s), the hedge later (DeadlineExceeded at 0.75 s): "
        f"raise the first error, got {_name(outcome)}"
    )
    return "both failed: the first error raised"


def check_hedged_chat(fn: Callable[..., Any]) -> str:
    return "; ".join(check(fn) for check in (_fast_failure_not_hedged, _both_fail_first_error, _hedges_the_slow))


# The workshop: your llm_client.py ------------------------------------------------------


def unfinished(make_client: Callable[..., Any]) -> str | None:
    """What your client still leaves undone (its NotImplementedError), or None once a call
    to a healthy server goes through it."""
    with FakeLLMServer(latency=0) as srv:
        try:
            client = make_client(srv.url, **PLAIN_BASE)
            try:
                client.chat(HELLO, temperature=0)
            finally:
                getattr(client, "close", lambda: None)()
        except NotImplementedError as exc:
            return str(exc) or "NotImplementedError"
        except Exception:  # attempted, and wrong: the checklist says how
            return None
    return None


def check_rows(rows: Sequence[Row]) -> str:
    """Every row that applies to your client passes (and some do)."""
    applicable = [row for row in rows if row.passed is not None]
    assert applicable, "no row of the checklist applies to this client"
    failed = [f"{row.scenario}: {row.observed} (expected {row.expected})" for row in rows if row.passed is False]
    assert not failed, f"{len(failed)} row(s) failed:\n  " + "\n  ".join(failed)
    return f"{len(applicable)} of {len(applicable)} applicable rows passed ({len(rows) - len(applicable)} n/a)"


def check_make_client(make_client: Callable[..., Any], checks: Sequence[Any] | None = None) -> str:
    return check_rows(run_checks(all_checks() if checks is None else checks, make_client=make_client))


LOG_KEY = "sk-workshop-never-in-a-log-0123456789"


def check_make_client_logs(make_client: Callable[..., Any]) -> str:
    """An answered call and a failed one (401): one ``final`` line each, with its request id,
    model, latency and outcome; ``attempt`` lines under them; the key nowhere."""
    with tempfile.TemporaryDirectory() as folder, FakeLLMServer(["ok", "401"], latency=0) as srv:
        path = Path(folder) / "calls.jsonl"
        client = make_client(srv.url, **PLAIN_BASE, api_key=LOG_KEY, log_path=str(path))
        try:
            answer = _outcome(lambda: client.chat(HELLO, temperature=0))
            failure = _outcome(lambda: client.chat(HELLO, temperature=0))
        finally:
            getattr(client, "close", lambda: None)()
        text = path.read_text() if path.exists() else ""
    assert not isinstance(answer, BaseException), f"the first call should be answered: {answer!r}"
    assert isinstance(failure, errors.AuthError), f"a 401 should raise AuthError, got {_name(failure)}"
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    finals = [line for line in lines if line.get("event") == "final"]
    assert len(finals) == 2, f"{len(finals)} final line(s) for 2 calls: log exactly one per call, answered or not"
    ok, failed = finals
    assert ok.get("request_id") == getattr(answer, "request_id", None) and ok.get("request_id") != failed.get(
        "request_id"
    ), f"each call's final line carries its own request id: {[f.get('request_id') for f in finals]}"
    assert ok.get("model") == "fake-mini" and isinstance(ok.get("latency_s"), (int, float)), f"final line: {ok}"
    assert (ok.get("success"), failed.get("success")) == (True, False), f"success fields: {ok}, {failed}"
    assert failed.get("error_type") == errors.AuthError.error_type, f"the failed call's error_type: {failed}"
    attempts = sum(line.get("event") == "attempt" for line in lines)
    assert attempts >= 2, f"{attempts} attempt line(s) for 2 requests: log one per request"
    assert LOG_KEY not in text, "the API key is in the log: give log_to the secrets to scrub"
    return f"{len(lines)} log lines: 2 final, {attempts} attempt; request ids, outcomes, no key"
