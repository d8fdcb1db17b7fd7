"""Cache keys, the caching policy, and both stores (threads, processes, damaged files)."""

import json
import logging
import random
import subprocess
import sys
import textwrap
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from week04_lib.cache import MemoryCache, SQLiteCache, cache_key, cacheable, open_cache, storable
from week04_lib.degrade import stale_answer

from .virtual_time import VirtualClock

BASE = {
    "model": "fake-mini",
    "messages": [{"role": "system", "content": "Answer in French."}, {"role": "user", "content": "hello"}],
    "temperature": 0,
    "max_tokens": 64,
}

CHANGES = {
    "model": "fake-large",
    "system prompt": [{"role": "system", "content": "Answer in English."}, {"role": "user", "content": "hello"}],
    "no system prompt": [{"role": "user", "content": "hello"}],
    "message order": [{"role": "user", "content": "hello"}, {"role": "system", "content": "Answer in French."}],
    "temperature": 0.2,
    "top_p": 0.9,
    "max_tokens": 65,
    "stop": ["\n"],
    "seed": 7,
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
    "tool_choice": "auto",
    "response_format": {"type": "json_object"},
    "n": 2,
    "presence_penalty": 0.5,
    "frequency_penalty": 0.5,
    "logit_bias": {"50256": -100},
    "a_parameter_from_next_year": True,
}


@pytest.mark.parametrize("what", sorted(CHANGES))
def test_any_output_affecting_change_changes_the_key(what):
    field = "messages" if "prompt" in what or what == "message order" else what
    changed = {**BASE, field: CHANGES[what]}
    assert cache_key(changed) != cache_key(BASE)


def test_the_endpoint_is_part_of_the_key():
    assert cache_key(BASE, "http://a/v1") != cache_key(BASE, "http://b/v1")
    assert cache_key(BASE, "http://a/v1/") == cache_key(BASE, "http://a/v1")


def test_number_spelling_does_not_change_the_key():
    assert cache_key({**BASE, "temperature": 0.0}) == cache_key(BASE)
    assert cache_key({**BASE, "top_p": 1}) == cache_key({**BASE, "top_p": 1.0})
    assert cache_key({**BASE, "stream": False}) != cache_key({**BASE, "stream": 0})  # a bool is not a number


@given(st.randoms(use_true_random=False))
def test_dict_order_never_changes_the_key(rng):
    def shuffled(value):
        if isinstance(value, dict):
            items = list(value.items())
            rng.shuffle(items)
            return {k: shuffled(v) for k, v in items}
        if isinstance(value, list):
            return [shuffled(v) for v in value]
        return value

    request = {**BASE, "tools": CHANGES["tools"], "response_format": CHANGES["response_format"]}
    assert cache_key(shuffled(request)) == cache_key(request)


def test_keys_refuse_what_json_cannot_say():
    with pytest.raises(TypeError):
        cache_key({**BASE, "x": object()})


@pytest.mark.parametrize(
    "request_, expected",
    [
        ({"temperature": 0}, True),
        ({"temperature": 0.7}, False),
        ({"temperature": 0.7, "seed": 1}, True),
        ({}, False),  # the provider's default temperature is 1
        ({"temperature": 0, "stream": True}, False),
    ],
)
def test_cacheable_policy(request_, expected):
    decision, reason = cacheable({**BASE, **request_} if request_ else {"model": "m"})
    assert decision is expected and reason
    if not expected and "stream" not in request_:
        assert cacheable({"model": "m", **request_}, allow_sampled=True)[0]


def answer(finish="stop", cost=0.001):
    return {"choices": [{"message": {"role": "assistant", "content": "hi"}, "finish_reason": finish}], "cost_usd": cost}


@pytest.mark.parametrize(
    "value, ok",
    [
        (answer(), True),
        (answer("length"), True),
        (answer("content_filter"), False),
        (answer(None), False),
        ({"error": {"message": "overloaded"}}, False),
        ({"choices": []}, False),
        ({"id": "x"}, False),
    ],
)
def test_only_complete_answers_are_storable(value, ok):
    assert storable(value) is ok


