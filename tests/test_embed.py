"""LLMClient.embed against the fake server: input order, the per-text cache (a corpus
embedded again sends only what changed), batches, retries, cost, logs, bad input."""

from __future__ import annotations

import math

import pytest

from week04_lib import ClientConfig, LLMClient, errors
from week04_lib.fakeserver import FakeLLMServer
from week04_lib.logs import read_logs


def client_for(srv, **config) -> LLMClient:
    config = {"model": "fake-mini", "embedding_model": "fake-embed", "cache": "memory", **config}
    return LLMClient(ClientConfig(base_url=srv.url, **config))


def texts_sent(srv) -> list[str]:
    return [text for a in srv.attempts for text in a.body["input"]]


def test_vectors_come_back_in_input_order_and_match_the_server():
    texts = ["alpha", "beta", "gamma", "beta"]
    with FakeLLMServer(latency=0) as srv, client_for(srv, cache=None) as client:
        result = client.embed(texts)
        alone = [client.embed(t).vectors[0] for t in ("alpha", "beta", "gamma")]
    assert result.vectors[0] == alone[0] and result.vectors[1] == result.vectors[3] == alone[1]
    assert result.vectors[2] == alone[2] and result.vectors[0] != result.vectors[1]
    assert all(math.isclose(math.hypot(*v), 1.0, rel_tol=1e-6) for v in result.vectors)
    assert srv.attempts[0].body["input"] == ["alpha", "beta", "gamma"]  # a repeated text is sent once
    assert result.model == "fake-embed" and result.cached == [False] * 4 and result.attempts == 1


def test_embedding_a_corpus_again_sends_only_the_changed_lines():
    corpus = [f"line {i}: the quick brown fox number {i}" for i in range(1000)]
    with FakeLLMServer(latency=0) as srv, client_for(srv) as client:
        first = client.embed(corpus)
        sent_first = len(texts_sent(srv))
        for i in range(0, 1000, 100):
            corpus[i] = f"edited line {i}"
        again = client.embed(corpus)
        sent_again = texts_sent(srv)[sent_first:]
    assert sent_first == 1000 and sorted(sent_again) == sorted(corpus[i] for i in range(0, 1000, 100))
    assert sum(again.cached) == 990 and again.usage.prompt_tokens < first.usage.prompt_tokens / 50
    assert again.cost_usd == pytest.approx(first.cost_usd * again.usage.prompt_tokens / first.usage.prompt_tokens)
    assert again.vectors[1] == first.vectors[1] and again.vectors[0] != first.vectors[0]


def test_long_lists_go_in_batches_of_max_batch():
    texts = [f"text {i}" for i in range(600)]
    with FakeLLMServer(latency=(0.01, 0.05)) as srv, client_for(srv, cache=None) as client:
        result = client.embed(texts, max_batch=256, concurrency=3)
        one_by_one = client.embed(texts[::97], max_batch=1)
    assert sorted(len(a.body["input"]) for a in srv.attempts[:3]) == [88, 256, 256]
    assert result.vectors[::97] == one_by_one.vectors and result.attempts == 3
    assert len({a.headers["X-Request-ID"] for a in srv.attempts[:3]}) == 3  # one id per batch request


def test_dimensions_change_the_vector_and_the_cache_entry():
    with FakeLLMServer(latency=0) as srv, client_for(srv) as client:
        small = client.embed("hello", dimensions=8)
        full = client.embed("hello")
    assert len(small.vectors[0]) == 8 and len(full.vectors[0]) > 8 and not full.cached[0]
    assert srv.attempts[0].body["dimensions"] == 8 and "dimensions" not in srv.attempts[1].body


def test_transient_failures_are_retried_and_counted():
    with FakeLLMServer(script=["503", "reset", "ok"], latency=0) as srv:
        with client_for(srv, backoff_base=0.01, backoff_cap=0.01) as client:
            result = client.embed(["a", "b"])
    assert result.attempts == 3 and len(result.vectors) == 2


def test_a_failed_batch_raises_and_loses_nothing_already_embedded():
    texts = [f"t{i}" for i in range(6)]
    with FakeLLMServer(script=["ok", "400"], latency=0) as srv, client_for(srv) as client:
        with pytest.raises(errors.BadRequest):
            client.embed(texts, max_batch=2, concurrency=1)
        result = client.embed(texts, max_batch=2, concurrency=1)
    assert result.cached == [True, True, False, False, False, False]
    assert texts_sent(srv)[-4:] == texts[2:]


def test_cost_counts_only_what_was_sent_and_the_log_has_one_final_per_call(tmp_path):
    log = tmp_path / "calls.jsonl"
    with FakeLLMServer(latency=0) as srv, client_for(srv, log_path=str(log)) as client:
        sent = client.embed(["one text", "another text"])
        hit = client.embed(["one text"])
        saved = client.cache.stats()["saved_usd"]
    assert sent.cost_usd == pytest.approx(0.02 * sent.usage.prompt_tokens / 1e6) and sent.cost_usd > 0
    assert hit.cost_usd == 0 and hit.cached == [True] and hit.attempts == 0 and saved > 0
    records = read_logs(log)
    finals = records.query("event == 'final'")
    assert list(finals["cache_hit"]) == [False, True] and list(finals["attempt"]) == [1, 0]
    assert finals["tokens_in"].iloc[0] == sent.usage.prompt_tokens
    assert list(records["event"]) == ["attempt", "final", "final"]


@pytest.mark.parametrize(
    "texts, options, match",
    [
        ([], {}, "non-empty list"),
        (["ok", ""], {}, r"texts\[1\]"),
        (["ok", 3], {}, r"texts\[1\]"),
        ("ok", {"dimensions": 0}, "dimensions"),
        ("ok", {"temperature": 0}, "temperature"),
        ("ok", {"max_batch": 0}, "max_batch"),
        ("ok", {"concurrency": 100}, "concurrency"),
    ],
)
def test_bad_input_is_refused_before_anything_is_sent(texts, options, match):
    with FakeLLMServer(latency=0) as srv, client_for(srv) as client:
        with pytest.raises(errors.InvalidRequest, match=match):
            client.embed(texts, **options)
    assert srv.attempts == []


def test_embed_uses_the_embedding_preset_not_the_chat_timeouts():
    from week04_lib import Timeouts

    with FakeLLMServer(default="slow:0.4", latency=0) as srv:
        with client_for(srv, timeouts=Timeouts(connect=1, read=0.2, total=0.3)) as client:
            with pytest.raises(errors.LLMTimeout):
                client.chat([{"role": "user", "content": "hi"}], max_attempts=1)
            assert client.embed("hi").vectors  # 3/10/13 s
            with pytest.raises(errors.LLMTimeout):
                client.embed("other", timeout=0.2, max_attempts=1)
