"""Streams and embeddings (issue 14), side by side in one run.

- Time to give up on a stream that stalls half way, starts late, or sends only
  keep-alive comments: LLMClient (first-token and idle limits inside a 2 s budget)
  against the official openai package (``timeout=2``, which bounds each read).
- Re-embedding a 1,000-line corpus after 10 lines changed: requests, texts, tokens and
  cost of the second pass, without a cache and with the per-text cache.

Run them alone with ``python bench/run.py stream_give_up reembed``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from run import MESSAGES, RUNS, llm_client, median, openai_client, time_to_give_up

from week04_lib import Timeouts
from week04_lib.fakeserver import FakeLLMServer

STREAM_FAULTS = {
    "stream_stall:5": "`stream_stall:5` (5 chunks, then silence)",
    "stream_slow_start:10": "`stream_slow_start:10` (first chunk after 10 s)",
    "stream_keepalive": "`stream_keepalive` (comments only, forever)",
}
STREAM_KINDS = ("LLMClient", "openai")
BUDGET = Timeouts(2.0, 2.0, 2.0, first_token=1.0, idle=0.5)


def _read_stream(kind: str, url: str) -> None:
    if kind == "LLMClient":
        with llm_client(url, timeouts=BUDGET) as client, client.stream(MESSAGES) as stream:
            for _ in stream:
                pass
    else:
        with openai_client(url, timeout=BUDGET.total) as sdk:
            for _ in sdk.chat.completions.create(model="fake-mini", messages=MESSAGES, stream=True):
                pass


def stream_give_up_s(kind: str, fault: str, limit_s: float) -> float:
    """Seconds until ``kind`` gives up on a streamed ``fault``."""
    return time_to_give_up(lambda url: _read_stream(kind, url), fault, limit_s, f"stream {kind} {fault}")


def stream_give_up_section(limit_s: float = 10.0, runs: int = RUNS) -> list[str]:
    pairs = [(kind, fault) for fault in STREAM_FAULTS for kind in STREAM_KINDS]
    measured: dict[tuple[str, str], list[float]] = {pair: [] for pair in pairs}
    for _ in range(runs):
        with ThreadPoolExecutor(len(pairs)) as pool:  # they only wait, so they wait side by side
            for pair, seconds in zip(pairs, pool.map(lambda p: stream_give_up_s(*p, limit_s), pairs), strict=True):
                measured[pair].append(seconds)

    def cell(values: list[float]) -> str:
        value = median(values)
        return f"> {limit_s:g} s (still waiting)" if value == float("inf") else f"{value:.2f} s"

    rows = [f"| {kind} | " + " | ".join(cell(measured[kind, f]) for f in STREAM_FAULTS) + " |" for kind in STREAM_KINDS]
    b = BUDGET
    return [
        f"### Time to give up on a stream with a {b.total:g} s budget (median of {runs}; cut off at {limit_s:g} s)",
        "",
        "| client | " + " | ".join(STREAM_FAULTS.values()) + " |",
        "|---" * (len(STREAM_FAULTS) + 1) + "|",
        *rows,
        "",
        f"LLMClient: `Timeouts({b.connect:g}, {b.read:g}, {b.total:g}, first_token={b.first_token:g}, "
        f"idle={b.idle:g})`, retried before the first token; openai: `timeout={b.total:g}` (each read), "
        "its own retries. The stall's time counts from the request, not from its last chunk.",
    ]


# ------------------------------------------------------------------------- re-embedding

CORPUS_LINES, CHANGED = 1000, 10


def corpus() -> list[str]:
    return [f"line {i}: a sentence of the notes about reliable LLM calls, number {i}" for i in range(CORPUS_LINES)]


def second_pass(cache: str | None) -> dict[str, float]:
    """Embed the corpus, change CHANGED lines, embed it again: what the second pass cost."""
    lines = corpus()
    with FakeLLMServer(latency=0) as srv, llm_client(srv.url, embedding_model="fake-embed", cache=cache) as client:
        client.embed(lines)
        before = len(srv.attempts)
        for i in range(0, CORPUS_LINES, CORPUS_LINES // CHANGED):
            lines[i] = f"edited {lines[i]}"
        again = client.embed(lines)
        sent = srv.attempts[before:]
    return {
        "requests": len(sent),
        "texts": sum(len(a.body["input"]) for a in sent),
        "tokens": again.usage.prompt_tokens,
        "cost": again.cost_usd or 0.0,
    }


def reembed_section() -> list[str]:
    without, with_cache = second_pass(None), second_pass("memory")
    rows = [
        f"| {name} | {r['requests']:.0f} | {r['texts']:.0f} | {r['tokens']:.0f} | ${r['cost']:.7f} |"
        for name, r in (("no cache", without), ("per-text cache", with_cache))
    ]
    ratio = without["cost"] / with_cache["cost"] if with_cache["cost"] else float("inf")
    return [
        f"### Re-embedding a {CORPUS_LINES:,}-line corpus after {CHANGED} lines changed (second pass)",
        "",
        "| LLMClient | requests | texts sent | tokens | cost |",
        "|---|---|---|---|---|",
        *rows,
        "",
        f"`fake-embed` priced like text-embedding-3-small; batches of 256. The cache cuts the second pass's cost "
        f"{ratio:.0f}-fold in this run.",
    ]
