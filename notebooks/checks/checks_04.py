"""Self-checks for notebook 04 (caching, observability and logging).

Each ``check_<name>(fn)`` runs the exercise's function ``fn`` on cases with known
answers and raises AssertionError saying what is wrong. ``check_key_table`` checks
section 4.2's table of cache keys row by row. ``grade`` runs a check on your function,
or on the reference while yours still returns None, and says which one passed.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

from week04_lib import errors
from week04_lib.circuit import CircuitBreaker
from week04_lib.logs import read_logs

INCIDENT_LOG = Path(__file__).resolve().parents[2] / "data" / "incident_logs.jsonl"


# Section 4.2's table, and its self-check question: does the key include everything?


def check_key_table(table: pd.DataFrame) -> None:
    """Every row got the key it should: a rewrite of the same request the same key, any
    change a new one. ``table`` has the columns "same key" (measured) and "should be same"."""
    wrong = table.index[table["same key"] != table["should be same"]]
    assert len(wrong) == 0, "wrong key for: " + "; ".join(
        f"{label!r} should get {'the same' if table.loc[label, 'should be same'] else 'a new'} key" for label in wrong
    )
    assert table["should be same"].any() and not table["should be same"].all(), "the table needs both kinds of rows"


# ★ Exercise 1: a cache key that does not care about order

OPENAI, OLLAMA = "https://api.openai.com/v1", "http://localhost:11434/v1"
_SYSTEM = {"role": "system", "content": "Answer in English."}
_USER = {"role": "user", "content": "What is a cache?"}
_BASE = {"model": "fake-mini", "temperature": 0, "max_tokens": 64, "messages": [_SYSTEM, _USER]}
_KEY_CASES = [  # (what changed, the request, its endpoint, the same key as _BASE on OPENAI?)
    ("the same request, rebuilt", json.loads(json.dumps(_BASE)), OPENAI, True),
    ("keys in another order", dict(reversed(_BASE.items())), OPENAI, True),
    (
        "each message's keys in another order",
        _BASE | {"messages": [dict(reversed(m.items())) for m in (_SYSTEM, _USER)]},
        OPENAI,
        True,
    ),
    ("temperature 0.0 instead of 0", _BASE | {"temperature": 0.0}, OPENAI, True),
    ("max_tokens 64.0 instead of 64", _BASE | {"max_tokens": 64.0}, OPENAI, True),
    (
        "another system prompt",
        _BASE | {"messages": [{"role": "system", "content": "Réponds en français."}, _USER]},
        OPENAI,
        False,
    ),
    ("no system prompt", _BASE | {"messages": [_USER]}, OPENAI, False),
    ("messages in another order", _BASE | {"messages": [_USER, _SYSTEM]}, OPENAI, False),
    (
        "another question",
        _BASE | {"messages": [_SYSTEM, {"role": "user", "content": "What is a cookie?"}]},
        OPENAI,
        False,
    ),
    ("another model", _BASE | {"model": "fake-large"}, OPENAI, False),
    ("temperature 0.7", _BASE | {"temperature": 0.7}, OPENAI, False),
    ("max_tokens 65", _BASE | {"max_tokens": 65}, OPENAI, False),
    ("an unknown parameter (top_k 40)", _BASE | {"top_k": 40}, OPENAI, False),
    ("a nested parameter (response_format)", _BASE | {"response_format": {"type": "json_object"}}, OPENAI, False),
    ("another endpoint", _BASE, OLLAMA, False),
]


def check_stable_key(stable_key: Callable[..., str]) -> str:
    """The same key for the same request however it is written; a new key for any change."""
    base = stable_key(json.loads(json.dumps(_BASE)), OPENAI)
    assert isinstance(base, str) and base, f"stable_key must return a non-empty str, got {base!r}"
    for differs, request, endpoint, same in _KEY_CASES:
        got = stable_key(request, endpoint) == base
        assert got == same, f"stable_key: {differs}: the key must {'stay the same' if same else 'change'}"
    nested_a = {"a": 1, "b": {"x": 0, "y": [1, 2]}}
    nested_b = {"b": {"y": [1, 2], "x": 0.0}, "a": 1.0}
    assert stable_key(nested_a) == stable_key(nested_b), "keys sorted at every depth, and 0 == 0.0 at every depth"
    assert stable_key({"b": [1, 2]}) != stable_key({"b": [2, 1]}), "a list keeps its order (messages!)"
    rewrites = sum(same for *_, same in _KEY_CASES)
    return f"{rewrites} rewrites of one request share its key; {len(_KEY_CASES) - rewrites} changes each got a new one"


# ★★ Exercise 2: the incident, in two numbers


@lru_cache(maxsize=1)
def _incident() -> pd.DataFrame:
    return read_logs(INCIDENT_LOG)


# What data/incident_logs.jsonl says (pinned: tests/test_incident_data.py regenerates it byte for byte).
_FACTS = {
    "first_bad_minute": pd.Timestamp("2026-11-02 14:21", tz="UTC"),
    "outage_start": pd.Timestamp("2026-11-02 14:21:32.761", tz="UTC"),
    "outage_end": pd.Timestamp("2026-11-02 14:32:54.213", tz="UTC"),
}
_NEXT_BAD_MINUTE = pd.Timestamp("2026-11-02 14:44", tz="UTC")  # the rate-limit storm


def _line(clock: str, event: str, model: str, ok: bool, status: int | None = None) -> dict[str, Any]:
    return {
        "ts": pd.Timestamp(f"2026-01-05 10:{clock}", tz="UTC"),
        "event": event,
        "model": model,
        "success": ok,
        "status_code": float(status or (200 if ok else "nan")),
        "error_type": None if ok else {503: "server_error", 500: "server_error"}.get(status, "read_timeout"),
    }


def _tiny_log() -> pd.DataFrame:
    """A hand-made log whose answers are known. 10:00 has exactly 20 % failed attempts (not
    more: not a bad minute) and a failed `final` line (not an attempt); 10:01 has 25 %."""
    rows = [
        _line("00:05", "attempt", "gpt-4o-mini", True),  # a success before the outage: not its end
        _line("00:10", "attempt", "gpt-4o", True),
        _line("00:20", "attempt", "gpt-4o", False, 500),
        _line("00:30", "final", "gpt-4o", False),
        _line("00:40", "attempt", "gpt-4o", True),
        _line("00:50", "attempt", "gpt-4o", True),
        _line("01:10", "attempt", "gpt-4o-mini", False, 503),  # the outage starts
        _line("01:20", "attempt", "gpt-4o", True),
        _line("01:30", "attempt", "gpt-4o-mini", True),  # a success between two 503s: not its end either
        _line("01:40", "attempt", "gpt-4o", True),
        _line("02:05", "attempt", "gpt-4o-mini", False, 503),  # the last 503
        _line("02:10", "attempt", "gpt-4o-mini", False),  # a timeout after it
        _line("02:30", "attempt", "gpt-4o-mini", True),  # its end
        _line("02:40", "attempt", "gpt-4o", True),
        _line("02:45", "attempt", "gpt-4o", True),
        _line("02:50", "attempt", "gpt-4o", True),
        _line("02:55", "attempt", "gpt-4o", True),
    ]
    frame = pd.DataFrame(rows)
    frame["success"] = frame["success"].astype(object)
    return frame


def _same_facts(got: Any, expected: dict[str, Any], where: str) -> None:
    assert isinstance(got, dict), f"incident_facts must return a dict, got {type(got).__name__} ({where})"
    expected = expected | {"outage_duration": expected["outage_end"] - expected["outage_start"]}
    for name, value in expected.items():
        assert name in got, f"the dict has no {name!r} ({where})"
        assert got[name] == value, f"{name}: got {got[name]!r}, expected {value!r} ({where})"


def check_incident_facts(incident_facts: Callable[[pd.DataFrame], dict[str, Any]]) -> str:
    """The incident log's facts, again on the log shifted in time and cut short, and on a
    tiny log with a minute at exactly 20 % (not *more* than 20 %)."""
    incident = _incident()
    _same_facts(incident_facts(incident.copy()), _FACTS, "the incident log")
    shift = pd.Timedelta(days=1, minutes=7)
    moved = incident.assign(ts=incident["ts"] + shift)
    _same_facts(incident_facts(moved), {k: v + shift for k, v in _FACTS.items()}, "the log a day and 7 min later")
    cut = incident[incident["ts"] >= _FACTS["first_bad_minute"] + pd.Timedelta("1min")].copy()
    got = incident_facts(cut)
    assert got["first_bad_minute"] == _NEXT_BAD_MINUTE, (
        f"without 14:21, the first minute above 20 % is 14:44; got {got['first_bad_minute']!r}"
    )
    tiny = {
        "first_bad_minute": pd.Timestamp("2026-01-05 10:01", tz="UTC"),
        "outage_start": pd.Timestamp("2026-01-05 10:01:10", tz="UTC"),
        "outage_end": pd.Timestamp("2026-01-05 10:02:30", tz="UTC"),
    }
    _same_facts(incident_facts(_tiny_log()), tiny, "a tiny log: 10:00 has exactly 20 % failed attempts, not more")
    facts = incident_facts(incident.copy())
    return (
        f"errors above 20 % first at {facts['first_bad_minute']:%H:%M}; gpt-4o-mini's outage lasted "
        f"{facts['outage_duration'].total_seconds() / 60:.1f} min "
        f"({facts['outage_start']:%H:%M:%S} to {facts['outage_end']:%H:%M:%S})"
    )


# ★★★ Exercise 3: a breaker that trips on a failure rate


class _Clock:
    """Virtual time: the check sets ``now``."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


