"""The total deadline of one attempt, from connect to the last byte.

Taught in notebook 01, section 1.4. A per-read socket timeout bounds the wait between
bytes, never the whole exchange: ``http.client`` reads the status line, each header
line, each chunk-size line and each trailer line separately, so a server sending one
line every 0.3 s keeps a 1 s read timeout alive forever. Only something that knows the
deadline can stop it: a ``Watchdog`` shuts the attempt's socket down when the
deadline passes, which ends whatever read is blocked, in whatever phase.

(The other design, a socket whose every read is given the time left, needs a wrapper
around each socket ``http.client`` and ``ssl`` touch; the watchdog needs one hook, in
the connection classes below, and holds for every phase alike.)
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

__all__ = ["DeadlineAdapter", "Guard", "Watchdog"]

_current = threading.local()  # the guard of the attempt this thread is making
IDLE_EXIT_S = 5.0  # the watchdog's thread ends after this long with nothing to watch


class Guard:
    """One attempt's deadline: ``with watchdog.guard(seconds) as guard:``; ``fired``
    tells whether the watchdog cut the attempt's socket."""

    def __init__(self, due: float) -> None:
        self.due = due
        self.fired = False
        self.done = False
        self._lock = threading.Lock()
        self._connection: Any = None

    def __enter__(self) -> Guard:
        _current.guard = self
        return self

    @contextlib.contextmanager
    def watching(self) -> Iterator[Guard]:
        """Watch the connection this thread opens in the block, and go on watching it
        after (a stream outlives the call that opened it; ``disarm`` when it ends)."""
        _current.guard = self
        try:
            yield self
        finally:
            _current.guard = None

    def __exit__(self, *exc: object) -> None:
        self.disarm()

    def disarm(self) -> None:
        """Stop watching (before the connection goes back to the pool). Idempotent."""
        with self._lock:
            self.done = True
        _current.guard = None

    def watch(self, connection: Any) -> None:
        with self._lock:
            self._connection = connection

    def fire(self) -> None:
        with self._lock:
            if self.done:
                return
            self.fired = True
            sock = getattr(self._connection, "sock", None)
            if isinstance(sock, socket.socket):
                # socket.socket's own shutdown, also for an SSLSocket (whose override
                # would tear down the TLS state under the reading thread's feet)
                with contextlib.suppress(OSError):  # already closed: nothing left to cut
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)


class Watchdog:
    """One thread (started when needed, gone when idle) fires every guard whose time
    has come. A thread per attempt would cost more than the rest of the attempt."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._wake = threading.Condition()
        self._due: list[tuple[float, int, Guard]] = []  # a heap, earliest first
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def guard(self, seconds: float) -> Guard:
        guard = Guard(self.clock() + max(0.0, seconds))
        with self._wake:
            heapq.heappush(self._due, (guard.due, next(self._order), guard))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="week04-watchdog", daemon=True)
                self._thread.start()
            elif self._due[0][2] is guard:
                self._wake.notify()  # the new guard is the earliest: wake up sooner
        return guard

    def rearm(self, guard: Guard, seconds: float) -> None:
        """Move ``guard``'s deadline to ``seconds`` from now (a stream's idle limit, after
        each chunk). Moving it later costs nothing: the thread looks again when due."""
        due = self.clock() + max(0.0, seconds)
        with self._wake:
            earlier = due < guard.due
            guard.due = due
            if earlier and not guard.done:
                heapq.heappush(self._due, (due, next(self._order), guard))
                if self._due[0][2] is guard:
                    self._wake.notify()

    def close(self) -> None:
        """Stop the thread (a later guard starts it again)."""
        with self._wake:
            thread, self._thread = self._thread, None
            self._due.clear()
            self._wake.notify()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _run(self) -> None:
        me = threading.current_thread()
        with self._wake:
            while self._thread is me:
                now = self.clock()
                while self._due and (self._due[0][2].done or self._due[0][0] <= now):
                    guard = heapq.heappop(self._due)[2]
                    if guard.due > now and not guard.done:  # re-armed later since
                        heapq.heappush(self._due, (guard.due, next(self._order), guard))
                    else:
                        guard.fire()
                if not self._due:
                    if not self._wake.wait(IDLE_EXIT_S) and not self._due:
                        self._thread = None  # idle: let the thread go
                        return
                    continue  # a new guard woke it: look again from the time now, not then
                self._wake.wait(self._due[0][0] - now)


class _Watched:
    """Tell this thread's watchdog which connection the attempt is using."""

    def request(self, *args: Any, **kwargs: Any) -> Any:
        guard = getattr(_current, "guard", None)
        if guard is not None:
            guard.watch(self)
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
