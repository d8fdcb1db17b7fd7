"""Self-checks for the exercises of notebook 01 (timeouts and failure modes).

Each ``check_<exercise>(fn)`` raises AssertionError with a message that says what is
wrong, and returns None when ``fn`` passes. The notebook runs them on your function (or
on the reference solution while yours still returns None); tests/test_checks_01.py runs
them on the reference and on wrong answers, so every check is known to be able to fail.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from week04_lib import errors
from week04_lib.fakeserver import FakeLLMServer, LatencyModel

PAYLOAD = {"model": "fake-mini", "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 8}
MARGIN_S = 0.25  # how far past its budget a bounded call may end (thread start, connect, a slow CI)


def _timed(fn: Callable[..., Any], *args: Any, limit_s: float, what: str) -> tuple[Any, float]:
    """``fn(*args)``'s return value or exception, and the seconds it took.

    Runs in a thread so that a call that never ends fails the check instead of hanging it:
    past ``limit_s`` (plus half a second) it is reported, and leaving the server's ``with``
    block then stops the server, which ends the call.
    """
    outcome: dict[str, Any] = {}

    def call() -> None:
        start = time.monotonic()
        try:
            outcome["value"] = fn(*args)
        except Exception as e:  # the check judges the exception, whatever it is
            outcome["value"] = e
        outcome["seconds"] = time.monotonic() - start

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    worker.join(limit_s + 0.5)
    assert not worker.is_alive(), f"{what}: the call was still running after {limit_s + 0.5:g}s: it is not bounded"
    return outcome["value"], outcome["seconds"]


# ★ Exercise 1
def check_pick_preset(pick_preset: Callable[..., str]) -> None:
    """The chat preset with the shortest read timeout that cuts at most ``max_cut``; ValueError if none."""
    workload = LatencyModel((2.0, 25.0)).samples(20000, seed=0)  # the notebook's workload of section 1.6
    quick = LatencyModel((0.5, 4.0)).samples(5000, seed=1)
    for samples, max_cut, expected, what in [
        (workload, 0.01, "standard", "median 2 s, p99 25 s, at most 1% cut"),
        (workload, 0.001, "long_form", "median 2 s, p99 25 s, at most 0.1% cut"),
        (quick, 0.001, "quick_chat", "median 0.5 s, p99 4 s, at most 0.1% cut (only chat presets count)"),
    ]:
        got = pick_preset(samples, max_cut)
        assert got == expected, f"{what}: expected {expected!r}, got {got!r}"
    try:
        got = pick_preset(LatencyModel((8.0, 150.0)).samples(5000, seed=1), 0.01)
    except ValueError:
        return
    raise AssertionError(f"median 8 s, p99 150 s: no preset fits, expected a ValueError, got {got!r}")


# ★★ Exercise 2
def check_call_with_budget(call_with_budget: Callable[..., Any], budget_s: float = 0.4) -> None:
    """At most two attempts, a second only after a transient error, all within one budget."""

    def run(script: list[str], default: str = "ok") -> tuple[Any, float, int]:
        what = " then ".join([*script, default])
        with FakeLLMServer(script, default=default, latency=0) as srv:
            result, took = _timed(call_with_budget, srv.url, PAYLOAD, budget_s, limit_s=budget_s + MARGIN_S, what=what)
            return result, took, len(srv.attempts)

    result, _, n = run(["503"])
    assert getattr(result, "text", None) and n == 2, (
        f"503 then ok: expected a completion after 2 attempts, got {result!r} after {n}"
    )
    result, _, n = run(["503", "503"])
    assert isinstance(result, errors.ServerError) and n == 2, (
        f"503 twice: expected the ServerError raised after exactly 2 attempts, got {result!r} after {n}"
    )
    result, _, n = run(["401"])
    assert isinstance(result, errors.AuthError) and n == 1, (
        f"401 is permanent: expected the AuthError raised after 1 attempt, got {result!r} after {n}"
    )
    for fault in ["hang", "trickle:0.05"]:
        result, took, _ = run([], default=fault)
        assert isinstance(result, errors.LLMTimeout), f"{fault}: expected an LLMTimeout, got {result!r}"
        assert took < budget_s + MARGIN_S, (
            f"{fault}: took {took:.2f}s for a {budget_s:g}s budget: both attempts must share one deadline"
        )


# ★★★ Exercise 3
def check_post_with_deadline(post_with_deadline: Callable[..., Any], total_s: float = 0.5) -> None:
    """The reply's JSON, or TimeoutError within ``total_s`` (+ a margin), whatever the server does."""
    with FakeLLMServer(["ok"], latency=0) as srv:
        reply, _ = _timed(
            post_with_deadline, f"{srv.url}/chat/completions", PAYLOAD, total_s, limit_s=total_s, what="ok"
        )
    assert isinstance(reply, dict) and reply.get("choices"), f"a good reply: expected its JSON as a dict, got {reply!r}"
    for fault, latency, why in [
        ("hang", 0, "the server never answers"),
        ("trickle:0.05", 0, "one byte every 0.05 s: a per-read timeout never fires"),
        # 0.4 s of generation, half the body, then silence: a socket read given the whole
        # budget instead of the time left waits until 0.4 + 0.5 = 0.9 s
        ("body_stall:3", 0.4, "half the body after 0.4 s, then 3 s of silence: each read gets only the time left"),
    ]:
        with FakeLLMServer([fault], latency=latency) as srv:
            url = f"{srv.url}/chat/completions"
            result, took = _timed(
                post_with_deadline, url, PAYLOAD, total_s, limit_s=total_s + MARGIN_S, what=f"{fault} ({why})"
            )
        assert isinstance(result, TimeoutError), f"{fault} ({why}): expected TimeoutError, got {result!r}"
        assert took < total_s + MARGIN_S, f"{fault} ({why}): TimeoutError after {took:.2f}s for a {total_s:g}s budget"


