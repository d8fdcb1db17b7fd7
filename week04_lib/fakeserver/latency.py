"""How long the fake model takes to answer: a long-tailed (log-normal) delay.

Taught in notebook 01, section 1.2 (why a p99 is not a median).
"""

from __future__ import annotations

import math
import random

DEFAULT_LATENCY = (0.4, 3.0)  # median and p99 seconds: a realistic long tail


class LatencyModel:
    """Log-normal generation time with a given median and 99th percentile (seconds).

    ``LatencyModel(0)`` never waits. Used by the server; notebooks sample it directly.
    """

    Z99 = 2.3263478740408408  # the standard normal's 99th percentile

    def __init__(self, spec: float | tuple[float, float] | None = DEFAULT_LATENCY) -> None:
        if spec is None or spec == 0:
            self.median, self.p99 = 0.0, 0.0
        elif isinstance(spec, (int, float)):
            self.median = self.p99 = float(spec)
        else:
            self.median, self.p99 = (float(v) for v in spec)
        if self.median < 0 or self.p99 < self.median:
            raise ValueError(f"latency needs 0 <= median <= p99, got {spec!r}")
        self.sigma = math.log(self.p99 / self.median) / self.Z99 if self.median > 0 else 0.0

    def sample(self, rng: random.Random) -> float:
        if self.median == 0:
            return 0.0
        return rng.lognormvariate(math.log(self.median), self.sigma)

    def samples(self, n: int, seed: int = 0) -> list[float]:
        rng = random.Random(seed)
        return [self.sample(rng) for _ in range(n)]
