"""The fake server over real sockets: protocol, fault grammar, limits, idempotency."""

import gzip
import itertools
import json
import math
import subprocess
import sys
import time
import uuid
import zlib

import pytest
import requests

from week04_lib.fakeserver import FakeLLMServer, Fault, LatencyModel

from .conftest import HELLO
from .hostile import raw_post, read_head


def post(srv, body=None, headers=None, timeout=(1, 2)):
    body = body if body is not None else {"model": "fake-mini", "messages": HELLO}
    return requests.post(f"{srv.url}/chat/completions", json=body, headers=headers or {}, timeout=timeout)


def test_ok_is_a_real_chat_completion():
    with FakeLLMServer(latency=0) as srv:
        data = post(srv).json()
    assert data["object"] == "chat.completion" and data["model"] == "fake-mini"
    assert isinstance(data["choices"][0]["message"]["content"], str)
    usage = data["usage"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert srv.billed_tokens == usage["total_tokens"]


def test_official_openai_package_parses_the_reply():
    openai = pytest.importorskip("openai")  # in requirements-dev.txt, installed by make setup
    with FakeLLMServer(latency=0, api_key="sk-test") as srv:
        client = openai.OpenAI(base_url=srv.url, api_key="sk-test", max_retries=0)
        reply = client.chat.completions.create(model="fake-large", messages=HELLO)
        models = [m.id for m in client.models.list()]
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=srv.url, api_key="wrong", max_retries=0).chat.completions.create(
                model="fake-large", messages=HELLO
            )
    assert reply.choices[0].message.content and reply.usage.total_tokens > 0
    assert "fake-mini" in models


def test_replies_are_deterministic_for_seed_and_prompt():
    def answer(seed, content):
        with FakeLLMServer(latency=0, seed=seed) as srv:
            return post(srv, {"model": "m", "messages": [{"role": "user", "content": content}]}).json()

    first = answer(1, "a")["choices"][0]["message"]["content"]
    assert answer(1, "a")["choices"][0]["message"]["content"] == first
    assert answer(2, "a")["choices"][0]["message"]["content"] != first
    assert answer(1, "b")["choices"][0]["message"]["content"] != first


def test_temperature_varies_the_answer_unless_seeded():
    with FakeLLMServer(latency=0) as srv:
        hot = {"model": "m", "messages": HELLO, "temperature": 0.9}
        texts = {post(srv, hot).json()["choices"][0]["message"]["content"] for _ in range(4)}
        seeded = {post(srv, {**hot, "seed": 3}).json()["choices"][0]["message"]["content"] for _ in range(3)}
    assert len(texts) > 1 and len(seeded) == 1


def test_script_then_default_and_attempt_records():
    with FakeLLMServer(["503", "429:retry-after=2", "404"], default="500", latency=0) as srv:
        codes = [post(srv).status_code for _ in range(5)]
        r = post(srv)
    assert codes == [503, 429, 404, 500, 500]
    faults = [a.fault for a in srv.attempts]
    assert faults[:4] == ["503", "429:retry-after=2", "404", "500"]
    assert all(a.path == "/v1/chat/completions" and a.body["messages"] == HELLO for a in srv.attempts)
    assert srv.attempts[0].t <= srv.attempts[-1].t
    assert r.json()["error"]["type"] == "server_error" and srv.billed_tokens == 0


def test_retry_after_headers():
    with FakeLLMServer(["429:retry-after=2", "503:retry-after-ms=1500"], latency=0) as srv:
        assert post(srv).headers["Retry-After"] == "2"
        assert post(srv).headers["retry-after-ms"] == "1500"


def test_mix_is_seeded():
    def run(seed):
        with FakeLLMServer(mix={"ok": 0.5, "503": 0.5}, seed=seed, latency=0) as srv:
            return [post(srv).status_code for _ in range(30)]

    first, again, other = run(7), run(7), run(8)  # each run a fresh server
    assert first == again and first != other
    assert set(first) == {200, 503}


