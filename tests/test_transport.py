"""One attempt through the transport, every fault mapped to its error, over real sockets."""

import socket
import time

import pytest
import requests

from week04_lib import Timeouts, errors
from week04_lib.fakeserver import FakeLLMServer
from week04_lib.transport import Transport, error_for_status, parse_retry_after

from .conftest import HELLO, open_sockets

PAYLOAD = {"model": "fake-mini", "messages": HELLO}
FAST = Timeouts(connect=1, read=1, total=1.5)


def attempt(fault, timeouts=FAST, **server):
    with FakeLLMServer([fault], latency=0, **server) as srv:
        transport = Transport(srv.url, api_key=server.get("api_key"))
        try:
            return transport.chat(PAYLOAD, timeouts=timeouts, request_id="req-1", attempt=1)
        finally:
            transport.close()


@pytest.mark.parametrize(
    "fault, error",
    [
        ("reset", errors.ConnectionFailed),
        ("drop", errors.ConnectionFailed),
        ("invalid_json", errors.InvalidResponse),
        ("html", errors.InvalidResponse),
        ("empty", errors.InvalidResponse),
        ("429", errors.RateLimited),
        ("500", errors.ServerError),
        ("502", errors.ServerError),
        ("503", errors.ServerError),
        ("504", errors.ServerError),
        ("529", errors.ServerError),
        ("400", errors.BadRequest),
        ("422", errors.BadRequest),
        ("401", errors.AuthError),
        ("403", errors.AuthError),
        ("404", errors.NotFound),
        ("slow:1.2", errors.ReadTimeout),
    ],
)
def test_each_fault_maps_to_its_error(fault, error):
    with pytest.raises(error) as caught:
        attempt(fault)
    e = caught.value
    assert type(e) is error
    assert (e.request_id, e.model, e.attempt) == ("req-1", "fake-mini", 1)
    if fault[0].isdigit():
        assert e.status_code == int(fault)


def test_ok_gives_text_usage_and_latency():
    result = attempt("ok")
    assert result.text.startswith("Re: 'hello'") and result.model == "fake-mini"
    assert result.usage.prompt_tokens > 0 and result.usage.completion_tokens > 0
    assert result.finish_reason == "stop" and result.raw["object"] == "chat.completion"
    assert 0 < result.latency_s < 1


@pytest.mark.parametrize("fault", ["hang", "trickle:0.2"])
def test_total_deadline_holds_and_nothing_leaks(fault, no_leaks):
    start = time.monotonic()
    with pytest.raises(errors.LLMTimeout):
        attempt(fault)
    assert time.monotonic() - start < FAST.total + 0.25


@pytest.mark.parametrize("fault", ["hang", "trickle:0.05"])
def test_a_timed_out_connection_is_closed_not_pooled(fault):
    with FakeLLMServer([fault], latency=0) as srv:
        transport = Transport(srv.url)
        before = open_sockets()
        with pytest.raises(errors.LLMTimeout):
            transport.chat(PAYLOAD, timeouts=Timeouts(connect=1, read=0.3, total=0.3))
        # At most the server's end of the abandoned connection is still open; ours is closed.
        assert open_sockets() <= before + 1
        transport.close()


def test_trickle_outlives_the_read_timeout_but_not_the_deadline():
    # Each byte arrives within the read timeout, so only the total deadline can stop it.
    start = time.monotonic()
    with pytest.raises(errors.DeadlineExceeded, match="total deadline"):
        attempt("trickle:0.1", Timeouts(connect=1, read=0.5, total=0.8))
    assert 0.75 <= time.monotonic() - start < 0.8 + 0.25


def test_deadline_shorter_than_read_timeout_wins_on_hang():
    start = time.monotonic()
    with pytest.raises(errors.DeadlineExceeded):
        attempt("hang", Timeouts(connect=1, read=5, total=0.5))
    assert time.monotonic() - start < 0.75


def test_a_deadline_already_passed_sends_nothing():
    with FakeLLMServer(latency=0) as srv, pytest.raises(errors.DeadlineExceeded):
        Transport(srv.url).chat(PAYLOAD, deadline=time.monotonic() - 1)
    assert srv.attempts == []


