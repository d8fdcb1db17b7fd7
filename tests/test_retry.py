"""The retry policy against the fake server (real sockets), sleeping in virtual time."""

import logging
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from week04_lib import errors
from week04_lib.fakeserver import FakeLLMServer
from week04_lib.retry import RetryBudget, RetryPolicy, new_request_id, parse_retry_after, wait_backoff
from week04_lib.transport import Transport
from week04_lib.virtual_time import VirtualClock

from .conftest import HELLO

PAYLOAD = {"model": "fake-mini", "messages": HELLO}


def run(script, *, default="ok", max_attempts=4, deadline=None, budget=None, kind="none", keys=True, clock=None):
    """One logical call through RetryPolicy + Transport; returns (outcome, server, clock)."""
    clock = clock or VirtualClock()
    policy = RetryPolicy(
        max_attempts, wait=wait_backoff(kind, 0.5, 8.0, seed=1), budget=budget, clock=clock, sleep=clock.sleep
    )
    with FakeLLMServer(script, default=default, latency=0) as srv:
        transport = Transport(srv.url, idempotency_keys=keys)
        rid = new_request_id()
        try:
            outcome = policy.call(
                lambda n: transport.chat(PAYLOAD, request_id=rid, attempt=n), deadline=deadline, request_id=rid
            )
        except errors.LLMError as exc:
            outcome = exc
        transport.close()
    return outcome, srv, clock


@pytest.mark.parametrize(
    "fault, error",
    [("401", errors.AuthError), ("404", errors.NotFound), ("400", errors.BadRequest), ("403", errors.AuthError)],
)
def test_permanent_errors_are_sent_once(fault, error):
    outcome, srv, clock = run([fault])
    assert type(outcome) is error and len(srv.attempts) == 1 and clock.sleeps == []


def test_503_503_ok_succeeds_on_the_third_attempt_with_one_request_id():
    outcome, srv, clock = run(["503", "503", "ok"])
    assert outcome.text and [a.fault for a in srv.attempts] == ["503", "503", "ok"]
    assert clock.sleeps == [0.5, 1.0]  # exponential, no jitter
    ids = {(a.headers["X-Request-ID"], a.headers["Idempotency-Key"]) for a in srv.attempts}
    assert len(ids) == 1
    rid, key = ids.pop()
    assert rid == key and str(uuid.UUID(rid)) == rid  # a UUID: strict servers refuse anything else


def test_gives_up_after_max_attempts_with_the_last_error():
    outcome, srv, _ = run([], default="503", max_attempts=3)
    assert type(outcome) is errors.ServerError and outcome.attempt == 3 and len(srv.attempts) == 3


@pytest.mark.parametrize("fault", ["reset", "invalid_json", "html", "empty", "500", "502", "504", "529", "429"])
def test_every_transient_fault_is_retried(fault):
    outcome, srv, _ = run([fault, "ok"])
    assert outcome.text and len(srv.attempts) == 2


def test_retry_after_is_honoured_when_longer_than_the_backoff():
    outcome, _, clock = run(["429:retry-after=3", "503:retry-after-ms=1500", "ok"])
    # the server's hint, made up to 20 % longer (never shorter) so threads do not return together
    first, second = clock.sleeps
    assert outcome.text and 3.0 <= first <= 3.6 and 1.5 <= second <= 1.8 and first != 3.0


def test_backoff_wins_when_longer_than_retry_after():
    _, _, clock = run(["503", "503", "429:retry-after-ms=100", "ok"])
    assert clock.sleeps == [0.5, 1.0, 2.0]


def test_retry_after_past_the_deadline_fails_at_once():
    outcome, srv, clock = run(["429:retry-after=5", "ok"], deadline=3.0)
    assert type(outcome) is errors.RateLimited and outcome.retry_after == 5
    assert clock.sleeps == [] and len(srv.attempts) == 1


def test_retries_stop_before_sleeping_past_the_deadline():
    outcome, srv, clock = run([], default="503", max_attempts=10, deadline=3.0)
    # sleeps 0.5 and 1.0 fit (t=1.5); the next, 2.0, would end at 3.5 > 3.0: stop there.
    assert clock.sleeps == [0.5, 1.0] and clock.now < 3.0
    assert type(outcome) is errors.ServerError and len(srv.attempts) == 3


def test_drop_with_idempotency_key_is_billed_once():
    outcome, srv, _ = run(["drop", "ok"])
    assert outcome.text and srv.billed_requests == 1
    first_bill = srv.billed_tokens
    outcome, srv, _ = run(["drop", "ok"], keys=False)
    assert outcome.text and srv.billed_requests == 2 and srv.billed_tokens == 2 * first_bill


def test_each_retry_is_logged(caplog):
    caplog.set_level(logging.INFO, logger="week04_lib.retry")
    outcome, srv, _ = run(["503", "429:retry-after=2", "ok"])
    assert outcome.text
    records = [r for r in caplog.records if getattr(r, "event", None) == "retry"]
    rid = srv.attempts[0].headers["X-Request-ID"]
    hinted = records[1].retry_sleep_s
    assert 2.0 <= hinted <= 2.4  # Retry-After: 2, jittered up to 20 % longer
    assert [(r.request_id, r.attempt, r.error_type, r.retry_sleep_s) for r in records] == [
        (rid, 1, "server_error", 0.5),
        (rid, 2, "rate_limited", hinted),
    ]


def test_budget_limits_retries_during_an_outage():
    clock = VirtualClock()
    budget = RetryBudget(0.1, min_retries=0, window_s=1e9, clock=clock)
    attempts = 0
    outcomes = []
    for _ in range(50):
        outcome, srv, _ = run([], default="503", budget=budget, clock=clock)
        attempts += len(srv.attempts)
        outcomes.append(type(outcome))
    assert attempts <= 50 * 1.1 + 1  # without the budget: 200
    assert errors.RetryBudgetExhausted in outcomes


def test_budget_exhausted_error_says_so_and_keeps_the_cause():
    budget = RetryBudget(0.0, min_retries=0)
    outcome, srv, _ = run([], default="503", budget=budget)
    assert type(outcome) is errors.RetryBudgetExhausted and "budget" in str(outcome)
    assert isinstance(outcome.__cause__, errors.ServerError) and outcome.status_code == 503
    assert isinstance(outcome, errors.TransientError) and len(srv.attempts) == 1


def test_budget_window_forgets_old_calls_and_keeps_a_minimum():
    clock = VirtualClock()
    budget = RetryBudget(0.1, min_retries=2, window_s=10, clock=clock)
    for _ in range(10):
        budget.record_call()
    assert [budget.try_spend() for _ in range(4)] == [True, True, True, False]  # 2 + 10 * 0.1
    clock.now = 11  # everything above is out of the window
    assert [budget.try_spend() for _ in range(3)] == [True, True, False]


def test_no_retries_without_budget_policy_defaults():
    with pytest.raises(ValueError):
        RetryPolicy(0)
    with pytest.raises(ValueError, match="backoff"):
        wait_backoff("linear")


@given(st.text())
def test_parse_retry_after_never_raises_on_any_string(value):
    for name in ("Retry-After", "retry-after-ms"):
        seconds = parse_retry_after({name: value})
        assert seconds is None or 0 <= seconds <= 600


@given(st.dictionaries(st.text(max_size=20), st.text(max_size=40), max_size=4))
def test_parse_retry_after_never_raises_on_any_headers(headers):
    seconds = parse_retry_after(headers)
    assert seconds is None or 0 <= seconds <= 600