def test_paired_draws_give_each_prompt_the_same_faults_in_any_order():
    def run(order, paired=True):
        with FakeLLMServer(mix={"ok": 0.5, "503": 0.5}, seed=7, paired=paired, latency=0) as srv:
            for i in order:  # each prompt asked twice: its 1st and 2nd request
                for _ in range(2):
                    body = {"model": "fake-mini", "messages": [{"role": "user", "content": f"q{i}"}]}
                    requests.post(f"{srv.url}/chat/completions", json=body, timeout=5)
            seen: dict[str, list[str]] = {}
            for a in srv.attempts:
                seen.setdefault(a.body["messages"][0]["content"], []).append(a.fault)
            return seen

    forward, backward = run(range(20)), run(reversed(range(20)))
    assert forward == backward and {f for faults in forward.values() for f in faults} == {"ok", "503"}
    assert run(range(20), paired=False) != run(reversed(range(20)), paired=False)  # arrival order decides


def _is_json(text):
    try:
        json.loads(text)
        return True
    except ValueError:
        return False


@pytest.mark.parametrize(
    "fault, content_type, check",
    [
        ("invalid_json", "application/json", lambda t: not _is_json(t)),
        ("html", "text/html", lambda t: t.startswith("<html>")),
        ("empty", "application/json", lambda t: "choices" not in json.loads(t)),
    ],
)
def test_broken_bodies(fault, content_type, check):
    with FakeLLMServer([fault], latency=0) as srv:
        r = post(srv)
    assert r.status_code == 200 and r.headers["Content-Type"] == content_type
    assert check(r.text)


def test_reset_and_drop_close_without_answer_but_drop_bills():
    with FakeLLMServer(["reset", "drop"], latency=0) as srv:
        with pytest.raises(requests.ConnectionError, match="reset"):
            post(srv)
        assert srv.billed_tokens == 0
        with pytest.raises(requests.ConnectionError):
            post(srv)
        assert srv.billed_tokens > 0


def test_idempotency_key_replays_without_billing():
    with FakeLLMServer(["drop", "ok", "ok"], latency=0) as srv:
        with pytest.raises(requests.ConnectionError):
            post(srv, headers={"Idempotency-Key": "k1"})
        billed = srv.billed_tokens
        again = post(srv, headers={"Idempotency-Key": "k1"}).json()
        assert srv.billed_tokens == billed and srv.billed_requests == 1
        other = post(srv, headers={"Idempotency-Key": "k2"}).json()
        assert srv.billed_requests == 2 and other["id"] != again["id"]
        assert srv.attempts[0].headers["Idempotency-Key"] == "k1"


def test_api_key_required_when_set():
    with FakeLLMServer(latency=0, api_key="sk-right") as srv:
        assert post(srv).status_code == 401
        assert post(srv, headers={"Authorization": "Bearer sk-right"}).status_code == 200
    assert srv.attempts[0].fault == "auth"


def test_bad_body_is_400_and_unknown_route_404():
    with FakeLLMServer(latency=0) as srv:
        assert post(srv, {"model": "m"}).status_code == 400
        assert requests.post(f"{srv.url}/completions", json={}, timeout=2).status_code == 404


def test_server_rate_limit_answers_429_with_headers():
    with FakeLLMServer(rpm=60, latency=0) as srv:  # one request per second, burst of one
        first, second = post(srv), post(srv)
    assert first.status_code == 200 and second.status_code == 429
    assert first.headers["x-ratelimit-limit-requests"] == "60"
    assert second.headers["x-ratelimit-remaining-requests"] == "0"
    assert second.headers["Retry-After"] == "1" and 0 < int(second.headers["retry-after-ms"]) <= 1000
    assert second.headers["x-ratelimit-reset-requests"].endswith("s")
    assert [a.fault for a in srv.attempts] == ["ok", "rate_limited"]


def test_token_limit_counts_prompt_and_max_tokens():
    with FakeLLMServer(tpm=600, latency=0) as srv:  # 10 tokens a second
        big = {"model": "m", "messages": HELLO, "max_tokens": 8}
        assert post(srv, big).status_code == 200
        r = post(srv, big)
    assert r.status_code == 429 and r.headers["x-ratelimit-remaining-tokens"] == "0"


