"""State and the API outside the notebooks (issue 11): logs per client, idempotency keys
per model, per-call options, whole results, configuration checked field by field, the
command line's exit codes, errors with their context. One test (or family) per item;
the cache (4), the queue (5), installs (1, 2) and the limiter's order (11) have theirs
in test_cache, test_degrade, test_install and test_ratelimit."""

from __future__ import annotations

import json
import logging
import time
import uuid

import pytest

from week04_lib import ClientConfig, LLMClient, Timeouts, errors
from week04_lib.fakeserver import FakeLLMServer
from week04_lib.logs import format_summary, read_logs, summarize

from .conftest import HELLO
from .hostile import RawServer


def client_for(url, **config):
    config.setdefault("retry_budget", None)
    config.setdefault("timeouts", Timeouts(1, 1, 2))
    return LLMClient(ClientConfig(base_url=url, model="fake-mini", backoff_base=0.01, backoff_cap=0.02, **config))


def canned(body: dict):
    data = json.dumps(body).encode()

    def handle(conn, stop):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(data))
        conn.sendall(data)

    return handle


# ------------------------------------------------------------ 3. a log per client


def test_3_each_client_writes_only_its_own_log(tmp_path):
    root = logging.getLogger("week04_lib")
    level_before = root.level
    paths = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    with FakeLLMServer(latency=0) as srv:
        a, b = (client_for(srv.url, log_path=str(p)) for p in paths)
        ids = {"a": a.chat(HELLO).request_id, "b": b.chat(HELLO).request_id}
        ids["a2"] = a.chat([{"role": "user", "content": "again"}]).request_id
        a.close()
        b.close()
    logged = [set(read_logs(p)["request_id"]) for p in paths]
    assert logged == [{ids["a"], ids["a2"]}, {ids["b"]}]
    assert root.level == level_before and not [h for h in root.handlers if isinstance(h, logging.FileHandler)]


def test_3_an_unwritable_log_is_a_clear_error_at_construction(tmp_path):
    with pytest.raises(errors.InvalidRequest, match="cannot write the log"):
        LLMClient(ClientConfig(base_url="http://127.0.0.1:9/v1", log_path=str(tmp_path / "missing" / "x.jsonl")))


# ------------------------------------------------- 6. idempotency keys per model


def test_6_each_model_has_its_own_idempotency_key_and_the_same_request_id():
    with FakeLLMServer(model_faults={"fake-mini": "503"}, latency=0) as srv:
        with client_for(srv.url, fallback_models=["fake-large"], max_attempts=2) as client:
            result = client.chat(HELLO)
    sent = [(a.body["model"], a.headers["X-Request-ID"], a.headers["Idempotency-Key"]) for a in srv.attempts]
    assert [m for m, *_ in sent] == ["fake-mini", "fake-mini", "fake-large"]
    assert {rid for _, rid, _ in sent} == {result.request_id}
    mini_keys = {key for model, _, key in sent if model == "fake-mini"}
    large_keys = {key for model, _, key in sent if model == "fake-large"}
    assert len(mini_keys) == 1 and len(large_keys) == 1 and mini_keys != large_keys  # stable per model


def test_6_a_fallback_never_tried_is_not_charged_to_its_breaker():
    with FakeLLMServer(model_faults={"fake-mini": "hang"}, latency=0) as srv:
        with client_for(srv.url, fallback_models=["fake-large"], breaker_failures=1) as client:
            with pytest.raises(errors.AllModelsFailed):
                client.chat(HELLO, timeout=0.3)  # the primary uses the whole deadline
            assert client.breakers["fake-large"].state == "closed"
            assert client.chat(HELLO, model="fake-large").text  # not CircuitOpen
    assert [a.body["model"] for a in srv.attempts] == ["fake-mini", "fake-large"]


# ---------------------------------------------------------- 7. per-call options


def test_7_per_call_options_are_never_sent_in_the_body():
    with FakeLLMServer(latency=0) as srv, client_for(srv.url, cache="memory") as client:
        client.chat(HELLO, temperature=0, timeout=5, max_attempts=2, cache=False, extra_headers={"X-Trace": "t1"})
        sent = srv.attempts[0]
    assert sent.body == {"model": "fake-mini", "messages": HELLO, "temperature": 0}
    assert sent.headers["X-Trace"] == "t1"


