"""Virtual-time simulations: many clients retrying against a server of fixed capacity.

Taught in notebook 02, section 2.5. Nothing sleeps: a discrete-event loop moves a virtual
clock from one call to the next, so thousands of calls take milliseconds.

The scenario: ``clients`` callers all fail at once during an outage of ``outage_s``
seconds and retry with a backoff strategy from :mod:`week04_lib.backoff`. After the
outage the server answers at most ``capacity_rps`` calls a second (counted per
``slot_s`` slice); any call beyond that fails as overloaded and is retried too. Without
jitter the clients retry in lockstep and keep colliding; jitter spreads them out.
"""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass

from .backoff import delay

__all__ = ["RecoveryResult", "simulate_recovery"]


@dataclass(frozen=True)
class RecoveryResult:
    strategy: str
    clients: int
    calls: int  # every request sent, first tries included
    finished_s: float  # when the last client got its answer
    call_times: tuple[float, ...]  # when each request was sent (for timelines)
    success_times: tuple[float, ...]  # when each client got its answer

    @property
    def calls_per_client(self) -> float:
        return self.calls / self.clients


def simulate_recovery(
    strategy: str,
    *,
    clients: int = 100,
    capacity_rps: float = 20.0,
    slot_s: float = 0.1,
    outage_s: float = 2.0,
    base: float = 0.1,
    cap: float = 10.0,
    seed: int = 0,
) -> RecoveryResult:
    """Every client calls at t=0 and retries with ``strategy`` until it succeeds."""
    rng = random.Random(seed)
    per_slot = capacity_rps * slot_s
    served: dict[int, int] = {}
    # (time, client, attempt number, previous delay): the heap orders calls in time
    pending = [(0.0, client, 1, base) for client in range(clients)]
    heapq.heapify(pending)
    call_times, success_times = [], []
    while pending:
        now, client, attempt, previous = heapq.heappop(pending)
        call_times.append(now)
        slot = math.floor(now / slot_s)
        if now >= outage_s and served.get(slot, 0) < per_slot:
            served[slot] = served.get(slot, 0) + 1
            success_times.append(now)
            continue
        wait = delay(strategy, attempt, previous=previous, base=base, cap=cap, rng=rng)
        heapq.heappush(pending, (now + wait, client, attempt + 1, wait))
    return RecoveryResult(
        strategy, clients, len(call_times), max(success_times, default=0.0), tuple(call_times), tuple(success_times)
    )
