"""The total deadline of one attempt, from connect to the last byte.

Taught in notebook 01, section 1.4. A per-read socket timeout bounds the wait between
bytes, never the whole exchange: ``http.client`` reads the status line, each header
line, each chunk-size line and each trailer line separately, so a server sending one
line every 0.3 s keeps a 1 s read timeout alive forever. Only something that knows the
deadline can stop it: a ``Watchdog`` timer shuts the attempt's socket down when the
deadline passes, which ends whatever read is blocked, in whatever phase.

(The other design, a socket whose every read is given the time left, needs a wrapper
around each socket ``http.client`` and ``ssl`` touch; the watchdog needs one hook, in
the connection classes below, and holds for every phase alike.)
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

__all__ = ["DeadlineAdapter", "Watchdog"]

_current = threading.local()  # the watchdog of the attempt this thread is making


class Watchdog:
    """``with Watchdog(seconds):`` around one attempt; ``fired`` tells if it cut it."""

    def __init__(self, seconds: float) -> None:
        self.fired = False
        self._lock = threading.Lock()
        self._done = False
        self._connection: Any = None
        self._timer = threading.Timer(max(0.0, seconds), self._fire)
        self._timer.daemon = True

    def __enter__(self) -> Watchdog:
        _current.watchdog = self
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.disarm()

    def disarm(self) -> None:
        """Stop watching (before the connection goes back to the pool). Idempotent."""
        with self._lock:
            self._done = True
        self._timer.cancel()
        self._timer.join()
        _current.watchdog = None

    def watch(self, connection: Any) -> None:
        with self._lock:
            self._connection = connection

    def _fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.fired = True
            sock = getattr(self._connection, "sock", None)
            if isinstance(sock, socket.socket):
                # socket.socket's own shutdown, also for an SSLSocket (whose override
                # would tear down the TLS state under the reading thread's feet)
                with contextlib.suppress(OSError):  # already closed: nothing left to cut
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Watched:
    """Tell this thread's watchdog which connection the attempt is using."""

    def request(self, *args: Any, **kwargs: Any) -> Any:
        watchdog = getattr(_current, "watchdog", None)
        if watchdog is not None:
            watchdog.watch(self)
        return super().request(*args, **kwargs)  # type: ignore[misc]


class _HTTPConnection(_Watched, HTTPConnection):
    pass


class _HTTPSConnection(_Watched, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class DeadlineAdapter(HTTPAdapter):
    """A requests adapter whose connections (direct or through a proxy) report to the
    current thread's watchdog."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = _POOLS
        return manager
