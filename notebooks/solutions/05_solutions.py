"""Reference solutions for the exercises of notebook 05 (a reusable LLM client).

Try the exercises first: the notebook's self-check cells fall back on these only
while your own function still returns None.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Any

from week04_lib import ChatResult, ClientConfig, LLMClient, Timeouts, errors
from week04_lib.retry import new_request_id

OUTCOMES = ("answered", "fallback", "cached", "stale", "failed")


# ★ Exercise 1: a configuration for a scenario
def help_desk_config(base_url: str, api_key: str | None = None) -> ClientConfig:
    """An interactive help-desk bot: a person is waiting, many ask the same questions,
    and an earlier answer beats an error page."""
    return ClientConfig(
        base_url=base_url,
        api_key=api_key,
        model="fake-large",
        fallback_models=["fake-mini"],  # if the big model is out, the small one answers
        timeouts=Timeouts.preset("quick_chat"),  # connect 3 s, read 15 s, total 18 s
        max_attempts=3,
        backoff_base=0.1,  # someone is waiting: retry soon, never sleep long
        backoff_cap=1.0,
        rpm=6000,  # the account's limit, kept on the client: no 429s
        cache="memory",
        cache_ttl_s=3600,  # an answer lives an hour
        serve_stale=True,  # when every model is down, an earlier answer marked stale
    )


# ★★ Exercise 2: what happened to a workload
def root_causes(error: BaseException) -> list[str]:
    """The class names of the failures behind ``error``: each model's error for an
    ``AllModelsFailed``, the refused failure for a ``RetryBudgetExhausted``."""
    if isinstance(error, errors.AllModelsFailed) and error.errors:
        return [name for inner in error.errors for name in root_causes(inner)]
    if isinstance(error, errors.RetryBudgetExhausted) and isinstance(error.__cause__, BaseException):
        return root_causes(error.__cause__)
    return [type(error).__name__]


def outcome_of(result: Any, primary: str) -> str:
    """One of OUTCOMES for a ``ChatResult`` or an ``LLMError``."""
    if isinstance(result, BaseException):
        return "failed"
    if result.stale:
        return "stale"
    if result.cached:
        return "cached"
    return "answered" if result.model == primary else "fallback"


def summarize_outcomes(results: Sequence[Any], primary: str) -> dict[str, Any]:
    """Counts of each outcome (they sum to the number of calls), the share of calls that
    got an answer of any kind, and the root causes of the failures."""
    counts = Counter(outcome_of(r, primary) for r in results)
    causes: Counter[str] = Counter()
    for result in results:
        if isinstance(result, BaseException):
            causes.update(root_causes(result))
    summary: dict[str, Any] = {name: counts[name] for name in OUTCOMES}
    summary["served"] = round(1 - counts["failed"] / len(results), 4) if results else 0.0
    summary["causes"] = dict(causes.most_common())
    return summary


# ★★★ Exercise 3: a hedged request
def hedged_chat(
    client: LLMClient,
    messages: Iterable[dict[str, Any]],
    *,
    hedge_after_s: float,
    **params: Any,
) -> ChatResult:
    """``client.chat``; if it has not answered after ``hedge_after_s``, the same call again,
    with the same request id, and the first answer wins.

    The same request id means the same ``Idempotency-Key``: a provider that honours it
    bills the two requests once. A call that *fails* before the hedge is due is not hedged
    (the client already retried it). If both fail, the first error is raised. The loser
    keeps running in its thread until it ends, which the client's deadline bounds.
    """
    messages = list(messages)
    request_id = params.pop("request_id", None) or new_request_id()
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="hedge")
    try:
        calls = [pool.submit(client.chat, messages, request_id=request_id, **params)]
        done, _ = wait(calls, timeout=hedge_after_s)
        if not done:
            calls.append(pool.submit(client.chat, messages, request_id=request_id, **params))
        first_error: BaseException | None = None
        pending = set(calls)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                error = future.exception()
                if error is None:
                    return future.result()
                first_error = first_error or error
        assert first_error is not None
        raise first_error
    finally:
        pool.shutdown(wait=False)  # do not wait for the loser
