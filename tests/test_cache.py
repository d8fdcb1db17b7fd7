"""Cache keys, the caching policy, and both stores (threads, processes, damaged files)."""

import contextlib
import json
import logging
import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import pytest
from hypothesis import given
from hypothesis import strategies as st

from week04_lib.cache import (
    CacheWarning,
    MemoryCache,
    SQLiteCache,
    cache_key,
    cacheable,
    open_cache,
    storable,
)
from week04_lib.degrade import stale_answer
from week04_lib.errors import InvalidRequest
from week04_lib.virtual_time import VirtualClock

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


@pytest.mark.parametrize("value, stored_at", [("{not json", 0), ("[1, 2]", 0), ('"text"', 0), ("{}", None)])
def test_a_damaged_value_is_a_miss(tmp_path, value, stored_at):
    path = tmp_path / "c.sqlite"
    cache = SQLiteCache(path)
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("INSERT INTO cache VALUES ('k', ?, ?)", (value, stored_at))
    assert cache.get("k") is None and cache.get_stale("k") is None and len(cache) == 0


WRITER = textwrap.dedent("""
    import sys
    from week04_lib.cache import SQLiteCache
    cache = SQLiteCache(sys.argv[1], wait_s=30)  # correctness under contention; wait_s is tested below
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
    assert type(open_cache("redis://127.0.0.1:1/0")).__name__ == "RedisCache"  # connects on first use
    with pytest.raises(ValueError, match="Redis URL"):
        open_cache("mongodb://x")
    with pytest.raises(ValueError):
        MemoryCache(ttl_s=0)


def test_values_round_trip_as_json_only():
    cache = MemoryCache()
    with pytest.raises(TypeError):
        cache.put("k", {"x": object()})
    cache.put("k", {"x": [1, 2.5, "s", None, True]})
    assert json.dumps(cache.get("k")) == '{"x": [1, 2.5, "s", null, true]}'


def test_a_cache_table_of_another_shape_is_moved_aside(tmp_path, caplog):
    path = tmp_path / "c.sqlite"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE cache (id INTEGER, blob BLOB)")
        db.commit()
    with caplog.at_level(logging.WARNING, logger="week04_lib.cache"):
        cache = SQLiteCache(path)
        cache.put("k", answer())
    assert cache.get("k") == answer() and cache.errors == 0
    assert any("unreadable" in r.getMessage() for r in caplog.records)
    assert list(tmp_path.glob("c.sqlite.corrupt-*"))


# --- a cache that cannot do its job never fails the call, and never waits past wait_s ---


@contextlib.contextmanager
def cache_warnings():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


def only_warning(caught, words):
    """Exactly one warning was issued, a CacheWarning that says ``words`` and that the call goes on."""
    assert [w.category for w in caught] == [CacheWarning], [str(w.message) for w in caught]
    assert words in str(caught[0].message) and "without the cache" in str(caught[0].message)


def timed(action, *args, **kwargs):
    start = time.monotonic()
    result = action(*args, **kwargs)
    return result, time.monotonic() - start


def moved_aside(folder):
    return list(folder.glob("*.corrupt-*"))


@pytest.mark.parametrize("store", ["memory", "sqlite"])
def test_both_stores_take_wait_s(tmp_path, store):
    cache = MemoryCache() if store == "memory" else SQLiteCache(tmp_path / "c.sqlite", wait_s=0.5)
    for wait_s in (None, 0, 0.2, -1.0, float("nan"), float("inf")):  # the time left may be gone already
        cache.put("k", answer(), wait_s=wait_s)
        assert cache.get("k", wait_s=wait_s) == answer() and cache.get_stale("k", wait_s=wait_s) == answer()
    assert cache.errors == 0
    with pytest.raises(InvalidRequest, match="wait_s"):
        SQLiteCache(tmp_path / "c.sqlite", wait_s=-1)


# Another process holds a lock on the file until told to let go (its stdin closed) or hold_s
# has passed: "writer" as any writer does (BEGIN EXCLUSIVE: in WAL mode readers still read),
# "readers too" as a connection in exclusive locking mode does (nobody else may even read).
LOCKER = textwrap.dedent("""
    import select, sqlite3, sys, time
    db = sqlite3.connect(sys.argv[1], isolation_level=None)
    if sys.argv[2] == "readers too":
        db.execute("PRAGMA locking_mode=EXCLUSIVE")
    db.execute("BEGIN EXCLUSIVE")
    print("locked", flush=True)
    select.select([sys.stdin], [], [], float(sys.argv[3]))
    db.execute("COMMIT")
""")


@contextlib.contextmanager
def locked(path, how, hold_s):
    command = [sys.executable, "-c", LOCKER, str(path), how, str(hold_s)]
    locker = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert locker.stdout.readline().strip() == "locked"
        yield locker
    finally:
        locker.stdin.close()  # let go
        assert locker.wait(timeout=30) == 0
        locker.stdout.close()


def test_a_write_lock_held_by_another_process_skips_the_store_in_time(tmp_path):
    path = tmp_path / "c.sqlite"
    cache = SQLiteCache(path)
    cache.put("old", answer())
    with locked(path, "writer", hold_s=10) as locker, cache_warnings() as caught:
        skipped = [timed(cache.put, f"new{i}", answer(), wait_s=0.2)[1] for i in range(2)]
        hit, read = timed(cache.get, "old", wait_s=0.2)  # WAL: a writer elsewhere does not stop readers
        _, by_default = timed(cache.put, "new", answer())  # no wait_s: the store's own (1 s), not 30
        _, capped = timed(cache.put, "new", answer(), wait_s=30)  # never longer than the store's own either
        still_locked = locker.poll() is None
    assert max(skipped) < 0.6 and read < 0.6, (skipped, read)
    assert 0.5 < by_default < 1.8 and 0.5 < capped < 1.8, (by_default, capped)
    assert still_locked and hit == answer()
    only_warning(caught, "locked")
    assert cache.errors == 4 and cache.stats()["errors"] == 4
    cache.put("new", answer())  # the lock is gone: stores work again
    assert cache.get("new") == answer() and cache.get("new0") is None and not moved_aside(tmp_path)


def test_a_file_locked_against_readers_is_a_quick_miss(tmp_path):
    path = tmp_path / "c.sqlite"
    cache = SQLiteCache(path)
    cache.put("old", answer())
    with locked(path, "readers too", hold_s=10) as locker, cache_warnings() as caught:
        got, first = timed(cache.get, "old", wait_s=0.2)
        stale, second = timed(cache.get_stale, "old", wait_s=0.2)
        _, third = timed(cache.put, "new", answer(), wait_s=0.2)
        _, no_wait = timed(cache.get, "old", wait_s=0)
        still_locked = locker.poll() is None
    assert got is None and stale is None and still_locked
    assert max(first, second, third) < 0.6 and no_wait < 0.15, (first, second, third, no_wait)
    only_warning(caught, "locked")
    assert cache.misses == 2 and cache.errors == 4
    assert cache.get("old") == answer()  # released: reads and stores work again
    cache.put("new", answer())
    assert cache.get("new") == answer() and not moved_aside(tmp_path)


@contextlib.contextmanager
def read_only(path):
    """Really read-only. Root ignores permission bits, so as root the immutable attribute
    (chattr +i, which binds root too); fails where neither can be had (no real read-only file)."""
    if getattr(os, "geteuid", lambda: -1)() != 0:
        mode = path.stat().st_mode
        path.chmod(0o555 if path.is_dir() else 0o444)
        undo = [path.chmod, mode]
    elif shutil.which("chattr") and subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0:
        undo = [subprocess.run, ["chattr", "-i", str(path)]]
    else:
        pytest.fail("running as root and chattr +i is not available: no real read-only file")
    try:
        yield
    finally:
        undo[0](undo[1])


def test_a_read_only_file_is_read_and_never_written_or_moved(tmp_path):
    path = tmp_path / "c.sqlite"
    SQLiteCache(path).put("old", answer())
    with read_only(path), cache_warnings() as caught:
        cache = SQLiteCache(path)
        cache.put("new", answer())
        cache.put("newer", answer())
        got = cache.get("old")
    assert got == answer() and cache.get("new") is None and cache.errors == 2
    only_warning(caught, "read-only")
    assert not moved_aside(tmp_path)


def test_a_damaged_file_that_cannot_be_moved_is_a_warning_and_a_miss(tmp_path):
    folder = tmp_path / "shared"
    folder.mkdir()
    path = folder / "c.sqlite"
    path.write_bytes(b"this is not a database. " * 200)
    with read_only(folder), cache_warnings() as caught:
        cache = SQLiteCache(path)
        cache.put("k", answer())
        got = cache.get("k")
    assert got is None and path.read_bytes().startswith(b"this is not a database")
    only_warning(caught, "cannot be moved aside")


# The write fails in the kernel (the process's file-size limit: EFBIG), a real disk I/O error.
IO_ERROR = textwrap.dedent("""
    import json, resource, signal, sys, warnings
    from week04_lib.cache import SQLiteCache
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead of killing
    resource.setrlimit(resource.RLIMIT_FSIZE, (32 * 1024, resource.RLIM_INFINITY))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cache = SQLiteCache(sys.argv[1])
        cache.put("big", {"text": "x" * 200_000})
        cache.put("bigger", {"text": "y" * 300_000})
        old = cache.get("old")
    print(json.dumps({"old": old, "warnings": [str(w.message) for w in caught], "errors": cache.errors}))
""")


@pytest.mark.skipif(sys.platform == "win32", reason="needs RLIMIT_FSIZE")
def test_an_io_error_never_moves_the_shared_file(tmp_path):
    path = tmp_path / "c.sqlite"
    shared = SQLiteCache(path)  # this process keeps using the file meanwhile
    shared.put("old", answer())
    run = subprocess.run([sys.executable, "-c", IO_ERROR, str(path)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout)
    assert seen["old"] == answer() and seen["errors"] == 2
    assert len(seen["warnings"]) == 1 and "I/O error" in seen["warnings"][0], seen["warnings"]
    assert not moved_aside(tmp_path) and shared.get("old") == answer() and shared.get("big") is None
    shared.put("after", answer())
    assert SQLiteCache(path).get("after") == answer()


# A real full disk: a 96 KB filesystem (tmpfs), mounted in a private mount namespace.
FULL_DISK = textwrap.dedent("""
    import json, os, sys, warnings
    from week04_lib.cache import SQLiteCache
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cache = SQLiteCache(os.path.join(sys.argv[1], "c.sqlite"))
        cache.put("small", {"text": "x"})
        cache.put("big", {"text": "x" * 300_000})
        cache.put("bigger", {"text": "y" * 400_000})
        found = [cache.get(k) for k in ("small", "big")]
    files = sorted(os.listdir(sys.argv[1]))
    print(json.dumps({"found": found, "warnings": [str(w.message) for w in caught], "files": files}))
""")


def test_a_full_disk_skips_the_store(tmp_path):
    folder = tmp_path / "small"
    folder.mkdir()
    namespace = ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-r", "-m"]
    script = 'mount -t tmpfs -o size=96k tmpfs "$1" || exit 77; exec "$2" -c "$3" "$1"'
    command = [*namespace, "sh", "-c", script, "sh", str(folder), sys.executable, FULL_DISK]
    run = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if run.returncode == 77 or run.stderr.startswith("unshare:"):
        pytest.fail(f"cannot mount a small filesystem here (unshare, mount): {run.stderr.strip()}")
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout)
    assert seen["found"] == [{"text": "x"}, None]
    assert len(seen["warnings"]) == 1 and "full disk" in seen["warnings"][0], seen["warnings"]
    assert not [name for name in seen["files"] if "corrupt" in name]


@pytest.mark.parametrize("where", ["a directory", "in a missing folder", "in a file"])
def test_a_path_that_cannot_hold_a_cache_is_refused_and_left_alone(tmp_path, where):
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    path = {
        "a directory": folder,
        "in a missing folder": tmp_path / "missing" / "c.sqlite",
        "in a file": folder / "keep.txt" / "c.sqlite",
    }[where]
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(InvalidRequest, match=re.escape(repr(str(path)))):
        SQLiteCache(path)
    with pytest.raises(InvalidRequest):
        open_cache(f"sqlite:{path}")
    assert sorted(tmp_path.rglob("*")) == before and (folder / "keep.txt").read_text() == "mine"
