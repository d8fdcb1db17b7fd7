"""Notebook 04's self-checks pass the reference solutions and fail wrong answers."""

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest

from week04_lib.exercises import load_file

NOTEBOOKS = Path(__file__).parents[1] / "notebooks"


checks = load_file(NOTEBOOKS / "checks" / "checks_04.py")
solutions = load_file(NOTEBOOKS / "solutions" / "04_solutions.py")


# Section 4.2's key table and its self-check


def key_table(same_key: dict[str, bool], should_be_same: dict[str, bool]) -> pd.DataFrame:
    return pd.DataFrame({"same key": same_key, "should be same": should_be_same})


SHOULD = {
    "keys in another order": True,
    "temperature 0.0 instead of 0": True,
    "another system prompt": False,
    "another model": False,
}


def test_a_right_key_table_passes():
    checks.check_key_table(key_table(dict(SHOULD), SHOULD))


def test_forcing_the_system_prompt_row_to_the_same_key_fails():
    forced = dict(SHOULD) | {"another system prompt": True}
    with pytest.raises(AssertionError, match="another system prompt"):
        checks.check_key_table(key_table(forced, SHOULD))


def test_a_rewrite_with_a_new_key_fails():
    with pytest.raises(AssertionError, match="keys in another order"):
        checks.check_key_table(key_table(dict(SHOULD) | {"keys in another order": False}, SHOULD))


# ★ stable_key


def sha(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def unsorted_keys(request, endpoint=""):
    return hashlib.sha256(json.dumps([endpoint, request]).encode()).hexdigest()


def without_endpoint(request, endpoint=""):
    return sha(solutions._canonical(request))


def last_message_only(request, endpoint=""):
    messages = request.get("messages") or [{}]
    rest = {k: v for k, v in request.items() if k != "messages"}
    return sha(solutions._canonical([endpoint, rest, messages[-1]]))


def floats_not_canonical(request, endpoint=""):
    """Sorted keys, but 0 and 0.0 written differently."""
    return sha({"endpoint": endpoint, "request": request})


def sorted_lists(request, endpoint=""):
    def walk(value):
        if isinstance(value, list):
            return sorted((walk(v) for v in value), key=json.dumps)
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        return value

    return solutions.stable_key(walk(request), endpoint)


def test_the_reference_stable_key_passes():
    checks.check_stable_key(solutions.stable_key)


@pytest.mark.parametrize(
    "wrong", [unsorted_keys, without_endpoint, last_message_only, floats_not_canonical, sorted_lists]
)
def test_a_wrong_stable_key_fails(wrong):
    with pytest.raises(AssertionError):
        checks.check_stable_key(wrong)


# ★★ incident_facts


def at_least_the_threshold(frame):
    """The issue's wrong variant: `>=` for `>` (no minute of the real log is at exactly 20 %)."""
    facts = solutions.incident_facts(frame)
    attempts = frame[frame["event"] == "attempt"]
    failed = ~attempts["success"].fillna(False).astype(bool)
    per_minute = failed.groupby(attempts["ts"].dt.floor("min")).mean()
    return facts | {"first_bad_minute": per_minute[per_minute >= 0.2].index.min()}


def every_event(frame):
    """Counts every line, not only the HTTP attempts."""
    facts = solutions.incident_facts(frame)
    failed = ~frame["success"].fillna(False).astype(bool)
    per_minute = failed.groupby(frame["ts"].dt.floor("min")).mean()
    return facts | {"first_bad_minute": per_minute[per_minute > 0.2].index.min()}


def first_success_after_the_first_503(frame):
    facts = solutions.incident_facts(frame)
    attempts = frame[(frame["event"] == "attempt") & (frame["model"] == "gpt-4o-mini")]
    ok = attempts["success"].fillna(False).astype(bool)
    end = attempts.loc[ok & (attempts["ts"] > facts["outage_start"]), "ts"].min()
    return facts | {"outage_end": end, "outage_duration": end - facts["outage_start"]}


def hard_coded(frame):
    return {
        "first_bad_minute": pd.Timestamp("2026-11-02 14:21", tz="UTC"),
        "outage_start": pd.Timestamp("2026-11-02 14:21:32.761", tz="UTC"),
        "outage_end": pd.Timestamp("2026-11-02 14:32:54.213", tz="UTC"),
        "outage_duration": pd.Timedelta("11min 21.452s"),
    }


def test_the_reference_incident_facts_passes():
    checks.check_incident_facts(solutions.incident_facts)


@pytest.mark.parametrize("wrong", [at_least_the_threshold, every_event, first_success_after_the_first_503, hard_coded])
def test_a_wrong_incident_facts_fails(wrong):
    with pytest.raises(AssertionError):
        checks.check_incident_facts(wrong)


def test_at_least_the_threshold_fails_on_the_boundary_minute():
    with pytest.raises(AssertionError, match="exactly 20 %"):
        checks.check_incident_facts(at_least_the_threshold)


# ★★★ new_rate_breaker


class OpensEarly(solutions.RateBreaker):
    """Trips on the share of the outcomes so far, before the window is full."""

    def record(self, ok):
        with self.lock:
            if self._state == "closed":
                self.outcomes.append(not ok)
                if sum(self.outcomes) / len(self.outcomes) >= self.failure_rate:
                    self._open()
                return
        super().record(ok)


class EveryoneProbes(solutions.RateBreaker):
    """Half-open lets every caller through."""

    def allow(self):
        with self.lock:
            self._refresh()
            return self._state != "open"


class KeepsOldWindow(solutions.RateBreaker):
    """Closing keeps the old failures in the window."""

    def record(self, ok):
        with self.lock:
            if self._state == "half_open":
                self.probing = False
                if ok:
                    self._state = "closed"
                else:
                    self._open()
                return
        super().record(ok)


def test_the_reference_rate_breaker_passes():
    checks.check_new_rate_breaker(solutions.new_rate_breaker)


@pytest.mark.parametrize("wrong", [OpensEarly, EveryoneProbes, KeepsOldWindow])
def test_a_wrong_rate_breaker_fails(wrong):
    with pytest.raises(AssertionError):
        checks.check_new_rate_breaker(lambda rate, window, reset_s, clock: wrong(rate, window, reset_s, clock))
