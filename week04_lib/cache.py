"""Response caching: a key over everything that changes the answer, a policy for what
may be stored, and two stores (in memory, and a SQLite file).

Taught in notebook 04, sections 4.2 to 4.4. The course's pitfalls, each handled here:

- forgetting the system prompt in the key -> the key covers the *whole* request: every
  message, every parameter, the endpoint and the model; a parameter this code has never
  heard of is part of the key too (safe by default);
- caching when temperature > 0 -> not cached unless a seed is set or the caller opts in;
- caching errors -> only complete, successful answers are ever stored.

Values are JSON (never pickle). Counters: hits, misses, the cost the hits saved, and
errors (a store that could not do its job: the call went on without it). The Redis store,
shared by processes and machines, is ``shared.cache.RedisCache``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import sqlite3
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .config import check_file_path, is_redis_url
from .errors import InvalidRequest

__all__ = ["CacheWarning", "MemoryCache", "SQLiteCache", "cache_key", "cacheable", "open_cache", "storable"]

log = logging.getLogger("week04_lib.cache")

COMPLETE = ("stop", "length", "tool_calls", "function_call")  # finish reasons of a whole answer
DEFAULT_WAIT_S = 1.0  # longest wait for another process's lock when the caller names no deadline


class CacheWarning(RuntimeWarning):
    """The cache could not do its job (locked, read-only, full, I/O error); the call went on
    without it. Issued once per cache object and kind of problem."""


def _canonical(value: Any) -> Any:
    """Numbers that are equal compare equal (0 == 0.0 == -0.0); dict order is sorted later."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            return repr(value)
        return int(value) if float(value).is_integer() else float(value)
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    raise TypeError(f"cannot build a cache key from a {type(value).__name__}: {value!r}")


