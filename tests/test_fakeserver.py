"""The fake server over real sockets: protocol, fault grammar, limits, idempotency."""

import json
import subprocess
import sys

import pytest
import requests

from week04_lib.fakeserver import FakeLLMServer, Fault, LatencyModel

from .conftest import HELLO


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

    assert run(7) == run(7) and run(7) != run(8)
    assert set(run(7)) == {200, 503}


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
