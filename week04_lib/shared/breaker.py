"""Breakers whose opening every process sees.

Each process still counts the failures it sees itself (``CircuitBreaker``); what Redis
shares is the verdict. When a breaker opens anywhere, it writes ``open`` for the model
with ``reset_s`` as its expiry, and every process's breaker for that model opens too
(until the same moment) before it lets a call through. When the time is up, exactly one
process in all sends the probe: the one that takes the model's ``probe`` lock; the
others fail fast until its outcome closes or opens the breaker again.
"""

from __future__ import annotations

import uuid
from typing import Any

from .. import errors
from ..circuit import HALF_OPEN, OPEN, CircuitBreaker, CircuitBreakers
from . import SharedState

__all__ = ["SharedCircuitBreaker", "SharedCircuitBreakers"]


class SharedCircuitBreaker(CircuitBreaker):
    def __init__(self, name: str = "default", *, shared: SharedState, **settings: Any) -> None:
        super().__init__(name, **settings)
        self.shared = shared
        self._open_key, self._probe_key = shared.key("breaker", name, "open"), shared.key("breaker", name, "probe")
        self._token = uuid.uuid4().hex  # this breaker's name on the probe lock

    def allow(self) -> int:
        left_ms = self.shared.run(lambda r: r.pttl(self._open_key), -2)
        if left_ms > 0:
            self._open_for(left_ms / 1000)
        ticket = super().allow()
        with self._lock:
            probing = self._state == HALF_OPEN and ticket == self._generation  # only the probe gets through
        if probing and not self._take_probe():
            self.abandon(ticket)
            raise errors.CircuitOpen(
                f"circuit for {self.name} is half_open: failing fast, another process sends the probe",
                model=self.name,
            )
        return ticket

    def _take_probe(self) -> bool:
        expiry_ms = round(self.reset_s * 1000)  # a prober that dies frees the probe after reset_s
        took = self.shared.run(lambda r: r.set(self._probe_key, self._token, nx=True, px=expiry_ms), True)
        return bool(took) or self.shared.run(lambda r: r.get(self._probe_key), None) == self._token

    def _open_for(self, seconds: float) -> None:
        """Open as another process's breaker did, until the same moment."""
        with self._lock:
            if self._state == OPEN and self.reset_s - (self.clock() - self._opened_at) >= seconds - 0.01:
                return
            change = self._move(OPEN)
            self._probing = False  # a probe of ours in flight is a straggler now
            self._opened_at = self.clock() - (self.reset_s - seconds)
        CircuitBreaker._announce(self, change)  # heard here; not written back to Redis

    def _announce(self, change: tuple[str, str] | None) -> None:
        super()._announce(change)
        if change is None:
            return
        old, new = change
        if new == OPEN:  # this process's own count opened it: tell every process
            expiry_ms = round(self.reset_s * 1000)
            self.shared.run(lambda r: r.set(self._open_key, "1", px=expiry_ms), None)
        if old == HALF_OPEN:  # the probe's outcome is in
            self.shared.release(self._probe_key, self._token)

    def abandon(self, ticket: int | None = None) -> None:
        super().abandon(ticket)
        with self._lock:
            was_probe = self._state == HALF_OPEN and ticket == self._generation
        if was_probe:  # no news from the probe: let another process's go
            self.shared.release(self._probe_key, self._token)


class SharedCircuitBreakers(CircuitBreakers):
    """One shared breaker per model (``CircuitBreakers``' settings, plus ``shared``)."""

    kind = SharedCircuitBreaker
