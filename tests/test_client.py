"""LLMClient end to end over real sockets: every layer, composed."""

import json
import threading
import time
import uuid
from collections import Counter

import pytest

from week04_lib import ChatResult, ClientConfig, LLMClient, Timeouts, errors
from week04_lib.cache import MemoryCache
from week04_lib.fakeserver import FakeLLMServer
from week04_lib.logs import log_to, read_logs
from week04_lib.virtual_time import VirtualClock

from .conftest import HELLO

KEY = "sk-test-key-0123456789abcdef"


def client_for(srv, **overrides):
    settings = dict(
        base_url=srv.url,
        model="fake-mini",
        backoff_base=0.001,
        backoff_cap=0.01,
        timeouts=Timeouts(connect=1, read=1, total=2),
        retry_budget=None,
    )
    settings.update(overrides)
    return LLMClient(ClientConfig(**settings))


@pytest.fixture
def log_file(tmp_path):
    path = tmp_path / "client.jsonl"
    handler = log_to(path)
    yield path
    import logging

    logging.getLogger("week04_lib").removeHandler(handler)
    handler.close()


def finals(path):
    frame = read_logs(path)
    return frame[frame["event"] == "final"]


def test_a_plain_call():
    with FakeLLMServer(latency=0) as srv, client_for(srv) as client:
        result = client.chat(HELLO, temperature=0, max_tokens=64)
    assert isinstance(result, ChatResult) and result.text.startswith("Re: 'hello'")
    assert (result.model, result.cached, result.stale, result.attempts) == ("fake-mini", False, False, 1)
    assert result.usage.prompt_tokens > 0 and result.cost_usd > 0 and result.raw["object"] == "chat.completion"
    assert str(uuid.UUID(result.request_id)) == result.request_id and 0 < result.latency_s < 1
    sent = srv.attempts[0]
    assert sent.body == {"model": "fake-mini", "messages": HELLO, "temperature": 0, "max_tokens": 64}
    assert sent.headers["X-Request-ID"] == result.request_id
    assert str(uuid.UUID(sent.headers["Idempotency-Key"])) == sent.headers["Idempotency-Key"]


@pytest.mark.parametrize(
    "messages, params, match",
    [
        ([], {}, "non-empty"),
        ("hello", {}, "non-empty list"),
        ([{"content": "hi"}], {}, "role"),
        ([{"role": "user"}], {}, "content"),
        ([{"role": "wizard", "content": "hi"}], {}, "role"),
        (HELLO, {"max_tokens": -5}, "max_tokens"),
        (HELLO, {"max_tokens": 1.5}, "max_tokens"),
        (HELLO, {"temperature": 3}, "temperature"),
        (HELLO, {"top_p": "high"}, "top_p"),
        (HELLO, {"stream": True}, "stream"),
    ],
)
def test_bad_input_fails_before_any_request(messages, params, match):
    with FakeLLMServer(latency=0) as srv, client_for(srv) as client:
        with pytest.raises(errors.InvalidRequest, match=match):
            client.chat(messages, **params)
    assert srv.attempts == []


def test_transient_errors_are_retried_with_one_request_id():
    with FakeLLMServer(["503", "reset", "ok"], latency=0) as srv, client_for(srv) as client:
        result = client.chat(HELLO, temperature=0)
    assert result.attempts == 3 and len({a.headers["X-Request-ID"] for a in srv.attempts}) == 1


def test_permanent_error_is_raised_at_once_without_fallback():
    with FakeLLMServer(["401"], latency=0) as srv, client_for(srv, fallback_models=["fake-large"]) as client:
        with pytest.raises(errors.AuthError, match="API key"):
            client.chat(HELLO)
    assert len(srv.attempts) == 1


def test_fallback_answers_when_the_primary_is_down():
    with (
        FakeLLMServer(model_faults={"fake-large": "503"}, latency=0) as srv,
        client_for(srv, model="fake-large", fallback_models=["fake-mini"], max_attempts=2) as client,
    ):
        result = client.chat(HELLO)
    assert result.model == "fake-mini" and result.attempts == 3
    assert [a.body["model"] for a in srv.attempts] == ["fake-large", "fake-large", "fake-mini"]