def test_7_timeout_bounds_this_call_only():
    with FakeLLMServer(default="hang", latency=0) as srv, client_for(srv.url) as client:
        start = time.monotonic()
        with pytest.raises(errors.LLMTimeout):
            client.chat(HELLO, timeout=0.3)
        assert time.monotonic() - start < 0.3 + 0.25
        start = time.monotonic()
        with pytest.raises(errors.LLMTimeout):
            client.chat(HELLO, timeout=Timeouts(1, 0.2, 0.5))
        assert time.monotonic() - start < 0.5 + 0.25


def test_7_max_attempts_and_cache_per_call():
    with FakeLLMServer(default="503", latency=0) as srv, client_for(srv.url, max_attempts=4) as client:
        with pytest.raises(errors.ServerError):
            client.chat(HELLO, max_attempts=1)
        assert len(srv.attempts) == 1
    with FakeLLMServer(latency=0) as srv, client_for(srv.url, cache="memory") as client:
        client.chat(HELLO, temperature=0, cache=False)  # not stored
        assert not client.chat(HELLO, temperature=0).cached  # so this one is sent, and stored
        assert not client.chat(HELLO, temperature=0, cache=False).cached  # not read either
        assert client.chat(HELLO, temperature=0).cached
        assert len(srv.attempts) == 3


@pytest.mark.parametrize(
    "options",
    [
        {"timeout": 0},
        {"timeout": float("nan")},
        {"max_attempts": 0},
        {"cache": "no"},
        {"extra_headers": {"X": "a\r\nb"}},
    ],
)
def test_7_bad_options_are_invalid_requests(options):
    with FakeLLMServer(latency=0) as srv, client_for(srv.url) as client, pytest.raises(errors.InvalidRequest):
        client.chat(HELLO, **options)
    assert srv.attempts == []


def test_7_an_explicit_model_is_the_only_one_asked_and_none_is_asked_twice():
    with FakeLLMServer(default="503", latency=0) as srv:
        with client_for(srv.url, fallback_models=["fake-large", "fake-mini"], max_attempts=1) as client:
            with pytest.raises(errors.ServerError):
                client.chat(HELLO, model="fake-large")
            asked = [a.body["model"] for a in srv.attempts]
            with pytest.raises(errors.AllModelsFailed):
                client.chat(HELLO)
            chain = [a.body["model"] for a in srv.attempts][len(asked) :]
    assert asked == ["fake-large"] and chain == ["fake-mini", "fake-large"]


# ---------------------------------------------------------- 8. whole results


def test_8_a_tool_call_answer_keeps_its_tool_calls():
    call = {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": '{"a": 1}'}}
    body = {
        "model": "fake-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": None, "tool_calls": [call]},
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3},
    }
    with RawServer(canned(body)) as srv, client_for(srv.url) as client:
        result = client.chat(HELLO)
    assert result.text == "" and result.tool_calls == [call] and result.finish_reason == "tool_calls"


def test_8_every_choice_and_a_legacy_text_answer():
    body = {
        "model": "fake-mini",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "one"}, "finish_reason": "stop"},
            {"index": 1, "message": {"role": "assistant", "content": "two"}, "finish_reason": "stop"},
        ],
    }
    with RawServer(canned(body)) as srv, client_for(srv.url) as client:
        result = client.chat(HELLO, n=2)
    assert result.text == "one" and [c["message"]["content"] for c in result.choices] == ["one", "two"]
    legacy = {"model": "fake-mini", "choices": [{"index": 0, "text": "old style", "finish_reason": "stop"}]}
    with RawServer(canned(legacy)) as srv, client_for(srv.url) as client:
        assert client.chat(HELLO).text == "old style"


def test_8_unknown_costs_are_unknown_not_zero(tmp_path):
    path = tmp_path / "log.jsonl"
    with FakeLLMServer(["ok", "ok"], latency=0) as srv, client_for(srv.url, log_path=str(path)) as client:
        priced = client.chat(HELLO)
        with pytest.warns(UserWarning, match="no price"):
            unpriced = client.chat(HELLO, model="some-unpriced-model")
    assert priced.cost_usd and unpriced.cost_usd is None
    summary = summarize(read_logs(path))
    assert summary["unknown_cost_calls"] == 1 and summary["cost_usd"] == pytest.approx(priced.cost_usd, abs=1e-6)
    assert "+ unknown (1 calls)" in format_summary(summary)


# ------------------------------------------------------------ 9. configuration


