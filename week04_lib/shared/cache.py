"""``cache="redis://..."``: answers stored in Redis, for every process and machine.

The same key, policy and counters as the local stores (``cache.py``); the TTL is Redis's
own expiry, so an expired answer is gone rather than stale (``serve_stale`` finds it only
while it is fresh). While Redis cannot be reached, a lookup is a miss and a store is
skipped, counted in ``errors``: the call goes on without the cache.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

from ..cache import _Counted
from . import SharedState

__all__ = ["RedisCache"]

_UNREACHABLE = object()


class RedisCache(_Counted):
    def __init__(
        self,
        url: str,
        namespace: str,
        ttl_s: float | None = None,
        clock: Callable[[], float] = time.time,
        *,
        shared: SharedState | None = None,
    ) -> None:
        super().__init__(ttl_s, clock)
        self._owns_shared = shared is None
        self.shared = shared or SharedState(url, namespace)
        self._prefix = self.shared.key("cache", "")

    def __repr__(self) -> str:
        return f"RedisCache({self.shared.url!r}, ttl_s={self.ttl_s})"

    def close(self) -> None:
        if self._owns_shared:  # a client's own SharedState is the client's to close
            self.shared.close()

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "errors": self.errors}

    def _read(self, key: str, wait_s: float | None) -> tuple[dict[str, Any], float] | None:
        raw = self._run(lambda r: r.get(self._prefix + key))
        with contextlib.suppress(ValueError, TypeError, KeyError):
            entry = json.loads(raw) if raw is not None else None
            if isinstance(entry, dict) and isinstance(entry["value"], dict):
                return entry["value"], float(entry["stored_at"])
        return None  # absent, or not an entry of ours: a miss

    def _write(self, key: str, value: str, stored_at: float, wait_s: float | None) -> None:
        entry = f'{{"stored_at": {stored_at!r}, "value": {value}}}'
        expiry_ms = None if self.ttl_s is None else max(1, round(self.ttl_s * 1000))
        self._run(lambda r: r.set(self._prefix + key, entry, px=expiry_ms))

    def _run(self, op: Callable[[Any], Any]) -> Any:
        """``op(redis)``; None, counted in ``errors``, while Redis cannot be reached."""
        done = self.shared.run(op, _UNREACHABLE)
        if done is _UNREACHABLE:
            with self._counter_lock:
                self.errors += 1
            return None
        return done

    def __len__(self) -> int:
        return self.shared.run(lambda r: sum(1 for _ in r.scan_iter(match=self._prefix + "*", count=1000)), 0)
