"""The client-side limiter in virtual time (many threads), and against the fake server."""

import itertools
import random
import threading
import time

import pytest

from week04_lib import errors
from week04_lib.fakeserver import FakeLLMServer
from week04_lib.ratelimit import RateLimiter, TokenBucket, estimate_tokens, parse_duration
from week04_lib.retry import RetryPolicy, wait_backoff
from week04_lib.transport import Transport
from week04_lib.virtual_time import VirtualClock

from .conftest import HELLO


def no_sleep(seconds):
    """Threads sharing a virtual clock cannot each move it: a reservation's due time is
    what ``Permit.granted_at`` reports, so sleeping is not needed to check the schedule."""


def grants_from_threads(limiter, sizes, threads=8):
    """Every thread acquires its share of ``sizes``; returns (granted_at, tokens) pairs."""
    grants, lock = [], threading.Lock()
    chunks = [sizes[i::threads] for i in range(threads)]

    def worker(chunk):
        for tokens in chunk:
            permit = limiter.acquire(tokens)
            with lock:
                grants.append((permit.granted_at, tokens))

    workers = [threading.Thread(target=worker, args=(c,)) for c in chunks]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sorted(grants)


def max_in_any_window(grants, window_s, weight=lambda g: 1):
    """The most requests (or tokens) granted in any closed window of ``window_s``."""
    best = 0
    for i, (start, _) in enumerate(grants):
        total = sum(weight(g) for g in grants[i:] if g[0] <= start + window_s)
        best = max(best, total)
    return best


@pytest.mark.parametrize("window_s", [0.5, 1.0, 7.0, 60.0])
def test_requests_never_exceed_the_budget_in_any_window(window_s):
    clock = VirtualClock()
    limiter = RateLimiter(rpm=120, clock=clock, sleep=no_sleep)
    grants = grants_from_threads(limiter, [0] * 400)
    assert len(grants) == 400
    # 2 per second, evenly spaced: at most rate * window + 1 in any closed window
    assert max_in_any_window(grants, window_s) <= 2 * window_s + 1
    assert grants[-1][0] == pytest.approx(399 / 2)  # and no slower than the budget


def test_tokens_never_exceed_the_budget_in_any_window():
    clock = VirtualClock()
    limiter = RateLimiter(tpm=60_000, clock=clock, sleep=no_sleep)  # 1000 tokens a second
    sizes = [random.Random(i).randint(50, 900) for i in range(300)]
    grants = grants_from_threads(limiter, sizes)
    for window_s in (1.0, 10.0, 60.0):
        assert max_in_any_window(grants, window_s, weight=lambda g: g[1]) <= 1000 * window_s + max(sizes)


def test_time_moving_on_refills_but_never_beyond_the_burst():
    clock = VirtualClock()
    limiter = RateLimiter(rpm=60, burst_s=3, clock=clock, sleep=clock.sleep)
    clock.now = 100  # a long idle time earns at most burst_s seconds of budget
    starts = [limiter.acquire().granted_at for _ in range(6)]
    assert starts == [100, 100, 100, 101, 102, 103]


def test_one_limit_holding_a_call_back_does_not_bunch_the_next_calls():
    clock = VirtualClock()
    limiter = RateLimiter(rpm=60, tpm=90_000, clock=clock, sleep=no_sleep)  # 1 request, 1500 tokens a second
    grants = [limiter.acquire(tokens).granted_at for tokens in (150, 5000, 150, 150, 150)]
    # the 5000 tokens go at t=1 and take 3.33 s to pay back; then RPM spaces the rest a second apart
    paid = 1 + 5000 / 1500
    assert grants == pytest.approx([0, 1, paid, paid + 1, paid + 2])


def test_after_a_pause_calls_are_spaced_not_bunched():
    clock = VirtualClock()
    limiter = RateLimiter(rpm=60, clock=clock, sleep=no_sleep)
    limiter.pause(5)
    assert [limiter.acquire().granted_at for _ in range(4)] == [5, 6, 7, 8]


