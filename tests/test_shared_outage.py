"""Issue 15: Redis failing never fails a call. Unreachable at start, killed mid-run,
or hung (stopped, so connections stay open and silent): calls go on with local state
within their deadline, one warning, a log record when Redis is back, and nothing but an
``LLMError`` escapes."""

import logging
import os
import signal
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import pytest

from week04_lib import ChatResult, ClientConfig, LLMClient, Timeouts, errors
from week04_lib.fakeserver import FakeLLMServer
from week04_lib.logs import log_to, read_logs, stop_logging
from week04_lib.shared import SharedState, SharedStateWarning
from week04_lib.shared.server import RedisServer

from .conftest import HELLO

SLACK_S = 0.25  # the bound: every call ends within its deadline + 0.25 s


class Waits(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def test_unreachable_at_start_the_calls_go_on_with_local_state():
    nobody = RedisServer()  # a free port nobody listens on
    with FakeLLMServer(latency=0) as srv:
        config = ClientConfig(base_url=srv.url, model="fake-mini", rpm=600, shared=nobody.url, cache=nobody.url)
        waits = Waits()
        with warnings.catch_warnings(record=True) as caught, LLMClient(config, sleep=waits) as client:
            warnings.simplefilter("always")
            results = [client.chat(HELLO, temperature=0) for _ in range(3)]
    assert all(isinstance(r, ChatResult) and not r.cached for r in results)  # no cache, no failure
    assert [str(w.message).split(" (")[0] for w in caught if w.category is SharedStateWarning] == [
        f"Redis at {nobody.url} cannot be reached"
    ]  # once, however many operations fell back
    # the local limiter still spaces them (its sleeps return at once: the reservations stack)
    assert waits == [pytest.approx(0.1, abs=0.05), pytest.approx(0.2, abs=0.05)]
    assert client.cache.errors >= 3 and not client.shared.up


def calls_while(redis_server, event, *, threads=6, seconds=1.2, budget_s=0.6):
    """Calls from several threads for ``seconds`` while ``event(redis_server)`` happens
    a third of the way in; each call's outcome and its overrun past its deadline."""
    outcomes = []
    with FakeLLMServer(latency=0.02) as srv:
        config = ClientConfig(
            base_url=srv.url, model="fake-mini", rpm=3000, shared=redis_server.url, cache=redis_server.url,
            timeouts=Timeouts(budget_s, budget_s, budget_s),
        )  # fmt: skip
        with LLMClient(config) as client, warnings.catch_warnings():
            warnings.simplefilter("ignore", SharedStateWarning)
            ends = time.monotonic() + seconds

            def worker(n):
                i = 0
                while time.monotonic() < ends:
                    i += 1
                    started = time.monotonic()
                    try:
                        outcome = client.chat([{"role": "user", "content": f"{n}-{i}"}], temperature=0)
                    except errors.LLMError as exc:
                        outcome = exc
                    except BaseException as exc:  # anything else is the failure under test
                        outcome = exc
                    outcomes.append((outcome, time.monotonic() - started - budget_s))

            with ThreadPoolExecutor(threads) as pool:
                futures = [pool.submit(worker, n) for n in range(threads)]
                time.sleep(seconds / 3)
                event(redis_server)
                for f in futures:
                    f.result()
    return outcomes


def check_every_call_ended_in_time(outcomes):
    assert len(outcomes) > 20
    escaped = [o for o, _ in outcomes if not isinstance(o, (ChatResult, errors.LLMError))]
    assert not escaped, escaped[:3]
    assert max(overrun for _, overrun in outcomes) <= SLACK_S
    assert sum(isinstance(o, ChatResult) for o, _ in outcomes) >= 0.9 * len(outcomes)


def test_redis_killed_mid_run_then_back(tmp_path):
    log_path = tmp_path / "calls.jsonl"
    handler = log_to(log_path)
    try:
        with RedisServer() as server:
            outcomes = calls_while(server, lambda s: (s.kill(), time.sleep(0.3), s.start()), seconds=1.5)
    finally:
        stop_logging(handler)
    check_every_call_ended_in_time(outcomes)
    events = read_logs(log_path)["event"].tolist()
    assert events.count("shared_down") == 1 and events.count("shared_back") == 1
    assert events.index("shared_down") < events.index("shared_back")


def test_a_hung_redis_costs_a_call_at_most_its_timeout():
    """SIGSTOP: connections stay open and nothing answers. Each operation gives up after
    SharedState.timeout_s, and Redis is then left alone for retry_s."""
    with RedisServer() as server:

        def hang(s):
            os.kill(s.process.pid, signal.SIGSTOP)

        try:
            outcomes = calls_while(server, hang)
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
    check_every_call_ended_in_time(outcomes)


def test_no_exception_but_an_llm_error_escapes_while_redis_flaps(redis_server):
    """Killed and restarted three times within a second, under six threads."""

    def flap(s):
        for _ in range(3):
            s.kill()
            time.sleep(0.1)
            s.start()
            time.sleep(0.1)

    outcomes = calls_while(redis_server, flap, seconds=1.5)
    check_every_call_ended_in_time(outcomes)
    assert threading.active_count() < 50


def test_an_operation_begun_before_an_outage_does_not_end_it(caplog):
    """Seen once in make test: two ``shared_down`` records for one kill. An operation that
    began before Redis went away and ended well afterwards must not report it back."""
    with RedisServer() as server:
        state = SharedState(server.url, "acct")
        began, finish = threading.Event(), threading.Event()

        def slow_ok(r):
            r.ping()
            began.set()
            finish.wait(5)
            return "ok"

        early = threading.Thread(target=state.run, args=(slow_ok, None))
        early.start()
        began.wait(5)
        server.kill()
        with warnings.catch_warnings(), caplog.at_level(logging.INFO, logger="week04_lib.shared"):
            warnings.simplefilter("ignore", SharedStateWarning)
            assert state.run(lambda r: r.ping(), "fallback") == "fallback"
            finish.set()
            early.join(5)
        events = [getattr(record, "event", None) for record in caplog.records]
    assert not state.up and events == ["shared_down"]
