"""Single-flight: identical calls in flight at the same moment send one request.

Part of ``LLMClient`` whenever a cache is configured (README, "Several processes or
machines"; the cache itself is notebook 04's). A cache helps the *second* caller of a prompt, once
the first has its answer; twenty threads (or four processes) asking the same question
at the same moment all miss and all pay. ``SingleFlight.run(key, ...)`` lets one caller
per key lead (send the request, store the answer) while the others wait for it, each no
longer than its own deadline, and then read the answer from the cache. If the leader
fails, or its answer may not be stored, a waiting caller leads in turn. A caller that
becomes the leader looks in the cache once more first: the previous leader may have
stored the answer between this caller's own lookup and its turn.

In one process the waiters wait on the leader's event. With ``SharedState`` (Redis) the
leader also holds a lock on the key, ``flight:<key>``, that expires at its deadline, so
callers in other processes wait for it too, looking every ``poll_s``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import TypeVar

from . import errors
from .shared import SharedState

__all__ = ["SingleFlight"]

T = TypeVar("T")


class SingleFlight:
    def __init__(
        self,
        shared: SharedState | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        poll_s: float = 0.02,
    ) -> None:
        self.shared, self.clock, self.sleep, self.poll_s = shared, clock, sleep, poll_s
        self._leaders: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def run(
        self,
        key: str,
        deadline: float,
        lead: Callable[[], T],
        answered: Callable[[], T | None],
        stored: Callable[[], bool],
    ) -> T:
        """``lead()`` if no identical call is in flight; else wait for it, then return
        ``answered()`` (the cache), or lead if that found nothing. ``stored()``: is an
        answer in the cache already (a look that counts no lookup)?"""
        while True:
            with self._lock:
                event = self._leaders.get(key)
                leading = event is None
                if leading:
                    event = self._leaders[key] = threading.Event()
            assert event is not None
            if leading:
                try:
                    return self._lead_across_processes(
                        key, deadline, self._unless_stored(lead, answered, stored), answered
                    )
                finally:
                    with self._lock:
                        del self._leaders[key]
                    event.set()
            self._wait(event, deadline)
            if (found := answered()) is not None:
                return found

    @staticmethod
    def _unless_stored(
        lead: Callable[[], T], answered: Callable[[], T | None], stored: Callable[[], bool]
    ) -> Callable[[], T]:
        """``lead``, unless the answer came in since the caller looked."""

        def go() -> T:
            if stored() and (found := answered()) is not None:
                return found
            return lead()

        return go

    def _wait(self, event: threading.Event, deadline: float) -> None:
        # the time left is read on the owner's clock, then waited on the real one: another
        # thread's answer takes real time, and a virtual clock must not wait for ever
        left = deadline - self.clock()
        if left <= 0 or not event.wait(left):
            raise errors.DeadlineExceeded("the call's deadline passed while an identical call was in flight")

    def _lead_across_processes(
        self, key: str, deadline: float, lead: Callable[[], T], answered: Callable[[], T | None]
    ) -> T:
        if self.shared is None:
            return lead()
        shared, lock, token = self.shared, self.shared.key("flight", key), uuid.uuid4().hex
        while True:
            lease_ms = max(1, round((deadline - self.clock()) * 1000))  # never held past our deadline
            if shared.run(lambda r, ms=lease_ms: r.set(lock, token, nx=True, px=ms), True):  # Redis down: lead
                try:
                    return lead()
                finally:
                    shared.release(lock, token)
            while shared.run(lambda r: r.exists(lock), 0):  # another process leads
                if self.clock() + self.poll_s > deadline:
                    raise errors.DeadlineExceeded(
                        "the call's deadline passed while an identical call was in flight in another process"
                    )
                self.sleep(self.poll_s)
            if (found := answered()) is not None:
                return found
