"""Single-flight (issue 15): identical calls in flight at the same moment send one
request; the others wait for its answer, each within its own deadline. In one process
without Redis, and between clients that share only a Redis (as processes do)."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from week04_lib import ClientConfig, LLMClient, Timeouts, errors
from week04_lib.fakeserver import FakeLLMServer

from .conftest import HELLO


def at_once(calls, *clients_and_counts):
    """Run ``calls(client)`` in that many threads per client, released together."""
    jobs = [client for client, count in clients_and_counts for _ in range(count)]
    start = threading.Barrier(len(jobs))

    def one(client):
        start.wait()
        try:
            return calls(client)
        except errors.LLMError as exc:
            return exc

    with ThreadPoolExecutor(len(jobs)) as pool:
        return list(pool.map(one, jobs))


def test_identical_calls_in_one_process_send_one_request():
    with FakeLLMServer(latency=0.2) as srv:
        with LLMClient(ClientConfig(base_url=srv.url, model="fake-mini", cache="memory")) as client:
            results = at_once(lambda c: c.chat(HELLO, temperature=0), (client, 8))
    assert len(srv.attempts) == 1
    assert {r.text for r in results} == {results[0].text} and sum(not r.cached for r in results) == 1
    assert client.cache.stats()["hits"] == 7


def test_without_the_cache_every_call_goes():
    """No cache, or a call that may not use it (temperature > 0, cache=False): nothing is
    collapsed, as two sampled answers must differ."""
    with FakeLLMServer(latency=0.1) as srv:
        with LLMClient(ClientConfig(base_url=srv.url, model="fake-mini", cache="memory")) as client:
            at_once(lambda c: c.chat(HELLO, temperature=0.7), (client, 3))
            at_once(lambda c: c.chat(HELLO, temperature=0, cache=False), (client, 3))
    assert len(srv.attempts) == 6


def test_clients_sharing_a_redis_send_one_request(redis_url):
    """Two clients, each with its own connections, locks and in-process flights, as two
    processes have: the Redis lock is all they share."""
    with FakeLLMServer(latency=0.2) as srv:
        settings = {"base_url": srv.url, "model": "fake-mini", "cache": redis_url, "shared": redis_url}
        with LLMClient(ClientConfig(**settings)) as first, LLMClient(ClientConfig(**settings)) as second:
            results = at_once(lambda c: c.chat(HELLO, temperature=0), (first, 4), (second, 4))
    assert len(srv.attempts) == 1 and sum(not r.cached for r in results) == 1


def test_a_waiting_call_keeps_its_own_deadline():
    with FakeLLMServer(["slow:0.6"], latency=0) as srv:
        with LLMClient(ClientConfig(base_url=srv.url, model="fake-mini", cache="memory")) as client:
            leader = threading.Thread(target=client.chat, args=(HELLO,), kwargs={"temperature": 0})
            leader.start()
            time.sleep(0.1)  # the leader's request is in flight (the assertion is about the follower)
            started = time.monotonic()
            with pytest.raises(errors.DeadlineExceeded, match="identical call was in flight"):
                client.chat(HELLO, temperature=0, timeout=Timeouts(0.3, 0.3, 0.3))
            waited = time.monotonic() - started
            leader.join()
    assert 0.25 <= waited <= 0.3 + 0.25 and len(srv.attempts) == 1


def test_when_the_leader_fails_a_waiting_call_goes_itself():
    """The leader's failure is its own (here one attempt for a 503); a caller that waited
    for it sends its own request rather than inherit the error."""
    with FakeLLMServer(["503"], latency=0.2) as srv:
        with LLMClient(ClientConfig(base_url=srv.url, model="fake-mini", cache="memory")) as client:
            results = at_once(lambda c: c.chat(HELLO, temperature=0, max_attempts=1), (client, 2))
    assert sorted(type(r).__name__ for r in results) == ["ChatResult", "ServerError"]
    assert [a.fault for a in srv.attempts] == ["503", "ok"]


def test_a_waiting_call_in_another_client_keeps_its_deadline(redis_url):
    with FakeLLMServer(["slow:0.6"], latency=0) as srv:
        settings = {"base_url": srv.url, "model": "fake-mini", "cache": redis_url, "shared": redis_url}
        with LLMClient(ClientConfig(**settings)) as first, LLMClient(ClientConfig(**settings)) as second:
            leader = threading.Thread(target=first.chat, args=(HELLO,), kwargs={"temperature": 0})
            leader.start()
            time.sleep(0.1)
            started = time.monotonic()
            with pytest.raises(errors.DeadlineExceeded, match="in another process"):
                second.chat(HELLO, temperature=0, timeout=Timeouts(0.3, 0.3, 0.3))
            waited = time.monotonic() - started
            leader.join()
            assert second.chat(HELLO, temperature=0).cached  # once the leader's answer is in
    assert 0.25 <= waited <= 0.3 + 0.25 and len(srv.attempts) == 1


def missed_just_before_the_answer(client, answer_stored):
    """``client``'s next cache lookup misses while the other call is in flight, and returns
    only once that call's answer is stored: the moment between a caller's own lookup and
    its turn to lead (bench: 201 requests for 200 prompts before the second look)."""
    real_get = client.cache.get

    def get(key, **kwargs):
        found = real_get(key, **kwargs)
        answer_stored.wait(5)
        return found

    client.cache.get = get


@pytest.mark.parametrize("where", ["one client", "two clients on one Redis"])
def test_a_caller_that_missed_just_before_the_answer_was_stored_sends_nothing(where, redis_url):
    with FakeLLMServer(latency=0.2) as srv:
        settings = {"base_url": srv.url, "model": "fake-mini", "cache": redis_url}
        if where != "one client":
            settings["shared"] = redis_url
        with LLMClient(ClientConfig(**settings)) as first, LLMClient(ClientConfig(**settings)) as other:
            second = first if where == "one client" else other
            answer_stored = threading.Event()
            leader = threading.Thread(target=lambda: (first.chat(HELLO, temperature=0), answer_stored.set()))
            leader.start()
            while not srv.attempts:  # the first call's request is in flight
                time.sleep(0.005)
            missed_just_before_the_answer(second, answer_stored)
            late = second.chat(HELLO, temperature=0)
            leader.join()
    assert late.cached and len(srv.attempts) == 1