# Self-check: can you simulate failures and show graceful handling?
def check_every_fault_typed(outcomes: Mapping[str, object]) -> None:
    """Every injected fault ended in an LLMError: none returned normally, none raised anything else.

    ``outcomes`` maps each fault to what the call gave: its exception, or its return value.
    """
    assert outcomes, "no faults were injected"
    returned = [fault for fault, outcome in outcomes.items() if not isinstance(outcome, BaseException)]
    untyped = [
        f"{fault} ({type(outcome).__name__})"
        for fault, outcome in outcomes.items()
        if isinstance(outcome, BaseException) and not isinstance(outcome, errors.LLMError)
    ]
    assert not returned, f"these faults returned normally instead of raising an LLMError: {', '.join(returned)}"
    assert not untyped, f"these faults raised something an `except LLMError` misses: {', '.join(untyped)}"


# Self-check: can you show a stream does not hang either?
def check_stream_clocks(runs: Mapping[str, Mapping[str, Any]], limits: Any) -> None:
    """Every stream ended complete or with a typed error, on time by its clock, and the
    evidence shows each of the three clocks firing at least once.

    ``runs`` maps a label to what one ``client.stream`` call gave: ``chunks`` (seconds
    since the request, one per delta), ``end`` (seconds), ``error`` (the exception, or
    None) and ``result`` (``stream.result``, or None). ``limits`` is the ``Timeouts`` used.
    """
    assert runs, "no streams were run"
    assert limits.first_token and limits.idle, "the Timeouts need first_token and idle for a stream"
    fired: set[str] = set()
    for label, run in runs.items():
        error, end, chunks = run["error"], run["end"], sorted(run["chunks"])
        assert end <= limits.total + MARGIN_S, f"{label}: ended after {end:.2f}s, past the total of {limits.total:g}s"
        if error is None:
            assert run.get("result") is not None, f"{label}: no error, yet no complete stream.result"
            fired.add("a complete stream")
            continue
        assert isinstance(error, errors.LLMError), f"{label}: {type(error).__name__} is not a typed LLMError"
        assert run.get("result") is None, f"{label}: failed with {type(error).__name__} yet gave a complete result"
        if not chunks:
            if isinstance(error, errors.FirstTokenTimeout):
                assert end <= limits.first_token + MARGIN_S, (
                    f"{label}: FirstTokenTimeout after {end:.2f}s, past first_token={limits.first_token:g}s"
                )
                fired.add("a first_token cut")
            continue
        assert isinstance(error, errors.StreamInterrupted) and error.partial_text, (
            f"{label}: failed after {len(chunks)} chunks with {type(error).__name__}: expected a "
            "StreamInterrupted (or StreamTimeout) carrying the partial_text the caller already has"
        )
        gap = end - chunks[-1]
        assert gap <= limits.idle + MARGIN_S, (
            f"{label}: cut {gap:.2f}s after its last chunk, past idle={limits.idle:g}s"
        )
        if isinstance(error, errors.StreamTimeout):  # the total clock cuts at the total, never before
            fired.add("a total cut" if end >= limits.total - 0.05 else "an idle cut")
    missing = {"a complete stream", "a first_token cut", "an idle cut", "a total cut"} - fired
    assert not missing, (
        f"the runs lack {', '.join(sorted(missing))}: run a healthy stream, a silent one, "
        "one that stalls and one that drips past the total"
    )
