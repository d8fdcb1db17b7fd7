"""Response caching: a key over everything that changes the answer, a policy for what
may be stored, and two stores (in memory, and a SQLite file).

Taught in notebook 04, sections 4.1 to 4.3. The course's pitfalls, each handled here:

- forgetting the system prompt in the key -> the key covers the *whole* request: every
  message, every parameter, the endpoint and the model; a parameter this code has never
  heard of is part of the key too (safe by default);
- caching when temperature > 0 -> not cached unless a seed is set or the caller opts in;
- caching errors -> only complete, successful answers are ever stored.

Values are JSON (never pickle). Counters: hits, misses, and the cost the hits saved.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["MemoryCache", "SQLiteCache", "cache_key", "cacheable", "open_cache", "storable"]

log = logging.getLogger("week04_lib.cache")

COMPLETE = ("stop", "length", "tool_calls", "function_call")  # finish reasons of a whole answer


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
    """Hit, miss and saved-cost counters, and the TTL rule, shared by both stores."""

    def __init__(self, ttl_s: float | None, clock: Callable[[], float]) -> None:
        if ttl_s is not None and ttl_s <= 0:
            raise ValueError(f"ttl_s must be positive or None, got {ttl_s}")
        self.ttl_s, self.clock = ttl_s, clock
        self.hits = self.misses = 0
        self.saved_usd = 0.0
        self._counter_lock = threading.Lock()

    def _fresh(self, stored_at: float) -> bool:
        return self.ttl_s is None or self.clock() - stored_at < self.ttl_s

    def get(self, key: str) -> dict[str, Any] | None:
        """A fresh entry, or None. Counts a hit or a miss."""
        found = self._read(key)
        value = found[0] if found and self._fresh(found[1]) else None
        with self._counter_lock:
            if value is None:
                self.misses += 1
            else:
                self.hits += 1
                self.saved_usd += float(value.get("cost_usd") or 0.0)
        return value

    def get_stale(self, key: str) -> dict[str, Any] | None:
        """Any entry, expired or not (for serving a stale answer when all else failed)."""
        found = self._read(key)
        return found[0] if found else None

    def put(self, key: str, value: Mapping[str, Any]) -> None:
        self._write(key, json.dumps(value), self.clock())

    def stats(self) -> dict[str, Any]:
        lookups = self.hits + self.misses
        return {
            "hits": self.hits,
            "misses": self.misses,
            "hit_rate": self.hits / lookups if lookups else 0.0,
            "saved_usd": round(self.saved_usd, 8),
            "entries": len(self),
        }

    def _read(self, key: str) -> tuple[dict[str, Any], float] | None:
        raise NotImplementedError

    def _write(self, key: str, value: str, stored_at: float) -> None:
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError


class MemoryCache(_Counted):
    """In-process LRU with an optional TTL. Thread-safe."""

    def __init__(self, max_entries: int = 1024, ttl_s: float | None = None, clock: Callable[[], float] = time.time):
        super().__init__(ttl_s, clock)
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MemoryCache(entries={len(self)}, max_entries={self.max_entries}, ttl_s={self.ttl_s})"

    def _read(self, key: str) -> tuple[dict[str, Any], float] | None:
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None
            self._entries.move_to_end(key)
        return json.loads(found[0]), found[1]

    def _write(self, key: str, value: str, stored_at: float) -> None:
        with self._lock:
            self._entries[key] = (value, stored_at)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class SQLiteCache(_Counted):
    """A cache file shared by threads and processes (SQLite in WAL mode, JSON values).

    A corrupt or truncated file is moved aside with a warning and a fresh cache starts;
    a cache must never be the reason a call fails.
    """

    def __init__(self, path: str | Path, ttl_s: float | None = None, clock: Callable[[], float] = time.time):
        super().__init__(ttl_s, clock)
        self.path = Path(path)
        try:
            self._create()
        except sqlite3.DatabaseError as exc:
            self._start_fresh(exc)

    def __repr__(self) -> str:
        return f"SQLiteCache({str(self.path)!r}, ttl_s={self.ttl_s})"

    def _create(self) -> None:
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS cache (key TEXT PRIMARY KEY, value TEXT NOT NULL, stored_at REAL)")
            db.execute("SELECT COUNT(*) FROM cache").fetchone()  # reads a page: finds most corruption now

    def _start_fresh(self, exc: Exception) -> None:
        aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}-{os.getpid()}")
        log.warning("cache file %s is unreadable (%s); moved to %s, starting an empty cache", self.path, exc, aside)
        for suffix in ("", "-wal", "-shm"):
            source = Path(f"{self.path}{suffix}")
            if source.exists():
                source.replace(f"{aside}{suffix}")
        self._create()

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            with db:
                yield db
        finally:
            db.close()

    def _guarded(self, action: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run ``action`` on the file; if the file went bad meanwhile, start fresh once."""
        try:
            with self._connect() as db:
                return action(db)
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                raise
            self._start_fresh(exc)
            with self._connect() as db:
                return action(db)

    def _read(self, key: str) -> tuple[dict[str, Any], float] | None:
        row = self._guarded(
            lambda db: db.execute("SELECT value, stored_at FROM cache WHERE key = ?", (key,)).fetchone()
        )
        if row is None:
            return None
        try:
            return json.loads(row[0]), row[1]
        except ValueError:  # a damaged value is a miss, and goes
            self._guarded(lambda db: db.execute("DELETE FROM cache WHERE key = ?", (key,)))
            return None

    def _write(self, key: str, value: str, stored_at: float) -> None:
        self._guarded(
            lambda db: db.execute(
                "INSERT OR REPLACE INTO cache (key, value, stored_at) VALUES (?, ?, ?)", (key, value, stored_at)
            )
        )

    def __len__(self) -> int:
        return self._guarded(lambda db: db.execute("SELECT COUNT(*) FROM cache").fetchone()[0])


def open_cache(spec: str | None, ttl_s: float | None = None) -> MemoryCache | SQLiteCache | None:
    """``None``, ``"memory"`` or ``"sqlite:PATH"`` (ClientConfig.cache) to a store."""
    if spec is None:
        return None
    if spec == "memory":
        return MemoryCache(ttl_s=ttl_s)
    if spec.startswith("sqlite:") and spec[len("sqlite:") :]:
        return SQLiteCache(spec[len("sqlite:") :], ttl_s=ttl_s)
    raise ValueError(f"cache must be None, 'memory' or 'sqlite:PATH', got {spec!r}")
