"""Reference solutions for the exercises of notebook 04 (caching, observability and logging).

Try the exercises first: the notebook's self-check cells fall back on these only
while your own function still returns None.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any


# ★ Exercise 1: a cache key that does not care about order
def _canonical(value: Any) -> Any:
    """Equal values look equal: 0 and 0.0 become 0; dicts and lists are walked."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]  # a list keeps its order: the order of messages matters
    return value


def stable_key(request: Mapping[str, Any], endpoint: str = "") -> str:
    """SHA-256 of the canonical JSON of the endpoint and the whole request.

    ``sort_keys=True`` makes the order of a dict's keys irrelevant at every depth; the
    canonical form makes ``0`` and ``0.0`` the same number. Nothing is left out: the
    model, every message (system prompt included) and every parameter, known or not.
    """
    text = json.dumps(
        {"endpoint": endpoint.rstrip("/"), "request": _canonical(request)},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(text.encode()).hexdigest()


# ★★ Exercise 2: read the incident from the log
def incident_facts(frame: Any, threshold: float = 0.2, model: str = "gpt-4o-mini") -> dict[str, Any]:
    """Facts about the incident log (a DataFrame from ``read_logs``).

    - ``first_bad_minute``: the first minute in which more than ``threshold`` of the
      HTTP attempts (``event == "attempt"``) failed;
    - ``outage_start``: the first attempt on ``model`` answered with a 503;
    - ``outage_end``: that model's first successful attempt after its last 503;
    - ``outage_duration``: the time between the two.

    Everything comes from the frame: no time of day is assumed, so the same function
    answers for a log shifted in time or cut short (the notebook's check tries both).
    """
    attempts = frame[frame["event"] == "attempt"]
    failed = ~attempts["success"].fillna(False).astype(bool)
    per_minute = failed.groupby(attempts["ts"].dt.floor("min")).mean()
    bad_minutes = per_minute[per_minute > threshold]

    on_model = attempts[attempts["model"] == model]
    ok = on_model["success"].fillna(False).astype(bool)
    outage = on_model[on_model["status_code"] == 503]
    start, last_503 = outage["ts"].min(), outage["ts"].max()
    end = on_model.loc[ok & (on_model["ts"] > last_503), "ts"].min()
    return {
        "first_bad_minute": bad_minutes.index.min(),
        "outage_start": start,
        "outage_end": end,
        "outage_duration": end - start,
    }


# ★★★ Exercise 3: a circuit breaker that trips on a failure rate
class RateBreaker:
    """Trips when at least ``failure_rate`` of the last ``window`` calls failed.

    - closed: every outcome goes into a window of the last ``window`` calls; once the
      window is full and its share of failures reaches ``failure_rate``, it opens;
    - open: ``allow()`` says no until ``reset_s`` have passed since it opened;
    - half-open: ``allow()`` says yes to exactly one caller, the probe; the probe's
      success closes the breaker with an empty window, its failure opens it again.

    A consecutive-failures breaker misses a service that fails most of the time but not
    every time; a rate over a window catches it.
    """

    def __init__(
        self, failure_rate: float, window: int, reset_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if not 0 < failure_rate <= 1 or window < 1 or reset_s <= 0:
            raise ValueError("need 0 < failure_rate <= 1, window >= 1 and reset_s > 0")
        self.failure_rate, self.reset_s, self.clock = failure_rate, reset_s, clock
        self.outcomes: deque[bool] = deque(maxlen=window)  # True: a failure
        self._state = "closed"
        self.opened_at = 0.0
        self.probing = False
        self.lock = threading.Lock()  # one breaker is shared by every thread of a client

    def _refresh(self) -> None:
        if self._state == "open" and self.clock() - self.opened_at >= self.reset_s:
            self._state, self.probing = "half_open", False

    @property
    def state(self) -> str:
        with self.lock:
            self._refresh()
            return self._state

    def allow(self) -> bool:
        with self.lock:
            self._refresh()
            if self._state == "closed":
                return True
            if self._state == "half_open" and not self.probing:
                self.probing = True  # this caller is the one probe
                return True
            return False

    def record(self, ok: bool) -> None:
        with self.lock:
            if self._state == "half_open":
                self.probing = False
                if ok:
                    self._state = "closed"
                    self.outcomes.clear()  # a fresh start: old failures do not count again
                else:
                    self._open()
                return
            if self._state != "closed":
                return  # a late answer while open changes nothing
            self.outcomes.append(not ok)
            full = len(self.outcomes) == self.outcomes.maxlen
            if not ok and full and sum(self.outcomes) / len(self.outcomes) >= self.failure_rate:
                self._open()

    def _open(self) -> None:
        self._state, self.opened_at = "open", self.clock()


def new_rate_breaker(
    failure_rate: float, window: int, reset_s: float, clock: Callable[[], float] = time.monotonic
) -> RateBreaker:
    """A failure-rate circuit breaker: ``allow() -> bool``, ``record(ok)``, ``state``."""
    return RateBreaker(failure_rate, window, reset_s, clock)
