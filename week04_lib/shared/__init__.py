"""State shared by processes and machines, on Redis: one rate budget, one breaker state,
one cache, one request for identical calls in flight.

Shown in notebook 03, section 3.8. ``ClientConfig(shared="redis://host:6379/0")`` (or
``WEEK04_SHARED``) gives every client that names the same Redis, base URL and API key
the same state; without it, all state stays in the process.

Redis is a helper, never the reason a call fails: while it cannot be reached, every
operation answers from local state instead (one ``SharedStateWarning`` the first time,
a ``shared_down`` log record at each outage, a ``shared_back`` record when it answers
again), and no wait on it lasts longer than ``timeout_s``.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from ..config import redact_url
from ..errors import InvalidRequest, redact

__all__ = ["SharedState", "SharedStateWarning", "namespace_of"]

log = logging.getLogger("week04_lib.shared")
T = TypeVar("T")

# Compare-and-delete: release a lock only if it is still ours (its lease may have passed).
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class SharedStateWarning(RuntimeWarning):
    """Redis could not be reached: the calls go on with this process's own state."""


def namespace_of(base_url: str, api_key: str | None) -> str:
    """Keys of one provider account: a hash of the base URL and the API key (never the
    key itself), so two keys never share a budget and Redis never holds a key."""
    return hashlib.sha256(f"{base_url}\n{api_key or ''}".encode()).hexdigest()[:16]


def _connect(url: str, timeout_s: float) -> tuple[Any, tuple[type[Exception], ...]]:
    """A client and the errors that mean "Redis cannot do it now" (down, loading, full)."""
    try:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry
    except ImportError:
        raise InvalidRequest(
            "shared state needs the redis package: pip install 'week04_lib[shared]' (or pip install redis)"
        ) from None
    try:
        client = redis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),  # a call's deadline, not redis-py, decides about waiting
            decode_responses=True,
        )
    except ValueError as exc:
        raise InvalidRequest(f"{redact_url(url)} is not a Redis URL: {exc}") from None
    return client, (redis.RedisError, OSError)


class SharedState:
    """One Redis connection pool under the namespace ``week04:<namespace>:``, with the
    fallback rule: ``run(op, fallback)`` is ``op(redis)``, or ``fallback`` while Redis is
    unreachable (then tried again every ``retry_s``). Thread-safe."""

    def __init__(
        self,
        url: str,
        namespace: str,
        *,
        timeout_s: float = 0.25,
        retry_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url, self.namespace = redact_url(url), namespace
        self._password = urlsplit(url).password  # scrubbed from every message
        self.timeout_s, self.retry_s, self.clock = timeout_s, retry_s, clock
        self.redis, self._unavailable = _connect(url, timeout_s)
        self.failures = 0  # operations that fell back to local state
        self._down_until: float | None = None  # None: up; else when to try Redis again
        self._outages = 0  # how many times it went down
        self._warned = False
        self._scripts: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SharedState({self.url!r}, namespace={self.namespace!r}, up={self.up})"

    def close(self) -> None:
        """Close the connections (a later operation opens new ones)."""
        self.redis.close()

    @property
    def up(self) -> bool:
        return self._down_until is None

    def key(self, *parts: str) -> str:
        return ":".join(("week04", self.namespace, *parts))

    def script(self, source: str) -> Any:
        """A Lua script run atomically by Redis (sent once, then called by its hash)."""
        with self._lock:
            if source not in self._scripts:
                self._scripts[source] = self.redis.register_script(source)
            return self._scripts[source]

    def call(self, source: str, keys: list[str], args: list[Any], fallback: T) -> Any | T:
        """Run the Lua script ``source``, or ``fallback`` while Redis is down."""
        return self.run(lambda r: self.script(source)(keys=keys, args=args), fallback)

    def release(self, key: str, token: str) -> None:
        """Delete ``key`` if it still holds ``token`` (a lock this process took)."""
        self.call(RELEASE, [key], [token], None)

    def run(self, op: Callable[[Any], T], fallback: T) -> T:
        """``op(redis)``; ``fallback`` if Redis fails it, or failed within ``retry_s``."""
        with self._lock:
            if self._down_until is not None and self.clock() < self._down_until:
                self.failures += 1
                return fallback
            outages = self._outages
        try:
            result = op(self.redis)
        except self._unavailable as exc:
            self._went_down(exc)
            return fallback
        self._came_back(outages)
        return result

    def _went_down(self, exc: Exception) -> None:
        with self._lock:
            self.failures += 1
            first_outage = self._down_until is None
            self._outages += first_outage
            self._down_until = self.clock() + self.retry_s
            warn, self._warned = not self._warned, True
        detail = redact(f"{type(exc).__name__}: {exc}", [self._password])
        if warn:
            warnings.warn(
                f"Redis at {self.url} cannot be reached ({detail}); going on with this process's own state",
                SharedStateWarning,
                stacklevel=4,
            )
        if first_outage:
            log.warning("shared state down: %s (%s)", self.url, detail, extra={"event": "shared_down"})

    def _came_back(self, outages: int) -> None:
        """An operation that began after the latest outage did: Redis is back. (One that
        began before it and ended well says nothing: the outage came in between.)"""
        if self._down_until is None:  # the usual case: no lock taken
            return
        with self._lock:
            if self._down_until is None or outages != self._outages:
                return
            self._down_until = None
        log.info("shared state back: %s", self.url, extra={"event": "shared_back"})