def test_latency_model_has_the_asked_median_and_tail():
    samples = sorted(LatencyModel((0.5, 4.0)).samples(20000, seed=1))
    assert samples[10000] == pytest.approx(0.5, rel=0.05)
    assert samples[19800] == pytest.approx(4.0, rel=0.1)
    assert LatencyModel(0).samples(3) == [0, 0, 0]


@pytest.mark.parametrize(
    "spec",
    [
        "ok",
        "slow:0.5",
        "hang",
        "trickle:1",
        "reset",
        "drop",
        "invalid_json",
        "html",
        "empty",
        "429",
        "529:retry-after=3",
        "503:retry-after-ms=20",
        "401",
        "422",
    ],
)
def test_fault_grammar_accepts(spec):
    assert Fault.parse(spec).name


@pytest.mark.parametrize("spec", ["nope", "slow", "slow:x", "trickle:-1", "999", "429:wait=3", "ok:1"])
def test_fault_grammar_rejects_with_the_list_of_names(spec):
    with pytest.raises(ValueError, match="fault"):
        Fault.parse(spec)


def test_bad_mix_is_rejected():
    with pytest.raises(ValueError, match="mix"):
        FakeLLMServer(mix={"ok": -1})


def test_stop_ends_hung_and_trickling_connections(no_leaks):
    import threading

    srv = FakeLLMServer(["hang", "trickle:0.05"], latency=0).start()
    outcomes = []

    def call():
        try:
            post(srv, timeout=(1, 30))
            outcomes.append("answered")
        except requests.RequestException:
            outcomes.append("closed")

    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
    while len(srv.attempts) < 2:
        threading.Event().wait(0.01)
    srv.stop()
    for t in threads:
        t.join(timeout=5)
    assert outcomes == ["closed", "closed"]