def cache_key(request: Mapping[str, Any], endpoint: str = "") -> str:
    """SHA-256 of the canonical JSON of the endpoint and the whole request (model,
    messages including the system prompt, and every parameter)."""
    canonical = json.dumps(
        {"endpoint": endpoint.rstrip("/"), "request": _canonical(request)},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def cacheable(request: Mapping[str, Any], *, allow_sampled: bool = False) -> tuple[bool, str]:
    """May the answer to this request be cached? ``(decision, reason)``."""
    temperature = request.get("temperature", 1.0)  # OpenAI's default temperature is 1
    sampled = isinstance(temperature, (int, float)) and temperature > 0 and request.get("seed") is None
    if sampled and not allow_sampled:
        return False, f"temperature {temperature:g} without a seed samples a new answer each time"
    if request.get("stream"):
        return False, "streamed answers are not cached"
    return True, "deterministic request"


def storable(answer: Mapping[str, Any]) -> bool:
    """Only a complete, successful chat completion: choices present, a finish reason that
    means the answer is whole (not cut off by a dropped connection or a filter)."""
    choices = answer.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return False
    return choices[0].get("finish_reason") in COMPLETE and isinstance(choices[0].get("message"), dict)


class _Counted:
    """Hit, miss, saved-cost and error counters, and the TTL rule, shared by every store.

    ``wait_s`` on every operation: the longest it may wait for another process's lock (the
    client passes the time left before the call's deadline; 0 or less: no wait at all). A
    store never waits longer than its own ``wait_s`` either, which is what None means.
    """

    def __init__(self, ttl_s: float | None, clock: Callable[[], float]) -> None:
        if ttl_s is not None and ttl_s <= 0:
            raise ValueError(f"ttl_s must be positive or None, got {ttl_s}")
        self.ttl_s, self.clock = ttl_s, clock
        self.hits = self.misses = self.errors = 0
        self.saved_usd = 0.0
        self._counter_lock = threading.Lock()

    def _fresh(self, stored_at: float) -> bool:
        return self.ttl_s is None or self.clock() - stored_at < self.ttl_s

    def get(self, key: str, *, wait_s: float | None = None) -> dict[str, Any] | None:
        """A fresh entry, or None. Counts a hit or a miss."""
        found = self._read(key, wait_s)
        value = found[0] if found and self._fresh(found[1]) else None
        with self._counter_lock:
            if value is None:
                self.misses += 1
            else:
                self.hits += 1
                self.saved_usd += float(value.get("cost_usd") or 0.0)
        return value

    def holds(self, key: str, *, wait_s: float | None = None) -> bool:
        """Is a fresh entry there? Counts nothing (a second look within one lookup)."""
        found = self._read(key, wait_s)
        return found is not None and self._fresh(found[1])

    def get_stale(self, key: str, *, wait_s: float | None = None) -> dict[str, Any] | None:
        """Any entry, expired or not (for serving a stale answer when all else failed)."""
        found = self._read(key, wait_s)
        return found[0] if found else None

    def put(self, key: str, value: Mapping[str, Any], *, wait_s: float | None = None) -> None:
        self._write(key, json.dumps(value), self.clock(), wait_s)

    def close(self) -> None:
        """Let go of any connection (a local store holds none between operations)."""

    def stats(self) -> dict[str, Any]:
        lookups = self.hits + self.misses
        return {
            "hits": self.hits,
            "misses": self.misses,
            "hit_rate": self.hits / lookups if lookups else 0.0,
            "saved_usd": round(self.saved_usd, 8),
            "entries": len(self),
        }

    def _read(self, key: str, wait_s: float | None) -> tuple[dict[str, Any], float] | None:
        raise NotImplementedError

    def _write(self, key: str, value: str, stored_at: float, wait_s: float | None) -> None:
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError


class MemoryCache(_Counted):
    """In-process LRU with an optional TTL. Thread-safe. It never waits or fails, so it
    accepts ``wait_s`` (to be called like the SQLite store) and ignores it."""

    def __init__(self, max_entries: int = 1024, ttl_s: float | None = None, clock: Callable[[], float] = time.time):
        super().__init__(ttl_s, clock)
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MemoryCache(entries={len(self)}, max_entries={self.max_entries}, ttl_s={self.ttl_s})"

    def _read(self, key: str, wait_s: float | None) -> tuple[dict[str, Any], float] | None:
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None
            self._entries.move_to_end(key)
        return json.loads(found[0]), found[1]

    def _write(self, key: str, value: str, stored_at: float, wait_s: float | None) -> None:
        with self._lock:
            self._entries[key] = (value, stored_at)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class _NotACache(Exception):
    """A SQLite file whose ``cache`` table is not ours (another program's, or another shape)."""


# (SQLite's primary result code, the words of its message for Python 3.10, which has no
# codes, what the warning says). Only "damaged" ever moves a file aside.
_LOCKED = "locked by another connection for longer than the call could wait"
_PROBLEMS = [(11, "malformed", "damaged"), (26, "not a database", "damaged"), (5, "locked", _LOCKED)]
_PROBLEMS += [(6, "locked", _LOCKED), (8, "readonly", "read-only"), (3, "access permission", "read-only")]
_PROBLEMS += [(13, "is full", "on a full disk"), (10, "I/O error", "failing with disk I/O errors")]
_PROBLEMS += [(14, "unable to open", "impossible to open")]


def _problem(exc: Exception) -> str:
    if isinstance(exc, _NotACache):
        return "damaged"
    code = getattr(exc, "sqlite_errorcode", None)
    for number, words, problem in _PROBLEMS:
        if (code & 0xFF == number) if code is not None else words in str(exc):
            return problem
    return "unusable"


class SQLiteCache(_Counted):
    """A cache file shared by threads and processes (SQLite in WAL mode, JSON values).

    Never the reason a call fails: an operation that cannot be done (the file locked for
    longer than ``wait_s``, read-only, a full disk, an I/O error) is a miss or a skipped store,
    with one ``CacheWarning`` per kind of problem and a count in ``errors``. A file that is
    not a cache (garbage, truncated, another table shape) is moved aside with a logged
    warning and a fresh cache starts. A path that is a directory, or in a folder that does
    not exist, is an ``InvalidRequest`` at construction.
    """

    def __init__(
        self,
        path: str | Path,
        ttl_s: float | None = None,
        clock: Callable[[], float] = time.time,
        *,
        wait_s: float = DEFAULT_WAIT_S,
    ) -> None:
        super().__init__(ttl_s, clock)
        if not (isinstance(wait_s, (int, float)) and 0 <= wait_s < math.inf):
            raise InvalidRequest(f"wait_s must be a number of seconds >= 0, got {wait_s!r}")
        self.path, self.wait_s = check_file_path(path, "cache path"), float(wait_s)
        self._ready = False  # the table checked (or created) by this object
        self._warned: set[str] = set()
        self._run(lambda q: None, None, None)  # set up now; a problem here is a warning too

    def __repr__(self) -> str:
        return f"SQLiteCache({str(self.path)!r}, ttl_s={self.ttl_s})"

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "errors": self.errors}

    def _run(self, action: Callable[[Callable[..., sqlite3.Cursor]], Any], wait_s: float | None, failed: Any) -> Any:
        """``action(q)`` on a fresh connection, every statement ``q(sql, params)`` waiting for
        locks only until ``wait_s`` (in all) has passed. Returns ``failed`` if it cannot be done."""
        wait = self.wait_s if wait_s is None else (min(wait_s, self.wait_s) if wait_s > 0 else 0.0)  # NaN: 0
        deadline = time.monotonic() + wait  # real time: SQLite's busy wait is real, not the TTL clock

        for attempt in (1, 2):
            db = None
            try:
                db = sqlite3.connect(self.path, timeout=0, isolation_level=None)  # each statement commits

                def q(sql: str, params: tuple[Any, ...] = (), db: sqlite3.Connection = db) -> sqlite3.Cursor:
                    left_ms = int(max(0.0, deadline - time.monotonic()) * 1000)
                    db.execute(f"PRAGMA busy_timeout = {left_ms}")
                    return db.execute(sql, params)

                if not self._ready:
                    self._setup(q)
                return action(q)
            except (sqlite3.Error, _NotACache) as exc:
                problem = _problem(exc)
                if problem in ("damaged", "unusable"):  # e.g. the table gone: check it again next time
                    self._ready = False
                # Only a file that is really not a cache is moved aside. A lock means another
                # process is using a healthy file right now; an I/O error, a read-only file or a
                # full disk say nothing about its contents. Renaming a shared file under other
                # processes' open connections splits them from everyone who opens the path
                # afterwards (and its -wal/-shm from their data): the entries are lost to all.
                if problem != "damaged":
                    self._give_up(problem, exc)
                elif attempt == 2:
                    self._give_up("still not a cache after starting fresh", exc)
                elif self._move_aside(exc):
                    continue
                return failed
            finally:
                if db is not None:
                    db.close()

    def _setup(self, q: Callable[..., sqlite3.Cursor]) -> None:
        q("PRAGMA journal_mode=WAL")
        q("CREATE TABLE IF NOT EXISTS cache (key TEXT PRIMARY KEY, value TEXT NOT NULL, stored_at REAL)")
        columns = {row[1] for row in q("PRAGMA table_info(cache)")}
        if not {"key", "value", "stored_at"} <= columns:
            raise _NotACache(f"its cache table has the columns {sorted(columns)}")
        q("SELECT COUNT(*) FROM cache").fetchone()  # reads a page: finds most corruption now
        self._ready = True

    def _move_aside(self, exc: Exception) -> bool:
        aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}-{os.getpid()}")
        try:
            for suffix in ("", "-wal", "-shm"):
                source = Path(f"{self.path}{suffix}")
                if source.is_file():  # never a directory
                    source.replace(f"{aside}{suffix}")
        except OSError as move_error:
            self._give_up("not a cache, and it cannot be moved aside", move_error)
            return False
        log.warning("cache file %s is unreadable (%s); moved to %s, starting an empty cache", self.path, exc, aside)
        return True

    def _give_up(self, problem: str, exc: Exception) -> None:
        with self._counter_lock:
            self.errors += 1
            first = problem not in self._warned
            self._warned.add(problem)
        if first:
            message = f"cache file {self.path} is {problem} ({exc}); the call goes on without the cache"
            warnings.warn(message, CacheWarning, stacklevel=5)  # 5: the caller of get/put

    def _read(self, key: str, wait_s: float | None) -> tuple[dict[str, Any], float] | None:
        def read(q: Callable[..., sqlite3.Cursor]) -> tuple[dict[str, Any], float] | None:
            row = q("SELECT value, stored_at FROM cache WHERE key = ?", (key,)).fetchone()
            if row is None:
                return None
            with contextlib.suppress(ValueError, TypeError):
                if isinstance(value := json.loads(row[0]), dict):
                    return value, float(row[1])
            q("DELETE FROM cache WHERE key = ?", (key,))  # a damaged entry is a miss, and goes
            return None

        return self._run(read, wait_s, None)

    def _write(self, key: str, value: str, stored_at: float, wait_s: float | None) -> None:
        sql = "INSERT OR REPLACE INTO cache (key, value, stored_at) VALUES (?, ?, ?)"
        self._run(lambda q: q(sql, (key, value, stored_at)), wait_s, None)

    def __len__(self) -> int:
        return self._run(lambda q: q("SELECT COUNT(*) FROM cache").fetchone()[0], None, 0)


def open_cache(
    spec: str | None, ttl_s: float | None = None, namespace: str = "", shared: Any = None
) -> _Counted | None:
    """``None``, ``"memory"``, ``"sqlite:PATH"`` or a Redis URL (ClientConfig.cache) to a
    store; a Redis store keeps its entries under ``namespace`` (shared.namespace_of), on
    the client's own ``SharedState`` when given (one verdict on whether Redis is up)."""
    if spec is None:
        return None
    if spec == "memory":
        return MemoryCache(ttl_s=ttl_s)
    if spec.startswith("sqlite:") and spec[len("sqlite:") :]:
        return SQLiteCache(spec[len("sqlite:") :], ttl_s=ttl_s)
    if is_redis_url(spec):
        from .shared.cache import RedisCache  # needs the redis package, only when asked for

        return RedisCache(spec, namespace, ttl_s=ttl_s, shared=shared)
    raise InvalidRequest(f"cache must be None, 'memory', 'sqlite:PATH' or a Redis URL, got {spec!r}")