@pytest.mark.parametrize(
    "field, value",
    [
        ("max_attempts", float("nan")),
        ("max_attempts", "3"),
        ("max_attempts", 0),
        ("rpm", float("nan")),
        ("rpm", 0.5),
        ("rpm", "60"),
        ("tpm", 0.5),
        ("max_concurrency", float("nan")),
        ("cache_ttl_s", float("nan")),
        ("breaker_reset_s", float("nan")),
        ("breaker_reset_s", float("inf")),
        ("breaker_failures", 0),
        ("backoff_base", -1),
        ("retry_budget", float("nan")),
        ("serve_stale", "yes"),
        ("fallback_models", [1, 2]),
    ],
)
def test_9_every_field_is_checked_at_construction(field, value):
    with pytest.raises(errors.InvalidRequest, match=field):
        ClientConfig(**{field: value})


def test_9_config_is_immutable_and_friendly_where_it_can_be():
    config = ClientConfig(fallback_models=None)
    assert config.fallback_models == ()
    with pytest.raises(AttributeError):
        config.max_attempts = 10  # type: ignore[misc]
    with pytest.raises(errors.InvalidRequest, match="WEEK04_BREAKER_RESET_S"):
        ClientConfig.from_env({"WEEK04_BREAKER_RESET_S": "nan"})


# ---------------------------------------------------------- 10. the CLI's codes
# run_cli (conftest.py) runs main(ARGS) in this process; test_cli.py runs real processes too


@pytest.mark.parametrize(
    "args, env, code",
    [
        (["chat", "hi", "--cache", "sqlite:/nonexistent/x.db"], {}, 2),
        (["chat", "hi", "--log", "/nonexistent/x.jsonl"], {}, 2),
        (["chat", "hi"], {"WEEK04_QUEUE_PATH": "/nonexistent/q.db"}, 2),
        (["chat", "hi"], {"WEEK04_BREAKER_RESET_S": "nan"}, 2),
        (["logs", "summarize", "/tmp"], {}, 2),
        (["serve", "--port", "-1"], {}, 2),
        (["serve", "--port", "99999"], {}, 2),
        (["chat", "hi", "--model", "some-unpriced-model"], {}, 0),
    ],
)
def test_10_the_cli_keeps_its_exit_code_table(run_cli, args, env, code):
    done = run_cli(*args, **env)
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr
    said = [line for line in done.stderr.splitlines() if not line.startswith("(no WEEK04_BASE_URL")]
    if code:  # one line that says what to fix (argparse puts its usage lines before it)
        assert "error:" in said[-1] and ("usage:" in done.stderr or len(said) == 1), said
    else:  # the answer's line and one-line warnings, nothing else
        assert all(line.startswith(("[", "warning:")) for line in said), said


def test_10_a_log_line_with_an_odd_model_is_summarized(run_cli, tmp_path):
    path = tmp_path / "odd.jsonl"
    line = {"ts": "2026-01-01T00:00:00Z", "event": "final", "model": {"x": 1}, "success": True, "latency_s": 0.1}
    path.write_text(json.dumps(line) + "\n")
    done = run_cli("logs", "summarize", str(path))
    assert done.returncode == 0 and "1 calls" in done.stdout


# ------------------------------------------------------ 12. errors with context


def test_12_errors_raised_outside_the_transport_carry_their_call():
    with FakeLLMServer(default="503", latency=0) as srv:
        with client_for(srv.url, breaker_failures=1, max_attempts=1) as client:
            with pytest.raises(errors.ServerError):
                client.chat(HELLO)
            rid = str(uuid.uuid4())
            with pytest.raises(errors.CircuitOpen) as opened:
                client.chat(HELLO, request_id=rid)
    assert (opened.value.request_id, opened.value.model) == (rid, "fake-mini")
    with FakeLLMServer(latency=0) as srv, client_for(srv.url, rpm=1) as client:
        client.chat(HELLO)
        with pytest.raises(errors.ClientRateLimited) as limited:
            client.chat(HELLO, request_id=rid, timeout=0.2)  # the next slot is a minute away
    assert (limited.value.request_id, limited.value.model, limited.value.attempt) == (rid, "fake-mini", 1)


def test_12_a_spent_retry_budget_keeps_the_servers_retry_after():
    with FakeLLMServer(default="429:retry-after=1", latency=0) as srv:
        config = ClientConfig(base_url=srv.url, model="fake-mini", retry_budget=0.0, timeouts=Timeouts(1, 1, 2))
        with LLMClient(config) as client:
            client.retry.budget.min_retries = 0
            with pytest.raises(errors.RetryBudgetExhausted) as caught:
                client.chat(HELLO)
    assert caught.value.retry_after == 1.0