def test_command_line_serves_until_interrupted():
    proc = subprocess.Popen(
        [sys.executable, "-m", "week04_lib.fakeserver", "--port", "0", "--script", "503", "--latency", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        url = line.split(" at ")[1].split()[0]
        body = {"model": "m", "messages": HELLO}
        assert requests.post(f"{url}/chat/completions", json=body, timeout=2).status_code == 503
        assert requests.post(f"{url}/chat/completions", json=body, timeout=2).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=5)


def test_command_line_rejects_a_bad_fault():
    result = subprocess.run(
        [sys.executable, "-m", "week04_lib.fakeserver", "--script", "boom"], capture_output=True, text=True, timeout=20
    )
    assert result.returncode == 2 and "unknown fault 'boom'" in result.stderr


def test_model_faults_take_one_model_down_without_using_the_script():
    with FakeLLMServer(["503"], model_faults={"big": "500"}, latency=0) as srv:
        assert post(srv, {"model": "big", "messages": HELLO}).status_code == 500
        assert post(srv, {"model": "small", "messages": HELLO}).status_code == 503
        assert post(srv, {"model": "small", "messages": HELLO}).status_code == 200
        assert post(srv, {"model": "big", "messages": HELLO}).status_code == 500


# ------------------------------------------------------------------ the wire's odder tricks


def dechunk(wire):
    """The chunked body's pieces, read up to the last chunk and the end of the trailer."""
    pieces = []
    while size := int(wire.readline(), 16):
        pieces.append(wire.read(size))
        assert wire.read(2) == b"\r\n"
    assert wire.readline() == b"\r\n"
    return pieces


def test_header_trickle_sends_one_header_line_every_s_seconds():
    with FakeLLMServer(["header_trickle:0.05"], latency=0) as srv:
        with raw_post(srv) as wire:
            status, headers, fillers = wire.readline(), [], []
            while len(fillers) < 4:
                line = wire.readline().decode()
                if line.startswith("X-Filler-"):
                    fillers.append((line, time.monotonic()))
                else:
                    assert not fillers, "a normal header after the filler"
                    headers.append(line.split(":")[0])
    assert status.startswith(b"HTTP/1.1 200") and {"Content-Type", "Content-Length"} <= set(headers)
    assert [line for line, _ in fillers] == [f"X-Filler-{n}: x\r\n" for n in range(1, 5)]
    gaps = [b - a for (_, a), (_, b) in itertools.pairwise(fillers)]
    assert all(0.03 < gap < 0.5 for gap in gaps), gaps
    assert srv.attempts[0].fault == "header_trickle:0.05"


def test_header_trickle_ends_with_a_billed_completion_after_600_lines():
    with FakeLLMServer(["header_trickle:0", "header_trickle:0"], latency=0) as srv:
        with raw_post(srv) as wire:
            _, headers = read_head(wire)
            body = wire.read()
        with pytest.raises(requests.ConnectionError, match="more than 100 headers"):
            post(srv)  # http.client gives up on the headers
    assert sum(name.startswith("X-Filler-") for name in headers) == 600
    assert json.loads(body)["object"] == "chat.completion" and srv.billed_requests == 2


def test_chunked_stall_sends_the_body_then_a_trailer_that_never_ends():
    with FakeLLMServer(["chunked_stall"], latency=0) as srv:
        with raw_post(srv) as wire:
            _, headers = read_head(wire)
            size = int(wire.readline(), 16)
            reply = json.loads(wire.read(size))
            assert wire.read(2) == b"\r\n" and wire.readline() == b"0\r\n"
            started, trailer = time.monotonic(), [wire.readline() for _ in range(3)]
            elapsed = time.monotonic() - started
    assert headers["Transfer-Encoding"] == "chunked" and "Content-Length" not in headers
    assert reply["choices"][0]["message"]["content"] and srv.billed_requests == 1
    assert trailer == [b"X-Trailer-1: x\r\n", b"X-Trailer-2: x\r\n", b"X-Trailer-3: x\r\n"]
    assert 0.25 < elapsed < 1.5


@pytest.mark.parametrize("coding, decompress", [("gzip", gzip.decompress), ("deflate", zlib.decompress)])
def test_compress_when_the_client_accepts_it(coding, decompress):
    with FakeLLMServer(["ok", "503", "ok", "ok"], latency=0, compress=coding) as srv:
        replies = []
        for accept in (f"br, {coding}", f"{coding};q=1.0", None, "br"):
            with raw_post(srv, headers=[("Accept-Encoding", accept)] if accept else []) as wire:
                _, headers = read_head(wire)
                replies.append((headers, wire.read(int(headers["Content-Length"]))))
    (ok_headers, ok_body), (error_headers, error_body), *identity = replies
    assert ok_headers["Content-Encoding"] == coding and ok_headers["Vary"] == "Accept-Encoding"
    assert json.loads(decompress(ok_body))["object"] == "chat.completion"
    assert error_headers["Content-Encoding"] == coding
    assert json.loads(decompress(error_body))["error"]["code"] == 503
    for headers, body in identity:  # no Accept-Encoding, or only codings the server lacks
        assert "Content-Encoding" not in headers and json.loads(body)["object"] == "chat.completion"


def test_official_openai_package_reads_a_gzip_reply():
    openai = pytest.importorskip("openai")
    with FakeLLMServer(latency=0, compress="gzip") as srv:
        client = openai.OpenAI(base_url=srv.url, api_key="sk-test", max_retries=0)
        raw = client.chat.completions.with_raw_response.create(model="fake-mini", messages=HELLO)
        reply = raw.parse()
    assert raw.headers["content-encoding"] == "gzip"
    assert reply.choices[0].message.content and reply.usage.total_tokens == srv.billed_tokens


def test_strict_request_id_answers_400_with_an_empty_body():
    with FakeLLMServer(latency=0, strict_request_id=True, compress="gzip") as srv:
        bad = post(srv, headers={"X-Request-ID": "req_abc"})
        good = post(srv, headers={"X-Request-ID": str(uuid.uuid4())})
        none = post(srv)
    assert bad.status_code == 400 and bad.content == b"" and bad.headers["Content-Length"] == "0"
    assert "Content-Encoding" not in bad.headers  # an empty body stays empty
    assert good.status_code == 200 and none.status_code == 200
    assert [a.fault for a in srv.attempts] == ["bad_request_id", "ok", "ok"]
    assert srv.billed_requests == 2


def test_redirect_sends_307_with_the_location():
    with FakeLLMServer(latency=0) as target:
        url = f"{target.url}/chat/completions"
        with FakeLLMServer([f"redirect:{url}", f"redirect:{url}"], latency=0) as srv:
            r = requests.post(
                f"{srv.url}/chat/completions", json={"model": "m", "messages": HELLO}, allow_redirects=False, timeout=2
            )
            followed = post(srv)  # requests follows a 307 with the same method and body
    assert r.status_code == 307 and r.headers["Location"] == url and r.content
    assert followed.status_code == 200 and followed.history[0].status_code == 307
    assert srv.billed_tokens == 0 and target.billed_requests == 1
    assert srv.attempts[0].fault == f"redirect:{url}"


@pytest.mark.parametrize("accept", [None, "gzip"])
def test_huge_body_streams_megabytes_in_64_kib_chunks(accept):
    with FakeLLMServer(["huge_body:0.25"], latency=0, compress="gzip") as srv:
        with raw_post(srv, headers=[("Accept-Encoding", accept)] if accept else []) as wire:
            status, headers = read_head(wire)
            pieces = dechunk(wire)
    assert status.startswith(b"HTTP/1.1 200") and "Content-Length" not in headers
    body = b"".join(pieces)
    if accept:
        assert headers["Content-Encoding"] == "gzip"
        body = gzip.decompress(body)
    else:
        assert max(map(len, pieces)) == 64 * 1024 and len(pieces) == 5  # 256 KiB of content, plus the JSON
    reply = json.loads(body)
    assert len(reply["choices"][0]["message"]["content"]) == 256 * 1024
    assert reply["usage"]["completion_tokens"] == 64 * 1024 and srv.billed_tokens == reply["usage"]["total_tokens"]


def test_huge_body_stops_when_the_client_leaves_or_the_server_stops(no_leaks):
    srv = FakeLLMServer(["huge_body:500", "huge_body:500"], latency=0).start()
    with raw_post(srv) as wire:
        read_head(wire)
        wire.read(100_000)  # then hang up mid-body
    with raw_post(srv) as wire:
        read_head(wire)
        wire.read(100_000)  # and now stop reading
        started = time.monotonic()
        srv.stop()
    assert time.monotonic() - started < 1


@pytest.mark.parametrize("spec, status, key", [("deep_json", 200, b"choices"), ("deep_json:503", 503, b"error")])
def test_deep_json_is_too_deep_for_json_loads(spec, status, key):
    with FakeLLMServer([spec], latency=0) as srv:
        r = post(srv)
    assert r.status_code == status and r.headers["Content-Type"] == "application/json"
    assert r.content.startswith(b'{"' + key + b'": [[[') and r.content.count(b"[") == 100_000
    with pytest.raises(RecursionError):
        json.loads(r.content)


@pytest.mark.parametrize(
    "spec, check",
    [
        ("bad_usage", lambda usage, raw: usage["prompt_tokens"] == 10**30),
        ("bad_usage:big", lambda usage, raw: usage["prompt_tokens"] == 10**30),
        ("bad_usage:inf", lambda usage, raw: b'"prompt_tokens": 1e400' in raw and usage["prompt_tokens"] == math.inf),
        ("bad_usage:negative", lambda usage, raw: usage["prompt_tokens"] == -5),
        ("bad_usage:text", lambda usage, raw: usage["prompt_tokens"] == "many"),
        ("bad_usage:missing", lambda usage, raw: usage is None and b"usage" not in raw),
    ],
)
def test_bad_usage_reports_nonsense_but_bills_the_real_count(spec, check):
    with FakeLLMServer([spec], latency=0) as srv:
        r = post(srv)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]
    assert check(r.json().get("usage"), r.content)
    assert 0 < srv.billed_tokens < 100


