"""Issue 15: one rate budget, one breaker verdict and one cache for every client on the
same Redis and account. A real redis-server (conftest's ``redis_url``); clients made
side by side in one test hold separate connections and locks, as processes do (the
benchmark runs real processes: bench/shared.py)."""

import sys
from itertools import pairwise

import pytest

from week04_lib import ClientConfig, LLMClient, errors
from week04_lib.circuit import CLOSED, OPEN
from week04_lib.fakeserver import FakeLLMServer
from week04_lib.shared import SharedState, SharedStateWarning, namespace_of
from week04_lib.shared.breaker import SharedCircuitBreaker
from week04_lib.shared.cache import RedisCache
from week04_lib.shared.limiter import SharedRateLimiter
from week04_lib.shared.server import RedisServer

from .conftest import HELLO, socket_inodes


class Waits(list):
    """A sleep that records how long it was asked to wait and returns at once: a
    reservation's wait is the assertion, not the time a test spends."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def limiter(url, namespace="acct", sleep=None, **limits):
    return SharedRateLimiter(SharedState(url, namespace), sleep=sleep or Waits(), **limits)


# ----------------------------------------------------------------------------- limiter


def grants(acquirers, **kwargs):
    """When each acquire may go, on the test's monotonic clock (``granted_at``): the
    reserved moment itself, whatever time the test spent between acquires."""
    return [acquire(**kwargs).granted_at for acquire in acquirers]


def test_two_limiters_on_one_redis_share_one_budget(redis_url):
    """rpm=600 is one request every 0.1 s for both together: the reservations of two
    clients stack in one queue (each waits for the ones made before it, whoever made them)."""
    a, b = limiter(redis_url, rpm=600), limiter(redis_url, rpm=600)
    times = grants([a.acquire, b.acquire] * 5)
    assert [later - earlier for earlier, later in pairwise(times)] == [pytest.approx(0.1, abs=0.03)] * 9
    assert len(a.sleep + b.sleep) == 9  # the first went at once, every other one waited its turn


def test_another_account_has_its_own_budget(redis_url):
    a, other = limiter(redis_url, "acct", rpm=60), limiter(redis_url, "other", rpm=60)
    first = a.acquire().granted_at
    other.acquire()
    assert other.sleep == []  # a's reservation is not in other's bucket
    assert a.acquire().granted_at - first == pytest.approx(1.0, abs=0.03)


def test_a_wait_past_the_deadline_is_refused_and_charges_nothing(redis_url):
    a, b = limiter(redis_url, rpm=600), limiter(redis_url, rpm=600)
    last = grants([a.acquire] * 5)[-1]  # reserved up to 0.4 s ahead
    now = b.clock()
    with pytest.raises(errors.ClientRateLimited, match="shared rate limit") as refused:
        b.acquire(deadline=now + 0.2)
    assert 0.2 < refused.value.retry_after <= 0.5 + 0.01
    assert b.acquire().granted_at - last == pytest.approx(0.1, abs=0.03)  # the refused one took no turn


def test_reconcile_gives_back_the_tokens_not_used(redis_url):
    a, b = limiter(redis_url, tpm=60_000), limiter(redis_url, tpm=60_000)  # 1,000 tokens a second
    permit = a.acquire(tokens=2_000)
    permit.reconcile(200)  # the answer used 200 of the 2,000 reserved
    after_refund = b.acquire(tokens=100).granted_at
    assert after_refund - permit.granted_at == pytest.approx(0.2, abs=0.03)  # 2.0 s without the refund
    permit = a.acquire(tokens=100)
    permit.reconcile(1_100)  # more than estimated: the rest is charged
    after_charge = b.acquire(tokens=100).granted_at
    assert after_charge - permit.granted_at == pytest.approx(1.1, abs=0.03)  # its 100, then 1,000 more


def test_a_429_pause_is_seen_by_every_client(redis_url):
    a, b = limiter(redis_url, rpm=6000), limiter(redis_url, rpm=6000)
    a.pause(0.5)
    assert b.paused_for == pytest.approx(0.5, abs=0.1)
    b.acquire()
    assert b.sleep and b.sleep[0] == pytest.approx(0.5, abs=0.1)
    with pytest.raises(errors.ClientRateLimited):
        b.acquire(deadline=b.clock() + 0.1)


def test_a_429_from_the_server_pauses_the_other_client(redis_url):
    with FakeLLMServer(["429:retry-after=0.4"], latency=0) as srv:
        settings = {"base_url": srv.url, "model": "fake-mini", "rpm": 6000, "shared": redis_url, "max_attempts": 1}
        first, second = LLMClient(ClientConfig(**settings)), LLMClient(ClientConfig(**settings))
        with first, second, pytest.raises(errors.RateLimited):
            first.chat(HELLO)
        assert second.limiter.paused_for == pytest.approx(0.4, abs=0.1)


# ----------------------------------------------------------------------------- breaker


def breaker(url, **settings):
    return SharedCircuitBreaker("fake-mini", shared=SharedState(url, "acct"), failures=2, reset_s=30, **settings)


def test_a_breaker_opened_by_one_client_opens_for_all(redis_url):
    a, b = breaker(redis_url), breaker(redis_url)
    assert b.allow() is not None
    for _ in range(2):
        a.record_failure(errors.ServerError("503"), a.allow())
    assert a.state == OPEN
    with pytest.raises(errors.CircuitOpen, match=r"retry in (29|30)\.\d"):
        b.allow()
    assert b.state == OPEN


def test_one_probe_in_all_when_the_time_is_up(redis_url):
    a, b = breaker(redis_url, failure_rate=None), breaker(redis_url, failure_rate=None)
    a.reset_s = b.reset_s = 0.15
    for _ in range(2):
        a.record_failure(errors.ServerError("503"), a.allow())
    with pytest.raises(errors.CircuitOpen):
        b.allow()
    clock_end = a.clock() + 0.2
    while a.clock() < clock_end:  # until the shared verdict expires
        pass
    ticket = a.allow()  # a sends the probe
    with pytest.raises(errors.CircuitOpen, match="another process sends the probe"):
        b.allow()
    a.record_success(ticket)
    assert a.state == CLOSED
    b.record_success(b.allow())  # the probe is over: b may probe (and close) in turn
    assert b.state == CLOSED


# ----------------------------------------------------------------------------- cache


def test_the_redis_cache_is_one_store_with_the_ttl_as_expiry(redis_url, redis_server):
    a, b = RedisCache(redis_url, "acct", ttl_s=60), RedisCache(redis_url, "acct", ttl_s=60)
    other = RedisCache(redis_url, "other", ttl_s=60)
    a.put("k", {"completion": {"x": 1}, "cost_usd": 0.5})
    assert b.get("k") == {"completion": {"x": 1}, "cost_usd": 0.5} and b.saved_usd == 0.5
    assert other.get("k") is None and len(a) == 1 and len(other) == 0
    with redis_server.client() as r:
        (key,) = r.keys("*")
        assert 59_000 < r.pttl(key) <= 60_000
        r.set(key, "not json")
    assert a.get("k") is None  # damaged: a miss, not an error


def test_two_clients_share_answers_through_the_redis_cache(redis_url):
    with FakeLLMServer(latency=0) as srv:
        settings = {"base_url": srv.url, "model": "fake-mini", "cache": redis_url, "cache_ttl_s": 60}
        with LLMClient(ClientConfig(**settings)) as first, LLMClient(ClientConfig(**settings)) as second:
            answer = first.chat(HELLO, temperature=0)
            again = second.chat(HELLO, temperature=0)
        assert again.cached and again.text == answer.text and len(srv.attempts) == 1
        with LLMClient(ClientConfig(**settings, api_key="sk-another")) as stranger:
            assert not stranger.chat(HELLO, temperature=0).cached  # another account's entries


# ----------------------------------------------------------------------------- safety


def test_the_redis_password_never_shows(tmp_path):
    password = "s3cret-redis-pw"
    with RedisServer(password=password) as server, FakeLLMServer(latency=0) as srv:
        log_path = tmp_path / "calls.jsonl"
        config = ClientConfig(
            base_url=srv.url, model="fake-mini", shared=server.url, cache=server.url, rpm=600, log_path=str(log_path)
        )
        with LLMClient(config) as client, pytest.warns(SharedStateWarning) as warned:
            client.chat(HELLO, temperature=0)
            server.kill()
            client.chat(HELLO)  # Redis gone: logged and warned about, by its URL
            client.shared._went_down(OSError(f"a message that names {server.url}"))
            shown = [repr(config), repr(client.shared), repr(client.cache), repr(client.limiter)]
        shown += [str(w.message) for w in warned]
        assert server.url in str(config.shared)  # it is used...
        assert all(password not in text for text in shown) and "***" in repr(config)
        assert password not in log_path.read_text()  # ...never shown
        assert "shared_down" in log_path.read_text()


def test_redis_never_holds_the_api_key(redis_url, redis_server):
    key = "sk-test-0123456789abcdef"
    with FakeLLMServer(latency=0, api_key=key) as srv:
        config = ClientConfig(base_url=srv.url, api_key=key, model="fake-mini", shared=redis_url, cache=redis_url)
        with LLMClient(dataclass_replace(config, rpm=600)) as client:
            client.chat(HELLO, temperature=0)
    with redis_server.client() as r:
        keys = r.keys("*")
        stored = " ".join(keys + [str(r.dump(k)) for k in keys])
    assert keys and all(k.startswith(f"week04:{namespace_of(srv.url, key)}:") for k in keys)
    assert key not in stored


def dataclass_replace(config, **changes):
    import dataclasses

    return dataclasses.replace(config, **changes)


def test_the_command_line_starts_a_redis_until_stopped():
    import subprocess
    import sys

    import redis

    process = subprocess.Popen([sys.executable, "-m", "week04_lib.shared.server"], stdout=subprocess.PIPE, text=True)
    try:
        url = process.stdout.readline().strip()
        assert url.startswith("redis://127.0.0.1:")
        with redis.Redis.from_url(url) as r:
            assert r.ping()
    finally:
        process.send_signal(2)  # Ctrl-C
        assert process.wait(timeout=5) == 0


def test_closing_the_client_closes_its_redis_connections(redis_url):
    before, clients = socket_inodes(), []
    with FakeLLMServer(latency=0) as srv:
        settings = {"base_url": srv.url, "model": "fake-mini", "rpm": 600, "shared": redis_url}
        for cache in (redis_url, redis_url.replace("/0", "/1")):  # on the client's SharedState, or its own
            with LLMClient(ClientConfig(**settings, cache=cache)) as client:
                client.chat(HELLO, temperature=0)
            clients.append(client)  # still referenced: only close() can have let go of its sockets
    assert socket_inodes() <= before  # (the fake server's side closed with it)


def test_a_shared_pause_moves_every_reservation_later(redis_url):
    """Queued at 0 to 0.4 s when a 1 s pause begins: the next request goes after the
    pause *and* after them (1.5 s on, as the queue resumes at its pace), not with them."""
    a, b = limiter(redis_url, rpm=600), limiter(redis_url, rpm=600)
    first = grants([a.acquire] * 5)[0]
    b.pause(1.0)
    assert b.acquire().granted_at - first == pytest.approx(1.5, abs=0.03)  # 1.0 without the move


def test_shared_state_without_the_redis_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "redis", None)  # as on an install without the [shared] extra
    with pytest.raises(errors.InvalidRequest, match=r"pip install 'week04_lib\[shared\]'"):
        LLMClient(ClientConfig(shared="redis://127.0.0.1:6379/0"))


def test_a_pause_first_heard_of_while_reserving_is_waited_once(redis_url):
    """b has not looked at the shared pause before it asks: its reservation already waits
    for the pause, which must not then move it later once more."""
    a, b = limiter(redis_url, rpm=6000), limiter(redis_url, rpm=6000)
    a.pause(0.5)
    b.acquire()
    assert b.sleep == [pytest.approx(0.5, abs=0.1)]  # not 1.0