def test_all_models_failed_chains_every_error(log_file):
    with (
        FakeLLMServer(model_faults={"a": "503", "b": "500"}, latency=0) as srv,
        client_for(srv, model="a", fallback_models=["b"], max_attempts=1) as client,
    ):
        with pytest.raises(errors.AllModelsFailed) as caught:
            client.chat(HELLO)
    assert [type(e) for e in caught.value.errors] == [errors.ServerError, errors.ServerError]
    assert [e.model for e in caught.value.errors] == ["a", "b"]
    [final] = finals(log_file).to_dict("records")
    assert final["success"] is False and final["error_type"] == "all_models_failed"


def test_cache_hit_sends_nothing_and_costs_nothing():
    with FakeLLMServer(latency=0) as srv, client_for(srv, cache="memory") as client:
        first = client.chat(HELLO, temperature=0)
        second = client.chat(HELLO, temperature=0)
        other = client.chat([{"role": "system", "content": "Be brief."}, *HELLO], temperature=0)
    assert len(srv.attempts) == 2 and second.cached and not first.cached and not other.cached
    assert second.text == first.text and second.cost_usd == 0 and second.attempts == 0
    assert client.cache.stats()["saved_usd"] == pytest.approx(first.cost_usd)


def test_errors_and_sampled_answers_are_not_cached():
    with FakeLLMServer(["503"], latency=0) as srv, client_for(srv, cache="memory", max_attempts=1) as client:
        with pytest.raises(errors.ServerError):
            client.chat(HELLO, temperature=0)
        client.chat(HELLO, temperature=0)
        client.chat(HELLO, temperature=0.7)
        client.chat(HELLO, temperature=0.7)
    assert len(srv.attempts) == 4 and len(client.cache) == 1


def test_stale_answer_when_everything_fails():
    clock = VirtualClock(1000)
    with (
        FakeLLMServer(["ok"], default="503", latency=0) as srv,
        client_for(srv, cache="memory", serve_stale=True, max_attempts=1) as client,
    ):
        client.cache = MemoryCache(ttl_s=60, clock=clock)
        fresh = client.chat(HELLO, temperature=0)
        clock.now += 3600  # the cached answer has expired: the server is asked, and fails
        stale = client.chat(HELLO, temperature=0)
    assert stale.stale and stale.text == fresh.text and stale.cost_usd == 0 and len(srv.attempts) == 2


def test_queue_then_drain_bills_once(tmp_path):
    with (
        FakeLLMServer(["503", "503"], latency=0) as srv,
        client_for(
            srv, fallback_models=["fake-large"], max_attempts=1, queue_path=str(tmp_path / "q.sqlite")
        ) as client,
    ):
        with pytest.raises(errors.QueuedForLater) as caught:
            client.chat(HELLO, temperature=0, max_tokens=32)
        rid = caught.value.request_id
        assert isinstance(caught.value, errors.AllModelsFailed) and "drain_queue" in str(caught.value)
        report = client.drain_queue()
        again = client.drain_queue()
    assert report.sent == [rid] and report.results[rid].request_id == rid and again.sent == []
    first, drained = srv.attempts[0], srv.attempts[-1]  # fake-mini both times
    assert srv.billed_requests == 1 and drained.headers["X-Request-ID"] == rid
    assert drained.headers["Idempotency-Key"] == first.headers["Idempotency-Key"]
    assert srv.attempts[-1].body["max_tokens"] == 32


def test_breaker_opens_and_sends_nothing_while_open():
    clock = VirtualClock()
    with FakeLLMServer(default="503", latency=0) as srv:
        client = LLMClient(
            ClientConfig(
                base_url=srv.url,
                model="fake-mini",
                max_attempts=1,
                breaker_failures=3,
                breaker_reset_s=30,
                retry_budget=None,
            ),
            clock=clock,
            sleep=clock.sleep,
        )
        for _ in range(3):
            with pytest.raises(errors.ServerError):
                client.chat(HELLO)
        with pytest.raises(errors.CircuitOpen):
            client.chat(HELLO)
        assert len(srv.attempts) == 3
        clock.now += 30  # one probe after the reset time; it fails, and the breaker opens again
        with pytest.raises(errors.ServerError):
            client.chat(HELLO)
        with pytest.raises(errors.CircuitOpen):
            client.chat(HELLO)
        assert len(srv.attempts) == 4
        client.close()


def test_hang_is_bounded_by_the_total_deadline():
    with (
        FakeLLMServer(default="hang", latency=0) as srv,
        client_for(srv, timeouts=Timeouts(connect=1, read=5, total=0.6), max_attempts=4) as client,
    ):
        start = time.monotonic()
        with pytest.raises(errors.LLMTimeout):
            client.chat(HELLO)
        assert time.monotonic() - start < 0.6 + 0.25
    assert len(srv.attempts) == 1  # no retry: nothing was left of the deadline