_DOWN = errors.ServerError("HTTP 503", status_code=503)


class _AsBool:
    """The package's breaker behind the exercise's interface: allow() -> bool, record(ok)."""

    def __init__(self, breaker: CircuitBreaker) -> None:
        self.breaker, self.ticket = breaker, None

    @property
    def state(self) -> str:
        return self.breaker.state

    def allow(self) -> bool:
        try:
            self.ticket = self.breaker.allow()  # handed back with this call's outcome
        except errors.CircuitOpen:
            return False
        return True

    def record(self, ok: bool) -> None:
        if ok:
            self.breaker.record_success(self.ticket)
        else:
            self.breaker.record_failure(_DOWN, self.ticket)


def _drive(breaker: Any, clock: _Clock, seed: int = 0) -> tuple[list[tuple[float, str]], int, int]:
    """A call every 0.5 s for 150 s; half fail from 20 s to 80 s, 5 % otherwise.
    Returns (every change of state, requests sent while degraded, of which failed)."""
    rng, changes, sent, failed = random.Random(seed), [], 0, 0
    last = "closed"

    def note() -> None:
        nonlocal last
        if breaker.state != last:
            last = breaker.state
            changes.append((clock(), last))

    for k in range(300):
        clock.now = k * 0.5
        allowed = breaker.allow()
        note()
        if allowed:
            degraded = 20 <= clock.now < 80
            ok = rng.random() >= (0.5 if degraded else 0.05)
            sent, failed = sent + degraded, failed + (degraded and not ok)
            breaker.record(ok)
            note()
    return changes, sent, failed


