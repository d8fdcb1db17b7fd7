"""The wire: every promise holds against any server, not only our own (issue 10).

One regression test (or one parametrized family) per numbered finding, over real
sockets: our fake server where it has learnt the trick, a hand-written raw-socket
server (tests/hostile.py) where it has not.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
import tracemalloc
from pathlib import Path

import pytest

from week04_lib import ClientConfig, LLMClient, Timeouts, errors
from week04_lib.fakeserver import FakeLLMServer
from week04_lib.transport import Transport

from .conftest import HELLO
from .hostile import RawServer, drip

PAYLOAD = {"model": "fake-mini", "messages": HELLO}
TWO_S = Timeouts(connect=1, read=1, total=2)
MARGIN = 0.25
# Finding 1's servers send a byte or a line every DRIP_S, well inside each read's limit:
# only the whole call's deadline, twice the read timeout, can end them.
DRIP_S = 0.1
DEADLINE = Timeouts(connect=1, read=0.5, total=1)
CERT = Path(__file__).parent / "data" / "localhost-cert.pem"
KEY = Path(__file__).parent / "data" / "localhost-key.pem"
COMPLETION = json.dumps(
    {
        "object": "chat.completion",
        "model": "fake-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }
).encode()


def client_for(url, **config):
    config.setdefault("timeouts", TWO_S)
    config.setdefault("retry_budget", None)
    return LLMClient(ClientConfig(base_url=url, model="fake-mini", backoff_base=0.01, backoff_cap=0.02, **config))


def one_attempt(url, timeouts=TWO_S, **transport):
    with Transport(url, **transport) as t:
        return t.chat(PAYLOAD, timeouts=timeouts, request_id="1b4e28ba-2fa1-11d2-883f-0016d3cca427", attempt=1)


def reply(status_line: bytes, headers: list[bytes], body: bytes = COMPLETION):
    """A handler sending a whole reply at once."""

    def handle(conn, stop):
        conn.sendall(status_line + b"\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n" + body)

    return handle


# ---------------------------------------------------------------- 1. the deadline


def status_line_trickle(conn, stop):
    drip(conn, [bytes([b]) for b in b"HTTP/1.1 200 OK\r\n"], DRIP_S, stop)  # 1.7 s: past the deadline


def header_value_trickle(conn, stop):
    conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
    drip(conn, [b"a"] * 100, DRIP_S, stop)


def chunk_size_trickle(conn, stop):
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    drip(conn, [b"0"] * 100, DRIP_S, stop)  # a chunk-size line that never ends


@pytest.mark.parametrize(
    "server",
    [
        pytest.param(lambda: FakeLLMServer([f"header_trickle:{DRIP_S}"], latency=0), id="header-line-every-0.1s"),
        pytest.param(lambda: FakeLLMServer(["chunked_stall"], latency=0), id="endless-chunked-trailer"),  # 0.1 s
        pytest.param(lambda: RawServer(status_line_trickle), id="status-line-byte-by-byte"),
        pytest.param(lambda: RawServer(header_value_trickle), id="header-value-byte-by-byte"),
        pytest.param(lambda: RawServer(chunk_size_trickle), id="chunk-size-line-byte-by-byte"),
    ],
)
def test_1_total_deadline_covers_headers_and_chunked_framing(server, no_leaks):
    with server() as srv:
        start = time.monotonic()
        with pytest.raises(errors.DeadlineExceeded):
            one_attempt(srv.url, timeouts=DEADLINE)
        took = time.monotonic() - start
    assert DEADLINE.total - 0.1 <= took < DEADLINE.total + MARGIN  # not at a read timeout, not later


def test_1_the_deadline_spans_retries_on_a_header_trickle():
    with FakeLLMServer(default=f"header_trickle:{DRIP_S}", latency=0) as srv:
        with client_for(srv.url, timeouts=DEADLINE) as client:
            start = time.monotonic()
            with pytest.raises(errors.LLMTimeout):
                client.chat(HELLO)
    assert time.monotonic() - start < DEADLINE.total + MARGIN


def test_1_the_watchdog_thread_goes_when_idle_or_closed(monkeypatch):
    from week04_lib.transport import watchdog

    def watchdogs():
        return [t for t in threading.enumerate() if t.name == "week04-watchdog"]

    monkeypatch.setattr(watchdog, "IDLE_EXIT_S", 0.05)
    before = len(watchdogs())
    with FakeLLMServer(latency=0) as srv:
        transport = Transport(srv.url)
        transport.chat(PAYLOAD, timeouts=Timeouts(1, 1, 0.3))  # watched until its deadline passes
        assert len(watchdogs()) == before + 1
        deadline = time.monotonic() + 2
        while len(watchdogs()) > before and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(watchdogs()) == before  # idle: gone without close()
        transport.chat(PAYLOAD, timeouts=TWO_S)  # and back when needed
        transport.close()
        assert len(watchdogs()) == before


# ------------------------------------------------------------- 2. compression


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
def test_2_compressed_replies_are_decoded(coding):
    with FakeLLMServer(latency=0, compress=coding) as plain_srv:
        result = one_attempt(plain_srv.url)
        sent = plain_srv.attempts[0].headers
    assert "gzip" in sent["Accept-Encoding"] and "deflate" in sent["Accept-Encoding"]
    assert result.text.startswith("Re: 'hello'") and result.usage.prompt_tokens > 0


def test_2_raw_deflate_without_zlib_header_is_decoded_too():
    import zlib

    packer = zlib.compressobj(wbits=-15)
    body = packer.compress(COMPLETION) + packer.flush()
    headers = [b"Content-Type: application/json", b"Content-Encoding: deflate", f"Content-Length: {len(body)}".encode()]
    with RawServer(reply(b"HTTP/1.1 200 OK", headers, body)) as srv:
        assert one_attempt(srv.url).text == "hi"


def test_2_a_compression_bomb_is_capped_while_decoding():
    import gzip

    bomb = gzip.compress(b" " * 50_000_000)  # 50 MB of spaces in about 50 KB
    headers = [b"Content-Type: application/json", b"Content-Encoding: gzip", f"Content-Length: {len(bomb)}".encode()]
    tracemalloc.start()
    try:
        with RawServer(reply(b"HTTP/1.1 200 OK", headers, bomb)) as srv:
            with pytest.raises(errors.InvalidResponse, match="max_response_bytes"):
                one_attempt(srv.url, max_response_bytes=1_000_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10_000_000


def test_2_an_encoding_we_did_not_ask_for_is_named():
    headers = [b"Content-Encoding: br", f"Content-Length: {len(COMPLETION)}".encode()]
    with RawServer(reply(b"HTTP/1.1 200 OK", headers)) as srv:
        with pytest.raises(errors.InvalidResponse, match="'br'-encoded"):
            one_attempt(srv.url)


# ---------------------------------------------------------------- 3. request ids


def test_3_a_strict_server_accepts_our_request_ids():
    with FakeLLMServer(latency=0, strict_request_id=True) as srv, client_for(srv.url) as client:
        result = client.chat(HELLO)
        sent = srv.attempts[0].headers["X-Request-ID"]
    assert result.text and result.request_id == sent
    assert len(sent) == 36 and sent.count("-") == 4


def test_3_a_caller_request_id_that_is_not_a_uuid_is_refused_before_sending():
    with FakeLLMServer(latency=0, strict_request_id=True) as srv, client_for(srv.url) as client:
        with pytest.raises(errors.InvalidRequest, match="UUID"):
            client.chat(HELLO, request_id="req_abc")
    assert srv.attempts == []


def test_3_an_empty_400_says_so():
    with FakeLLMServer(["400"], latency=0, strict_request_id=True) as srv:
        with Transport(srv.url) as t, pytest.raises(errors.BadRequest, match="empty body"):
            t.chat(PAYLOAD, timeouts=TWO_S, request_id="req_abc")


# ------------------------------------------------------ 4. nothing untyped escapes


@pytest.mark.parametrize(
    "fault, error",
    [("deep_json", errors.InvalidResponse), ("deep_json:503", errors.ServerError)],
)
def test_4_deeply_nested_json_is_a_typed_error(fault, error):
    with FakeLLMServer([fault], latency=0) as srv, pytest.raises(error):
        one_attempt(srv.url)


@pytest.mark.parametrize("bad", [object(), {1, 2}, b"bytes", float("nan")])
def test_4_a_parameter_json_cannot_carry_is_an_invalid_request(bad):
    with FakeLLMServer(latency=0) as srv, client_for(srv.url) as client:
        with pytest.raises(errors.InvalidRequest, match="cannot be sent as JSON"):
            client.chat(HELLO, temperature=0, metadata=bad)
        with pytest.raises(errors.InvalidRequest):
            client.chat([{"role": "user", "content": [bad]}])
    assert srv.attempts == []


def test_4_non_latin1_key_or_request_id_is_an_invalid_request():
    with pytest.raises(errors.InvalidRequest, match="api_key"):
        ClientConfig(base_url="http://127.0.0.1:9/v1", api_key="sk-ключ")
    with FakeLLMServer(latency=0) as srv, client_for(srv.url) as client:
        with pytest.raises(errors.InvalidRequest, match="request_id"):
            client.chat(HELLO, request_id="ид-запроса")
    assert srv.attempts == []


def test_4_a_bug_inside_the_call_is_typed_logged_and_frees_the_breaker_probe(tmp_path):
    # A bug cannot be produced by a real server any more: stand one in for the transport.
    with FakeLLMServer(latency=0) as srv:
        client = client_for(srv.url, breaker_failures=1, breaker_reset_s=0.05, log_path=str(tmp_path / "log.jsonl"))
        real = client.transport.chat
        assert client.chat(HELLO).text  # fine
        breaker = client.breakers["fake-mini"]
        breaker.record_failure(errors.ServerError("down"))  # open it
        time.sleep(0.06)  # half-open after reset_s: the next call is the probe
        client.transport.chat = lambda *a, **k: (_ for _ in ()).throw(RecursionError("a bug"))
        with pytest.raises(errors.LLMError, match="unexpected RecursionError") as caught:
            client.chat(HELLO)
        assert not isinstance(caught.value, errors.CircuitOpen)
        client.transport.chat = real
        assert client.chat(HELLO).text  # the probe was released: not CircuitOpen forever
        client.close()
    finals = [r for r in map(json.loads, (tmp_path / "log.jsonl").read_text().splitlines()) if r["event"] == "final"]
    assert [r["success"] for r in finals] == [True, False, True]


def test_4_the_cli_prints_one_line_and_a_meaningful_exit_code(capfd):
    from week04_lib.cli import main

    with FakeLLMServer(default="deep_json", latency=0) as srv:
        code = main(["chat", "hi", "--base-url", srv.url, "--attempts", "1", "--total", "2"])
    err = capfd.readouterr().err
    assert code == 4 and "Traceback" not in err and "InvalidResponse" in err


# ------------------------------------------------------------ 5. response size


def test_5_an_endless_body_stops_at_the_size_cap_not_the_memory():
    tracemalloc.start()
    try:
        with FakeLLMServer(["huge_body:20"], latency=0) as srv:
            start = time.monotonic()
            with pytest.raises(errors.InvalidResponse, match="larger than max_response_bytes"):
                one_attempt(srv.url, timeouts=Timeouts(1, 1, 10), max_response_bytes=2_000_000)
            took = time.monotonic() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert took < 2 and peak < 12_000_000


def test_5_a_declared_length_over_the_cap_is_refused_without_reading():
    headers = [b"Content-Type: application/json", b"Content-Length: 999999999999"]
    with RawServer(reply(b"HTTP/1.1 200 OK", headers, b"{")) as srv:
        start = time.monotonic()
        with pytest.raises(errors.InvalidResponse, match="larger than"):
            one_attempt(srv.url)
    assert time.monotonic() - start < 0.5


def test_5_the_client_default_cap_is_configurable():
    with FakeLLMServer(["huge_body:1"], latency=0) as srv:
        with client_for(srv.url, max_response_bytes=200_000, max_attempts=1) as client:
            with pytest.raises(errors.InvalidResponse, match="max_response_bytes=200000"):
                client.chat(HELLO)


# ------------------------------------------------- 6. caller mistakes stay local


@pytest.mark.parametrize("request_id", ["1b4e28ba-2fa1-11d2-883f-0016d3cca427\r\nX-Evil: 1", "a b", ""])
def test_6_a_bad_request_id_is_refused_before_anything_is_sent(request_id, tmp_path):
    with FakeLLMServer(latency=0) as srv:
        client = client_for(srv.url, breaker_failures=1, queue_path=str(tmp_path / "q.db"))
        with client, pytest.raises(errors.InvalidRequest):
            client.chat(HELLO, request_id=request_id)
        assert client.breakers["fake-mini"].state == "closed"
        assert client.queue is not None and client.queue.pending() == []
    assert srv.attempts == []


def test_6_a_key_with_a_newline_is_refused_and_never_shown(capfd, monkeypatch):
    key = "sk-secret-value\n"
    with pytest.raises(errors.InvalidRequest) as caught:
        ClientConfig(base_url="http://127.0.0.1:9/v1", api_key=key)
    assert "secret" not in str(caught.value) and "secret" not in repr(caught.value)
    assert caught.value.__cause__ is None and caught.value.__context__ is None

    from week04_lib.cli import main

    monkeypatch.setenv("WEEK04_API_KEY", key)
    code = main(["chat", "hi", "--base-url", "http://127.0.0.1:9/v1"])
    err = capfd.readouterr().err
    assert code == 2 and "secret" not in err


@pytest.mark.parametrize("url", ["http://", "https:///v1", "ftp://host/v1", "http://host:99999/v1", "http://a b/v1"])
def test_6_a_base_url_without_a_host_is_an_invalid_request(url):
    with pytest.raises(errors.InvalidRequest, match="base_url"):
        ClientConfig(base_url=url)


# ------------------------------------------------------------- 7. classification


@pytest.mark.parametrize(
    "fault, error, requests_sent",
    [
        ("insufficient_quota", errors.QuotaExceeded, 1),  # out of credit: asking again will not add any
        ("501", errors.BadRequest, 1),
        ("503:x-should-retry=false", errors.ServerError, 1),  # the server said so
        ("400:x-should-retry=true", errors.BadRequest, 3),  # ... both ways, as the official SDK
    ],
)
def test_7_classification_follows_what_the_server_says(fault, error, requests_sent):
    with FakeLLMServer(default=fault, latency=0) as srv, client_for(srv.url, max_attempts=3) as client:
        with pytest.raises(error):
            client.chat(HELLO)
        assert len(srv.attempts) == requests_sent


def test_7_an_untrusted_certificate_is_permanent():
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(CERT, KEY)
    with RawServer(reply(b"HTTP/1.1 200 OK", [f"Content-Length: {len(COMPLETION)}".encode()]), tls) as srv:
        with pytest.raises(errors.CertificateError, match="not trusted"):
            one_attempt(srv.url)
        with Transport(srv.url) as t:  # trusted (as REQUESTS_CA_BUNDLE would): it works
            t.session.verify = str(CERT)
            assert t.chat(PAYLOAD, timeouts=TWO_S).text == "hi"


def test_7_a_retry_after_too_long_to_obey_pauses_nothing():
    far = "Fri, 31 Dec 9999 23:59:59 GMT"
    with FakeLLMServer([f"429:retry-after={far}", "ok"], latency=0) as srv:
        # 3 s: after the 1 s pause, a request still has the half budget a new client asks for
        with client_for(srv.url, rpm=6000, timeouts=Timeouts(1, 1, 3)) as client:
            start = time.monotonic()
            assert client.chat(HELLO).attempts == 2
            assert client.limiter is not None and client.limiter.paused_for <= 1.0
    assert time.monotonic() - start < 1.5


# ------------------------------------------------------------------ 8. redirects


@pytest.mark.parametrize("status", [b"301 Moved Permanently", b"302 Found", b"303 See Other", b"307 Temporary"])
def test_8_a_redirect_is_never_followed(status):
    with FakeLLMServer(latency=0) as elsewhere:
        location = f"Location: {elsewhere.url}/chat/completions".encode()
        with RawServer(reply(b"HTTP/1.1 " + status, [location, b"Content-Length: 0"], b"")) as srv:
            with client_for(srv.url) as client, pytest.raises(errors.Redirected) as caught:
                client.chat(HELLO)
        assert elsewhere.attempts == []  # the prompt went nowhere else
    assert caught.value.location == f"{elsewhere.url}/chat/completions"
    assert elsewhere.url in str(caught.value) and "base_url" in str(caught.value)


def test_8_an_https_to_http_redirect_never_sends_the_prompt_in_cleartext():
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(CERT, KEY)
    with FakeLLMServer(latency=0) as plain:
        with FakeLLMServer([f"redirect:{plain.url}/chat/completions"], latency=0) as srv:
            with Transport(srv.url) as t, pytest.raises(errors.Redirected):
                t.chat(PAYLOAD, timeouts=TWO_S)
        redirect = b"HTTP/1.1 307 Temporary Redirect"
        with RawServer(reply(redirect, [f"Location: {plain.url}".encode(), b"Content-Length: 0"], b""), tls) as srv:
            with Transport(srv.url) as t, pytest.raises(errors.Redirected):
                t.session.verify = str(CERT)
                t.chat(PAYLOAD, timeouts=TWO_S)
        assert plain.attempts == []


# --------------------------------------------------------- 9. what the server said


@pytest.mark.parametrize(
    "body, said",
    [
        (b'{"error": "Bad Request", "message": "model zzz does not exist"}', "Bad Request: model zzz does not exist"),
        (b'{"detail": "Not authenticated"}', "Not authenticated"),
        (b"<html><h1>502 Bad Gateway</h1></html>", "502 Bad Gateway"),
        (b"", "empty body"),
    ],
)
def test_9_an_error_says_what_the_server_said(body, said):
    headers = [b"Content-Type: text/plain", f"Content-Length: {len(body)}".encode()]
    with RawServer(reply(b"HTTP/1.1 400 Bad Request", headers, body)) as srv:
        with pytest.raises(errors.BadRequest) as caught:
            one_attempt(srv.url)
    assert said in str(caught.value)


def test_9_an_invalid_200_names_its_status_and_shape():
    headers = [b"Content-Type: application/json", b"Content-Length: 4"]
    with RawServer(reply(b"HTTP/1.1 200 OK", headers, b"null")) as srv:
        with pytest.raises(errors.InvalidResponse, match="JSON null") as caught:
            one_attempt(srv.url)
    assert caught.value.status_code == 200


@pytest.mark.parametrize("key", ['sk-with"quote', "sk-with\\backslash", "sk-both\\\"'"])
def test_9_a_key_echoed_by_the_server_is_never_quoted(key):
    def echo_the_key(conn, stop):
        body = f"oops, you sent {key!r} and {json.dumps(key)} which I cannot read".encode()
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)

    def echo_in_error(conn, stop):
        body = json.dumps({"error": {"message": f"Incorrect API key provided: {key}"}}).encode()
        conn.sendall(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: %d\r\n\r\n" % len(body) + body)

    for handler, error in ((echo_the_key, errors.InvalidResponse), (echo_in_error, errors.AuthError)):
        with RawServer(handler) as srv, pytest.raises(error) as caught:
            one_attempt(srv.url, api_key=key)
        shown = str(caught.value) + repr(caught.value)
        assert "***" in shown and "with" not in shown and "both" not in shown


# ----------------------------------------------------------------- 10. usage


@pytest.mark.parametrize("kind", ["big", "inf", "negative", "missing", "text"])
def test_10_usage_is_not_trusted_blindly(kind):
    with FakeLLMServer([f"bad_usage:{kind}", "ok"], latency=0) as srv:
        with client_for(srv.url, tpm=60_000) as client:
            odd = client.chat(HELLO)
            start = time.monotonic()
            fine = client.chat([{"role": "user", "content": "next"}])
            waited = time.monotonic() - start
    assert odd.text and odd.usage.known is False and odd.cost_usd is None
    assert fine.usage.known and fine.cost_usd is not None and fine.cost_usd >= 0
    assert waited < 0.5  # the limiter was not charged 10^30 tokens