def test_insufficient_quota_is_openais_out_of_credit_429():
    openai = pytest.importorskip("openai")
    with FakeLLMServer(["insufficient_quota", "insufficient_quota"], latency=0) as srv:
        r = post(srv)
        client = openai.OpenAI(base_url=srv.url, api_key="sk-test", max_retries=0)
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model="fake-mini", messages=HELLO)
    assert r.status_code == 429 and "Retry-After" not in r.headers
    assert r.json() == {
        "error": {
            "message": "You exceeded your current quota, please check your plan and billing details. For more "
            "information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
            "type": "insufficient_quota",
            "param": None,
            "code": "insufficient_quota",
        }
    }
    assert caught.value.code == "insufficient_quota" and srv.billed_tokens == 0


def test_501_is_a_provider_shaped_error():
    with FakeLLMServer(["501"], latency=0) as srv:
        r = post(srv)
    assert r.status_code == 501
    assert set(r.json()["error"]) == {"message", "type", "param", "code"} and r.json()["error"]["code"] == 501


def test_x_should_retry_header_and_the_official_sdk_obeys_it():
    openai = pytest.importorskip("openai")
    script = ["503:x-should-retry=false", "429:retry-after=2:x-should-retry=false", "400:x-should-retry=true"]
    with FakeLLMServer(script, latency=0) as srv:
        first, second, third = post(srv), post(srv), post(srv)
    assert first.status_code == 503 and first.headers["x-should-retry"] == "false"
    assert second.headers["Retry-After"] == "2" and second.headers["x-should-retry"] == "false"
    assert third.status_code == 400 and third.headers["x-should-retry"] == "true"

    script = ["503:x-should-retry=false", "400:x-should-retry=true:retry-after-ms=10", "ok"]
    with FakeLLMServer(script, latency=0) as srv:
        client = openai.OpenAI(base_url=srv.url, api_key="sk-test", max_retries=2)
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="fake-mini", messages=HELLO)  # not retried
        assert len(srv.attempts) == 1
        client.chat.completions.create(model="fake-mini", messages=HELLO)  # a 400, retried
    assert [a.fault for a in srv.attempts][1:] == ["400:x-should-retry=true:retry-after-ms=10", "ok"]