def test_a_wait_past_the_deadline_fails_at_once_and_reserves_nothing():
    clock = VirtualClock()
    limiter = RateLimiter(rpm=60, clock=clock, sleep=clock.sleep)
    assert [limiter.acquire(deadline=10).granted_at for _ in range(3)] == [0, 1, 2]
    clock.now = 0
    with pytest.raises(errors.ClientRateLimited, match="deadline") as caught:
        limiter.acquire(deadline=2.5)
    assert caught.value.retry_after == pytest.approx(3) and clock.now == 0  # nothing slept
    assert limiter.acquire().granted_at == 3  # the refused call took no slot in the queue


def test_a_429_pauses_every_thread():
    clock = VirtualClock()
    limiter = RateLimiter(rpm=6000, clock=clock, sleep=no_sleep)
    limiter.pause(5.0)
    grants = grants_from_threads(limiter, [0] * 16)
    assert all(at >= 5.0 for at, _ in grants) and limiter.paused_for == 5.0


def test_a_pause_reaches_threads_already_waiting():
    clock = VirtualClock()
    release = threading.Event()
    sleeping = []

    def blocking_sleep(seconds):  # park the thread until the test moves time on
        sleeping.append(seconds)
        release.wait(5)

    limiter = RateLimiter(rpm=60, clock=clock, sleep=blocking_sleep)
    limiter.acquire()  # t=0, the next one is due at t=1
    grant = []
    waiter = threading.Thread(target=lambda: grant.append(limiter.acquire().granted_at))
    waiter.start()
    while not sleeping:
        time.sleep(0.001)
    limiter.pause(4.0)  # a 429 elsewhere, while the waiter sleeps towards t=1
    clock.now = 1.0
    release.set()
    waiter.join(5)
    assert grant == [5.0] and sleeping == [1.0, 4.0]  # its turn, 4 s later


def test_waiters_paused_by_a_429_resume_at_their_pace_not_all_at_once():
    """Three threads queued for t=1, 2, 3 when a 4 s pause begins at t=0: they go at 5, 6
    and 7. Sending all three at t=4 (as the limiter once did) is a burst the server's
    refilled bucket may refuse again: a 429, another pause, another burst."""
    clock = VirtualClock()
    release = threading.Event()
    sleeping = []

    def blocking_sleep(seconds):
        sleeping.append(seconds)
        release.wait(5)

    limiter = RateLimiter(rpm=60, clock=clock, sleep=blocking_sleep)
    limiter.acquire()  # t=0
    grants, waiters = [], []
    for n in range(1, 4):  # one at a time, so their turns are 1, 2 and 3 s
        waiters.append(threading.Thread(target=lambda: grants.append(limiter.acquire().granted_at)))
        waiters[-1].start()
        while len(sleeping) < n:
            time.sleep(0.001)
    limiter.pause(4.0)
    clock.now = 1.0
    release.set()
    for waiter in waiters:
        waiter.join(5)
    assert sorted(grants) == [5.0, 6.0, 7.0]
    assert limiter.acquire().granted_at == 8.0  # and a newcomer queues behind them


def test_a_pause_that_breaks_the_deadline_fails_and_refunds():
    clock = VirtualClock()
    limiter = RateLimiter(rpm=60, clock=clock, sleep=clock.sleep)
    limiter.pause(10)
    with pytest.raises(errors.ClientRateLimited):
        limiter.acquire(deadline=5)


def test_reconcile_refunds_an_overestimate_and_charges_an_underestimate():
    clock = VirtualClock()
    limiter = RateLimiter(tpm=600, clock=clock, sleep=clock.sleep)  # 10 tokens a second
    limiter.acquire(100).reconcile(30)  # estimated 100, used 30: 70 back
    assert limiter.acquire(0).granted_at == 3  # only 30 tokens to pay off
    clock.now = 100
    limiter.acquire(10).reconcile(60)  # used 50 more than estimated
    assert limiter.acquire(0).granted_at == 106