def test_server_429_pauses_the_limiter_and_is_retried():
    with FakeLLMServer(["429:retry-after-ms=50", "ok"], latency=0) as srv, client_for(srv, rpm=6000) as client:
        start = time.monotonic()
        result = client.chat(HELLO)
    assert result.attempts == 2 and srv.attempts[1].t - srv.attempts[0].t >= 0.05
    assert time.monotonic() - start >= 0.05


def test_one_final_record_per_call_and_no_key_anywhere(tmp_path):
    cache_path, log_file = tmp_path / "cache.sqlite", tmp_path / "own.jsonl"  # the client's own log
    with (
        FakeLLMServer(["ok", "503", "ok", "401"], latency=0, api_key=KEY) as srv,
        client_for(srv, api_key=KEY, cache=f"sqlite:{cache_path}", log_path=str(log_file), max_attempts=2) as client,
    ):
        ids = [client.chat(HELLO, temperature=0).request_id, client.chat(HELLO, temperature=0).request_id]
        ids.append(client.chat([{"role": "user", "content": "other"}], temperature=0).request_id)  # 503 then ok
        with pytest.raises(errors.AuthError) as caught:
            client.chat([{"role": "user", "content": "third"}])
        ids.append(caught.value.request_id)
    assert sorted(finals(log_file)["request_id"]) == sorted(ids)
    for path in (log_file, cache_path):
        assert KEY.encode() not in path.read_bytes()
    assert KEY not in repr(client) and KEY not in str(caught.value)


def test_eight_threads_share_one_client_without_losing_or_duplicating_calls(log_file):
    mix = {"ok": 0.7, "503": 0.1, "reset": 0.05, "drop": 0.05, "invalid_json": 0.05, "429:retry-after-ms=10": 0.05}
    with FakeLLMServer(mix=mix, seed=3, latency=0) as srv, client_for(srv, max_attempts=3) as client:
        outcomes, lock = Counter(), threading.Lock()

        def worker(n):
            for i in range(25):
                try:
                    result = client.chat([{"role": "user", "content": f"t{n} call {i}"}], temperature=0)
                    kind = "ok" if isinstance(result, ChatResult) else "?"
                except errors.LLMError as exc:
                    kind = type(exc).__name__
                with lock:
                    outcomes[kind] += 1

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    records = finals(log_file)
    assert sum(outcomes.values()) == 200 and len(records) == 200 and records["request_id"].is_unique
    assert int(records["success"].sum()) == outcomes["ok"]
    # with idempotency keys no logical call is billed twice, however often it was retried
    billed_keys = {a.headers["Idempotency-Key"] for a in srv.attempts if a.fault in ("ok", "drop")}
    assert srv.billed_requests == len(billed_keys) >= outcomes["ok"]
    assert sum(a.fault in ("ok", "drop") for a in srv.attempts) > len(billed_keys)  # some were replays


def test_from_env_with_no_config(monkeypatch):
    with FakeLLMServer(latency=0) as srv:
        monkeypatch.setenv("WEEK04_BASE_URL", srv.url)
        monkeypatch.setenv("WEEK04_MODEL", "fake-large")
        with LLMClient() as client:
            assert client.chat(HELLO).model == "fake-large"


def test_log_lines_are_json_with_the_contract_fields(log_file):
    with FakeLLMServer(latency=0) as srv, client_for(srv, cache="memory") as client:
        client.chat(HELLO, temperature=0)
        client.chat(HELLO, temperature=0)
    events = [json.loads(line)["event"] for line in log_file.read_text().splitlines()]
    assert events == ["attempt", "final", "cache_hit", "final"]
    frame = read_logs(log_file)
    last = frame.iloc[-1]
    assert bool(last["cache_hit"]) and last["cost_usd"] == 0 and last["attempt"] == 0


def test_closing_the_client_closes_its_log_file(tmp_path):
    import logging

    root = logging.getLogger("week04_lib")
    before = list(root.handlers)
    path = tmp_path / "own.jsonl"
    with FakeLLMServer(latency=0) as srv:
        first = client_for(srv, log_path=str(path))
        second = client_for(srv, log_path=str(path))  # shares the file
        first.close()
        second.chat(HELLO)  # still logged
        second.close()
        client_for(srv).chat(HELLO)  # a later client without log_path writes nothing there
    assert root.handlers == before
    assert [json.loads(line)["event"] for line in path.read_text().splitlines()] == ["attempt", "final"]