@pytest.mark.parametrize(
    "spec",
    [
        "header_trickle:0.05",
        "chunked_stall",
        "redirect:http://127.0.0.1:9/v1/chat/completions",
        "huge_body:0.5",
        "huge_body:3",
        "deep_json",
        "deep_json:503",
        "bad_usage",
        "bad_usage:inf",
        "bad_usage:missing",
        "insufficient_quota",
        "501",
        "503:x-should-retry=false",
        "400:x-should-retry=true",
        "429:retry-after=2:x-should-retry=false",
    ],
)
def test_fault_grammar_accepts_the_wire_tricks(spec):
    assert Fault.parse(spec).name


def test_fault_grammar_reads_urls_and_options():
    assert (
        Fault.parse("redirect:http://127.0.0.1:9/v1/chat/completions").url == "http://127.0.0.1:9/v1/chat/completions"
    )
    fault = Fault.parse("429:retry-after=2:x-should-retry=false")
    assert (fault.status, fault.retry_after, fault.should_retry) == (429, "2", "false")
    assert Fault.parse("bad_usage").usage == "big" and Fault.parse("huge_body:0.5").megabytes == 0.5


@pytest.mark.parametrize(
    "spec",
    [
        "bad_usage:weird",
        "huge_body:x",
        "huge_body:0",
        "header_trickle:-1",
        "header_trickle",
        "redirect:",
        "deep_json:999",
        "chunked_stall:1",
        "503:x-should-retry=maybe",
        "429:retry-after=1:retry-after=2",
    ],
)
def test_fault_grammar_rejects_bad_wire_tricks(spec):
    with pytest.raises(ValueError, match="fault"):
        Fault.parse(spec)


def test_compress_must_be_gzip_or_deflate():
    with pytest.raises(ValueError, match="compress"):
        FakeLLMServer(compress="br")


def test_command_line_compresses_and_checks_request_ids():
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "week04_lib.fakeserver",
            "--port",
            "0",
            "--latency",
            "0",
            "--compress",
            "gzip",
            "--strict-request-id",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = proc.stdout.readline().split(" at ")[1].split()[0]
        body = {"model": "m", "messages": HELLO}
        bad = requests.post(f"{url}/chat/completions", json=body, headers={"X-Request-ID": "req_abc"}, timeout=2)
        good = requests.post(f"{url}/chat/completions", json=body, timeout=2)
    finally:
        proc.terminate()
        proc.wait(timeout=5)
    assert bad.status_code == 400 and bad.content == b""
    assert good.headers["Content-Encoding"] == "gzip" and good.json()["object"] == "chat.completion"
