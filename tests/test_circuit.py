"""Breaker transitions in virtual time, one probe when half-open, per-model breakers."""

import threading

import pytest

from week04_lib import errors
from week04_lib.circuit import CLOSED, HALF_OPEN, OPEN, CircuitBreaker, CircuitBreakers
from week04_lib.fakeserver import FakeLLMServer
from week04_lib.transport import Transport
from week04_lib.virtual_time import VirtualClock

from .conftest import HELLO

DOWN = errors.ServerError("503", status_code=503)


def breaker(clock, **kw):
    changes = []
    b = CircuitBreaker("m", failures=3, reset_s=30, clock=clock, on_change=lambda *c: changes.append(c), **kw)
    return b, changes


def test_closed_to_open_to_half_open_to_closed():
    clock = VirtualClock()
    b, changes = breaker(clock)
    for _ in range(2):
        b.allow()
        b.record_failure(DOWN)
    assert b.state == CLOSED
    b.record_success()  # resets the consecutive count
    for _ in range(3):
        b.allow()
        b.record_failure(DOWN)
    assert b.state == OPEN
    with pytest.raises(errors.CircuitOpen, match=r"retry in 30\.0s"):
        b.allow()
    clock.now = 29.9
    with pytest.raises(errors.CircuitOpen):
        b.allow()
    clock.now = 30
    assert b.state == HALF_OPEN
    b.allow()  # the probe
    b.record_success()
    assert b.state == CLOSED
    assert changes == [("m", CLOSED, OPEN), ("m", OPEN, HALF_OPEN), ("m", HALF_OPEN, CLOSED)]


def test_a_failed_probe_reopens_for_another_reset_period():
    clock = VirtualClock()
    b, _ = breaker(clock)
    for _ in range(3):
        b.record_failure(DOWN)
    clock.now = 30
    b.allow()
    b.record_failure(DOWN)
    assert b.state == OPEN
    clock.now = 59
    assert b.state == OPEN
    clock.now = 60
    assert b.state == HALF_OPEN


def test_half_open_lets_exactly_one_probe_through():
    clock = VirtualClock()
    b, _ = breaker(clock)
    for _ in range(3):
        b.record_failure(DOWN)
    clock.now = 30
    allowed, refused = [], []
    barrier = threading.Barrier(8)

    def try_once():
        barrier.wait()
        try:
            b.allow()
            allowed.append(1)
        except errors.CircuitOpen as e:
            refused.append(str(e))

    threads = [threading.Thread(target=try_once) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(allowed) == 1 and len(refused) == 7 and "probe" in refused[0]


@pytest.mark.parametrize(
    "error",
    [
        errors.BadRequest("400"),  # permanent: the service answered
        errors.AuthError("401"),
        errors.NotFound("404"),
        errors.RateLimited("429", status_code=429),  # the service limits us; it is not failing
        errors.ClientRateLimited("ours"),  # our own limiter: nothing was sent
    ],
)
def test_what_never_trips_it(error):
    b, _ = breaker(VirtualClock())
    for _ in range(10):
        b.record_failure(error)
    assert b.state == CLOSED


def test_failure_rate_over_a_window():
    b = CircuitBreaker("m", failures=10, failure_rate=0.5, window=10, clock=VirtualClock())
    for i in range(9):  # alternate: 50% failures, but fewer calls than the minimum (10)
        (b.record_failure(DOWN) if i % 2 else b.record_success())
    assert b.state == CLOSED
    b.record_failure(DOWN)  # 10 calls, 5 failures: enough failed calls, and half of them
    assert b.state == OPEN


def test_call_counts_outcomes_and_sends_nothing_while_open():
    clock = VirtualClock()
    b = CircuitBreaker("fake-mini", failures=2, reset_s=5, clock=clock)
    with FakeLLMServer(["503", "503", "ok"], latency=0) as srv, Transport(srv.url) as t:

        def call():
            return t.chat({"model": "fake-mini", "messages": HELLO})

        for _ in range(2):
            with pytest.raises(errors.ServerError):
                b.call(call)
        for _ in range(5):
            with pytest.raises(errors.CircuitOpen):
                b.call(call)
        assert len(srv.attempts) == 2  # nothing sent while open
        clock.now = 5
        assert b.call(call).text and b.state == CLOSED
    assert len(srv.attempts) == 3


def test_an_unrelated_exception_frees_the_probe():
    clock = VirtualClock()
    b, _ = breaker(clock)
    for _ in range(3):
        b.record_failure(DOWN)
    clock.now = 30
    with pytest.raises(KeyError):
        b.call(lambda: {}["x"])
    b.allow()  # another probe may go


def test_one_breaker_per_model():
    breakers = CircuitBreakers(failures=1, reset_s=10, clock=VirtualClock())
    breakers["big"].record_failure(DOWN)
    assert breakers["big"] is breakers["big"]
    assert breakers.states() == {"big": OPEN} and breakers["small"].state == CLOSED


def test_bad_settings():
    with pytest.raises(ValueError):
        CircuitBreaker(failures=0)
    with pytest.raises(ValueError):
        CircuitBreaker(failure_rate=1.5)


def test_a_listener_may_read_the_state_without_deadlock():
    seen = []
    b = CircuitBreaker("m", failures=1, on_change=lambda name, old, new: seen.append(b.state))
    b.record_failure(DOWN)
    assert seen == [OPEN]


def test_a_straggler_cannot_close_an_open_breaker():
    clock = VirtualClock()
    b, changes = breaker(clock)
    for _ in range(3):
        b.record_failure(DOWN)
    b.record_success()  # a call sent before it opened, answering late
    b.record_failure(DOWN)  # nor does a late failure restart the open period
    assert b.state == OPEN and changes == [("m", CLOSED, OPEN)]
    clock.now = 30
    assert b.state == HALF_OPEN


def test_a_straggler_cannot_decide_a_half_open_breaker():
    clock = VirtualClock()
    b, changes = breaker(clock)
    early = b.allow()  # let through while closed, answers very late
    for _ in range(3):
        b.record_failure(DOWN)
    clock.now = 30
    probe = b.allow()  # half-open: the one probe
    b.record_failure(DOWN, early)  # the straggler's failure decides nothing
    b.record_success(early)  # nor does its success
    assert b.state == HALF_OPEN
    b.record_success(probe)
    assert b.state == CLOSED and changes[-1] == ("m", HALF_OPEN, CLOSED)