def test_memory_cache_lru_ttl_and_counters():
    clock = VirtualClock(1000)
    cache = MemoryCache(max_entries=2, ttl_s=60, clock=clock)
    cache.put("a", answer(cost=0.5))
    cache.put("b", answer(cost=0.25))
    assert cache.get("a")["cost_usd"] == 0.5  # a is now the most recent
    cache.put("c", answer())  # evicts b, the least recently used
    assert cache.get("b") is None and len(cache) == 2
    clock.now += 61
    assert cache.get("a") is None  # expired: a miss...
    assert cache.get_stale("a")["cost_usd"] == 0.5  # ...but still there for a stale answer
    assert stale_answer(cache, "a") is not None
    assert cache.stats() == {"hits": 1, "misses": 2, "hit_rate": 1 / 3, "saved_usd": 0.5, "entries": 2}


def test_memory_cache_is_thread_safe():
    cache = MemoryCache(max_entries=100)

    def work(i):
        for j in range(200):
            cache.put(f"{i}-{j % 50}", answer())
            cache.get(f"{(i + 1) % 8}-{j % 50}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(cache) == 100 and cache.hits + cache.misses == 1600


def test_sqlite_cache_persists_expires_and_stores_json(tmp_path):
    clock = VirtualClock(1000)
    path = tmp_path / "c.sqlite"
    SQLiteCache(path, ttl_s=10, clock=clock).put("k", answer())
    again = SQLiteCache(path, ttl_s=10, clock=clock)
    assert again.get("k") == answer() and len(again) == 1
    clock.now += 11
    assert again.get("k") is None and again.get_stale("k") == answer()
    assert b"pickle" not in path.read_bytes() and b'"finish_reason"' in path.read_bytes()


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_file_is_a_warning_and_a_fresh_cache(tmp_path, caplog, damage):
    path = tmp_path / "c.sqlite"
    cache = SQLiteCache(path)
    for i in range(200):
        cache.put(f"k{i}", answer())
    data = path.read_bytes()
    path.write_bytes(
        bytes(random.Random(0).randrange(256) for _ in range(4096)) if damage == "garbage" else data[: len(data) // 3]
    )
    with caplog.at_level(logging.WARNING, logger="week04_lib.cache"):
        fresh = SQLiteCache(path)
        fresh.get("k1")
        fresh.put("new", answer())
    assert fresh.get("new") == answer()
    assert any("unreadable" in r.getMessage() for r in caplog.records)
    assert list(tmp_path.glob("c.sqlite.corrupt-*"))


def test_a_damaged_value_is_a_miss(tmp_path):
    import sqlite3

    path = tmp_path / "c.sqlite"
    cache = SQLiteCache(path)
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO cache VALUES ('k', '{not json', 0)")
    assert cache.get("k") is None and len(cache) == 0


WRITER = textwrap.dedent("""
    import sys
    from week04_lib.cache import SQLiteCache
    cache = SQLiteCache(sys.argv[1])
    me = sys.argv[2]
    for i in range(80):
        cache.put(f"{me}-{i}", {"choices": [{"message": {"content": me}, "finish_reason": "stop"}]})
        cache.get(f"shared-{i % 10}")
        cache.put(f"shared-{i % 10}", {"writer": me})
""")


def test_four_processes_write_at_once(tmp_path):
    path = tmp_path / "c.sqlite"
    SQLiteCache(path)
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), f"p{n}"]) for n in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    cache = SQLiteCache(path)
    assert len(cache) == 4 * 80 + 10
    assert cache.get("p3-79")["choices"][0]["message"]["content"] == "p3"
    assert cache.get("shared-0")["writer"] in {"p0", "p1", "p2", "p3"}


def test_open_cache_specs(tmp_path):
    assert open_cache(None) is None
    assert isinstance(open_cache("memory", ttl_s=5), MemoryCache)
    assert isinstance(open_cache(f"sqlite:{tmp_path}/x.sqlite"), SQLiteCache)
    with pytest.raises(ValueError):
        open_cache("redis://x")
    with pytest.raises(ValueError):
        MemoryCache(ttl_s=0)


def test_values_round_trip_as_json_only():
    cache = MemoryCache()
    with pytest.raises(TypeError):
        cache.put("k", {"x": object()})
    cache.put("k", {"x": [1, 2.5, "s", None, True]})
    assert json.dumps(cache.get("k")) == '{"x": [1, 2.5, "s", null, true]}'