def _steps(new_rate_breaker: Callable[..., Any]) -> None:
    """The rules one at a time, with a window of 4 and reset_s = 10."""
    clock = _Clock()
    b = new_rate_breaker(0.5, 4, 10, clock)
    for ok in (True, False, True):
        assert b.allow(), "closed: every call is allowed"
        b.record(ok)
    assert b.state == "closed", "3 outcomes: the window of 4 is not full yet, it must stay closed"
    assert b.allow(), "closed: every call is allowed"
    b.record(False)
    assert b.state == "open", "2 failures in a full window of 4 (50 %) must open it"
    assert not b.allow(), "open: no call is allowed"
    clock.now = 9.9
    assert b.state == "open" and not b.allow(), "open until reset_s (10 s) have passed"
    clock.now = 10
    assert b.state == "half_open", "after reset_s it is half-open"
    assert [b.allow() for _ in range(3)] == [True, False, False], "half-open: exactly one probe, the others refused"
    b.record(False)
    assert b.state == "open" and not b.allow(), "a failed probe opens it again"
    clock.now = 19.9
    assert b.state == "open", "a failed probe opens it for another reset_s"
    clock.now = 20
    assert b.allow(), "half-open again after another reset_s: the probe is allowed"
    b.record(True)
    assert b.state == "closed", "a successful probe closes it"
    for _ in range(3):
        assert b.allow(), "closing starts an empty window: 3 failures do not fill a window of 4"
        b.record(False)
    assert b.state == "closed", "closing starts an empty window: 3 failures do not fill a window of 4"


def check_new_rate_breaker(new_rate_breaker: Callable[..., Any]) -> str:
    """The rules step by step, then a degraded service against the package's breaker."""
    _steps(new_rate_breaker)
    clock = _Clock()
    package = _AsBool(CircuitBreaker("m", failures=10, failure_rate=0.5, window=10, reset_s=10, clock=clock))
    theirs, package_sent, _ = _drive(package, clock)
    clock = _Clock()
    ours, sent, failed = _drive(new_rate_breaker(0.5, 10, 10, clock), clock)
    assert ours == theirs, f"the changes of state differ from the package's: first ones {ours[:4]} vs {theirs[:4]}"
    assert sent == package_sent, f"{sent} requests sent while degraded, the package sent {package_sent}"
    clock = _Clock()
    _, in_a_row, in_a_row_failed = _drive(_AsBool(CircuitBreaker("m", failures=5, reset_s=10, clock=clock)), clock)
    return (
        f"{len(ours)} changes of state, the same as the package's. Requests sent to the degraded service "
        f"(120 calls from 20 s to 80 s):\n  rate breaker (50 % of 10): {sent} sent, {failed} failed\n"
        f"  5 failures in a row:       {in_a_row} sent, {in_a_row_failed} failed"
    )