def test_concurrency_slots_and_their_deadline():
    limiter = RateLimiter(max_concurrency=2)
    first, second = limiter.acquire(), limiter.acquire()
    with pytest.raises(errors.ClientRateLimited, match="concurrent"):
        limiter.acquire(deadline=time.monotonic() + 0.05)
    first.release()
    with limiter.acquire(deadline=time.monotonic() + 0.05):
        pass
    second.release()
    second.release()  # releasing twice is harmless


def wait_until(condition, timeout=5.0):
    ends = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < ends, "timed out waiting for the threads"
        time.sleep(0.001)


def test_concurrency_slots_go_first_come_first_served():
    """Issue 11, item 11: one slot, four threads each taking it three times in a loop.
    Each holder lets go only once every other thread is inside ``acquire`` (then a
    little longer, so each is queued), so a fair limiter serves them in turn: 0 1 2 3
    0 1 2 3 0 1 2 3. A semaphore lets the holder, asking again at once, take the slot
    back before the woken waiter runs: 0 0 0 1 1 1 ..."""
    limiter = RateLimiter(max_concurrency=1)
    threads_n, rounds = 4, 3
    grants, lock = [], threading.Lock()
    asking = [0]  # threads inside acquire

    def worker(i):
        for _ in range(rounds):
            with lock:
                asking[0] += 1
            permit = limiter.acquire(deadline=time.monotonic() + 30)
            with lock:
                asking[0] -= 1
                grants.append(i)
                others = sum(1 for j in range(threads_n) if j != i and grants.count(j) < rounds)
            wait_until(lambda others=others: asking[0] >= others)  # every other thread still at work is asking
            time.sleep(0.01)  # and has had the time to join the queue
            permit.release()

    first = limiter.acquire()  # held while the threads arrive one by one, in a known order
    workers = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads_n)]
    for n, w in enumerate(workers, 1):
        w.start()
        wait_until(lambda n=n: asking[0] == n)
        time.sleep(0.01)
    first.release()
    for w in workers:
        w.join(10)
    assert grants == list(range(threads_n)) * rounds


