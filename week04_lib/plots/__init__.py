"""One plot style and small plotting helpers for the five notebooks.

Every helper takes its data and an optional ``ax`` and returns the ``ax`` it drew on
(a new figure is made when ``ax`` is None), so a notebook can put two plots side by
side or add to one. Call ``use_style()`` once in a notebook's setup cell.
"""

from .breaker import BREAKER_COLORS, breaker_diagram, breaker_states
from .client import OUTCOME_COLORS, call_flow, latency_cdf, outcome_bars
from .observe import cost_saved, incident_timeline, latency_percentiles, texts_sent
from .rates import cumulative_grants, limit_budget, rate_panels, rate_timeline, token_bucket
from .retries import (
    STRATEGY_COLORS,
    attempts_per_call,
    backoff_schedules,
    fault_sweep,
    naive_retries,
    recovery_panels,
    recovery_timeline,
)
from .shared import shared_budget
from .style import COLORS, use_style
from .timeouts import latency_survival, stream_timeline, time_to_failure

__all__ = [
    "BREAKER_COLORS",
    "COLORS",
    "OUTCOME_COLORS",
    "STRATEGY_COLORS",
    "attempts_per_call",
    "backoff_schedules",
    "breaker_diagram",
    "breaker_states",
    "call_flow",
    "cost_saved",
    "cumulative_grants",
    "fault_sweep",
    "incident_timeline",
    "latency_cdf",
    "latency_percentiles",
    "latency_survival",
    "limit_budget",
    "naive_retries",
    "outcome_bars",
    "rate_panels",
    "rate_timeline",
    "recovery_panels",
    "recovery_timeline",
    "shared_budget",
    "stream_timeline",
    "texts_sent",
    "time_to_failure",
    "token_bucket",
    "use_style",
]
