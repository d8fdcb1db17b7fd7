"""Notebook 05's checks: the reference passes each one, and wrong answers fail them
(every wrong variant issue 13 lists, over real fake servers)."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor, as_completed, wait
from pathlib import Path

import pytest

from week04_lib.checklist import all_checks, format_rows, run_checks
from week04_lib.exercises import load_file
from week04_lib.retry import RetryPolicy, new_request_id

NOTEBOOKS = Path(__file__).parents[1] / "notebooks"


checks = load_file(NOTEBOOKS / "checks" / "checks_05.py")
solutions = load_file(NOTEBOOKS / "solutions" / "05_solutions.py")
reference = load_file(NOTEBOOKS / "solutions" / "llm_client.py", "reference_llm_client")
scaffold = load_file(NOTEBOOKS / "workshop" / "llm_client.py", "workshop_llm_client")

FLAKY = "30% of requests fail (200 calls)"
FAST_ROWS = [c for c in all_checks() if not c.scenario.startswith(("hang", "trickle", "header trickle", "429 with"))]


# ★ Exercise 1


def test_help_desk_config_reference_passes():
    assert "fake-mini answered" in checks.check_help_desk_config(solutions.help_desk_config)


@pytest.mark.parametrize(
    "change",
    [{"serve_stale": False}, {"fallback_models": ()}, {"cache_ttl_s": None}, {"max_attempts": 4}, {"api_key": None}],
    ids=["no stale", "no fallback", "no ttl", "4 attempts", "no key"],
)
def test_help_desk_config_wrong_fails(change):
    def wrong(base_url, api_key=None):
        return dataclasses.replace(solutions.help_desk_config(base_url, api_key), **change)

    with pytest.raises(AssertionError):
        checks.check_help_desk_config(wrong)


# ★★ Exercise 2


def test_summarize_outcomes_reference_passes():
    checks.check_summarize_outcomes(solutions.summarize_outcomes)


def test_summarize_outcomes_without_unwrapping_fails():
    def wrong(results, primary):
        summary = solutions.summarize_outcomes(results, primary)
        failures = [r for r in results if isinstance(r, BaseException)]
        summary["causes"] = {type(e).__name__: failures.count(e) for e in failures}  # the wrappers, not the causes
        return summary

    with pytest.raises(AssertionError, match="unwrap"):
        checks.check_summarize_outcomes(wrong)


def test_summarize_outcomes_stale_counted_as_cached_fails():
    def wrong(results, primary):
        relabel = [
            dataclasses.replace(r, cached=True, stale=False) if getattr(r, "stale", False) else r for r in results
        ]
        return solutions.summarize_outcomes(relabel, primary)

    with pytest.raises(AssertionError, match="outcome counts"):
        checks.check_summarize_outcomes(wrong)


# ★★★ Exercise 3


def _hedged(*, hedge_after_failure: bool, raise_last: bool, same_id: bool = True):
    """A hedged_chat with the listed mistakes."""

    def hedged_chat(client, messages, *, hedge_after_s, **params):
        request_id = new_request_id()
        pool = ThreadPoolExecutor(2)
        try:

            def send():
                return pool.submit(client.chat, messages, request_id=request_id if same_id else None, **params)

            calls = [send()]
            done, _ = wait(calls, timeout=hedge_after_s)
            if not done or (hedge_after_failure and calls[0].exception() is not None):
                calls.append(send())
            errors_seen = []
            for future in as_completed(calls):
                if future.exception() is None:
                    return future.result()
                errors_seen.append(future.exception())
            raise errors_seen[-1] if raise_last else errors_seen[0]
        finally:
            pool.shutdown(wait=False)

    return hedged_chat


def test_hedged_chat_reference_passes():
    checks.check_hedged_chat(solutions.hedged_chat)


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (_hedged(hedge_after_failure=True, raise_last=True), "must not be hedged"),  # the variant
        (_hedged(hedge_after_failure=True, raise_last=False), "must not be hedged"),
        (_hedged(hedge_after_failure=False, raise_last=True), "raise the first error"),
        (_hedged(hedge_after_failure=False, raise_last=False, same_id=False), "request id"),
    ],
    ids=["fast failure hedged + last error", "fast failure hedged", "last error", "new request id"],
)
def test_hedged_chat_wrong_fails(wrong, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_hedged_chat(wrong)


# The workshop: llm_client.py


def test_the_untouched_scaffold_is_detected():
    assert "TODO 1" in checks.unfinished(scaffold.make_client)
    assert checks.unfinished(reference.make_client) is None


def test_the_reference_client_passes_the_checklist_and_the_log_check():
    assert "passed" in checks.check_make_client(reference.make_client, FAST_ROWS + all_checks()[:1])
    checks.check_make_client_logs(reference.make_client)


class NoRetries(reference.WorkshopClient):
    def build_parts(self, *args):
        super().build_parts(*args)
        self.retry = RetryPolicy(1)  # max_attempts ignored


class FreshIds(reference.WorkshopClient):
    def attempt(self, payload, request_id, deadline, attempt):
        return super().attempt(payload, new_request_id(), deadline, attempt)  # a new id (and key) per attempt


class CachesSampled(reference.WorkshopClient):
    def key_for(self, payload):
        return None if self.cache is None else reference.cache_key(payload, self.base_url)  # temperature ignored


class NoFinalOnFailure(reference.WorkshopClient):
    def chat(self, messages, **params):
        reference.log.disabled = True  # silence the reference's own lines ...
        try:
            answer = super().chat(messages, **params)
        finally:
            reference.log.disabled = False
        reference.log.info("final", extra={"event": "final", "request_id": answer.request_id, "success": True})
        return answer  # ... and log only what succeeded


@pytest.mark.parametrize(
    ("client", "failing"),
    [
        (
            NoRetries,
            {"500 then ok", "503 then ok", "invalid JSON, then ok", "drop (work done, answer lost), retried", FLAKY},
        ),
        (FreshIds, {"drop (work done, answer lost), retried"}),
        (CachesSampled, {"temperature 0.7 without seed"}),
    ],
)
def test_a_broken_client_gets_fail_rows(client, failing):
    controls = {"401 (bad key): not retried", "same request twice (temperature 0)"}  # rows it still passes
    rows = run_checks([c for c in FAST_ROWS if c.scenario in failing | controls], make_client=client)
    print(format_rows(rows))
    assert {row.scenario for row in rows if row.passed is False} == failing
    with pytest.raises(AssertionError, match="failed"):
        checks.check_rows(rows)


def test_a_client_without_a_final_line_on_failure_fails_the_log_check():
    with pytest.raises(AssertionError, match="final line"):
        checks.check_make_client_logs(NoFinalOnFailure)


def test_a_client_without_a_total_deadline_fails_the_hang_row():
    class PerAttemptDeadline(reference.WorkshopClient):
        def attempt(self, payload, request_id, deadline, attempt):
            return super().attempt(payload, request_id, self.transport.clock() + self.timeouts.total, attempt)

    [row] = run_checks(all_checks()[:1], make_client=PerAttemptDeadline)
    assert row.passed is False, row.observed