def test_an_early_waiter_is_served_before_a_thread_that_keeps_asking():
    """The issue's symptom in small: one thread calls five times in a loop, another asks
    once while the first holds the slot. The second must get the slot next, not after
    the loop (a semaphore serves it last)."""
    limiter = RateLimiter(max_concurrency=1)
    order, held, asking = [], threading.Event(), threading.Event()

    def busy():
        for n in range(5):
            with limiter.acquire(deadline=time.monotonic() + 10):
                order.append(f"busy{n}")
                if n == 0:
                    held.set()
                    asking.wait(5)
                    time.sleep(0.02)  # the patient thread is queued by now

    def patient():
        held.wait(5)
        asking.set()
        with limiter.acquire(deadline=time.monotonic() + 10):
            order.append("patient")

    threads = [threading.Thread(target=busy), threading.Thread(target=patient)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert order == ["busy0", "patient", "busy1", "busy2", "busy3", "busy4"]


def test_a_queued_caller_gives_up_at_its_deadline_and_leaves_the_queue():
    limiter = RateLimiter(max_concurrency=1)
    holder = limiter.acquire()
    outcome = {}

    def hurried():
        started = time.monotonic()
        try:
            limiter.acquire(deadline=started + 0.1)
        except errors.ClientRateLimited:
            outcome["hurried"] = time.monotonic() - started

    def patient():
        with limiter.acquire(deadline=time.monotonic() + 10):
            outcome["patient"] = True

    first = threading.Thread(target=hurried)
    first.start()
    time.sleep(0.02)
    second = threading.Thread(target=patient)  # queued behind the hurried one
    second.start()
    first.join(5)
    assert 0.09 <= outcome["hurried"] < 1.0  # gave up at its deadline, not before, not much later
    holder.release()  # the one that gave up must not hold the line
    second.join(5)
    assert outcome.get("patient") is True
    with limiter.acquire(deadline=time.monotonic() + 0.05):  # nobody is left in the queue or holding a slot
        pass


def test_a_deadline_already_past_fails_at_once_when_slots_are_busy():
    clock = VirtualClock(100)  # a virtual clock that never moves must not keep a waiter for ever
    limiter = RateLimiter(max_concurrency=1, clock=clock, sleep=clock.sleep)
    limiter.acquire()
    started = time.monotonic()
    with pytest.raises(errors.ClientRateLimited, match="concurrent"):
        limiter.acquire(deadline=100)
    with pytest.raises(errors.ClientRateLimited, match="concurrent"):
        limiter.acquire(deadline=100.05)  # 0.05 s left on the virtual clock: waited in real time
    assert time.monotonic() - started < 1.0


def test_headers_at_zero_pause_until_reset():
    clock = VirtualClock()
    limiter = RateLimiter(rpm=60, clock=clock, sleep=clock.sleep)
    limiter.observe_headers({"x-ratelimit-remaining-requests": "5", "x-ratelimit-reset-requests": "9s"})
    assert limiter.paused_for == 0
    limiter.observe_headers({"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "1m2.5s"})
    assert limiter.paused_for == 62.5


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("1s", 1),
        ("6m0s", 360),
        ("20ms", 0.02),
        ("1h2m3.5s", 3723.5),
        ("0.25", 0.25),
        ("soon", None),
        ("", None),
        ("5x", None),
    ],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


def test_estimate_counts_the_prompt_and_max_tokens():
    assert estimate_tokens(HELLO, 100) == estimate_tokens(HELLO) + 100 > 100
    assert estimate_tokens("not a list") == 0


@pytest.mark.parametrize(
    "limits",
    [
        {"rpm": 0},
        {"rpm": float("nan")},
        {"tpm": float("inf")},
        {"rpm": "60"},
        {"max_concurrency": 0},
        {"max_concurrency": 0.5},
        {"max_concurrency": float("nan")},
        {"max_concurrency": True},
    ],
)
def test_bad_limits_are_rejected(limits):
    with pytest.raises(errors.InvalidRequest):
        RateLimiter(**limits)


def test_a_bucket_needs_a_rate():
    with pytest.raises(ValueError):
        TokenBucket(rate=0, capacity=1)


def test_limited_burst_against_a_limited_server_gets_no_429():
    """8 threads, 40 calls, a server allowing 1200 RPM: the limiter at the same RPM keeps
    every call under the server's limit, so no 429 comes back."""
    limiter = RateLimiter(rpm=1200)
    with FakeLLMServer(rpm=1200, latency=0) as srv, Transport(srv.url) as transport:
        counter = itertools.count()

        def worker():
            while next(counter) < 40:
                with limiter.acquire(estimate_tokens(HELLO)):
                    transport.chat({"model": "m", "messages": HELLO})

        workers = [threading.Thread(target=worker) for _ in range(8)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    assert [a.fault for a in srv.attempts].count("rate_limited") == 0 and len(srv.attempts) == 40


def test_the_server_limit_gives_real_429s_that_the_retry_policy_honours():
    clock = VirtualClock()
    policy = RetryPolicy(3, wait=wait_backoff("none", 0.01, 0.01), clock=clock, sleep=clock.sleep)
    with FakeLLMServer(rpm=60, latency=0) as srv, Transport(srv.url) as transport:
        transport.chat({"model": "m", "messages": HELLO})
        with pytest.raises(errors.RateLimited):
            policy.call(lambda n: transport.chat({"model": "m", "messages": HELLO}))
    # the server's own limiter said when (retry-after-ms: under a second, as 60 RPM refills)
    assert len(clock.sleeps) == 2 and all(0.5 < s <= 1.2 for s in clock.sleeps)  # + up to 20 % jitter