def test_connection_refused():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(errors.ConnectionFailed, match="refused"):
        Transport(f"http://127.0.0.1:{port}/v1").chat(PAYLOAD, timeouts=FAST)


def test_invalid_response_says_what_came_back():
    with pytest.raises(errors.InvalidResponse) as caught:
        attempt("html")
    message = str(caught.value)
    assert "text/html" in message and "<html>" in message and "status 200" in message
    assert not isinstance(caught.value.__cause__, ValueError)  # no bare JSONDecodeError


def test_rate_limited_carries_retry_after():
    with pytest.raises(errors.RateLimited) as caught:
        attempt("429:retry-after=3")
    assert caught.value.retry_after == 3


def test_request_id_sent_as_both_headers_and_key_only_as_bearer():
    with FakeLLMServer(latency=0) as srv:
        Transport(srv.url, api_key="sk-abc").chat(PAYLOAD, request_id="rid-7")
    headers = srv.attempts[0].headers
    assert headers["X-Request-ID"] == headers["Idempotency-Key"] == "rid-7"
    assert headers["Authorization"] == "Bearer sk-abc"


def test_auth_error_explains_and_never_shows_the_key():
    with FakeLLMServer(latency=0, api_key="sk-right") as srv, pytest.raises(errors.AuthError) as caught:
        Transport(srv.url, api_key="sk-wrong-key-123").chat(PAYLOAD)
    assert "API key" in str(caught.value)
    assert "sk-wrong-key-123" not in repr(caught.value) + str(caught.value)


def test_a_provider_echoing_the_key_is_scrubbed():
    e = Transport("http://x/v1", api_key="sk-echo")._scrub(errors.AuthError("bad key sk-echo"))
    assert "sk-echo" not in str(e) and "***" in str(e)


def test_connection_is_reused_after_success():
    with FakeLLMServer(latency=0) as srv:
        transport = Transport(srv.url)
        for _ in range(3):
            transport.chat(PAYLOAD)
        ports = {a.headers.get("Host") for a in srv.attempts}
        transport.close()
    assert len(srv.attempts) == 3 and len(ports) == 1


@pytest.mark.parametrize(
    "status, cls",
    [(408, errors.LLMTimeout), (409, errors.ServerError), (418, errors.BadRequest), (599, errors.ServerError)],
)
def test_unusual_statuses(status, cls):
    assert type(error_for_status(status, {}, "")) is cls


@pytest.mark.parametrize(
    "headers, expected",
    [
        ({"Retry-After": "2"}, 2.0),
        ({"retry-after-ms": "250"}, 0.25),
        ({"Retry-After": "-3"}, None),
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": "60"}, 60.0),
        ({"Retry-After": "61"}, None),  # longer than the official SDK obeys: our own backoff decides
        ({"Retry-After": "1e9"}, None),
        ({"Retry-After": "Fri, 31 Dec 9999 23:59:59 GMT"}, None),
        ({}, None),
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),
    ],
)
def test_parse_retry_after(headers, expected):
    assert parse_retry_after(headers) == expected


def test_plain_requests_has_no_total_deadline_on_trickle():
    """The pitfall the transport fixes: per-read timeouts never fire while bytes trickle."""
    with FakeLLMServer(["trickle:0.002"], latency=0) as srv:
        start = time.monotonic()
        reply = requests.post(f"{srv.url}/chat/completions", json={**PAYLOAD, "max_tokens": 2}, timeout=(0.3, 0.3))
        elapsed = time.monotonic() - start
    # The server waited 2 ms before each byte, so the whole body took at least this long:
    assert elapsed >= len(reply.content) * 0.002 > 0.3
    assert reply.json()["object"] == "chat.completion"  # ...and requests never complained


def test_proxy_settings_from_the_environment_are_read_once_and_kept(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("NO_PROXY", "internal.invalid")
    proxied = Transport("https://api.example.invalid/v1")
    direct = Transport("https://internal.invalid/v1")
    assert proxied.session.proxies.get("https") == "http://proxy.invalid:3128"
    assert "https" not in direct.session.proxies
    assert proxied.session.trust_env is False  # not read again on every request
