"""`make bench`: side-by-side measurements against the fake server, in one run.

Every figure is the median of RUNS runs; the tables and the machine go to
bench/RESULTS.md (``python bench/run.py give_up`` runs and prints only the sections named,
leaving RESULTS.md as it is). Not a test: nothing here asserts, it measures. The clients compared:

- ``LLMClient``: this package, default settings unless a row says otherwise;
- ``naive loop``: what a first attempt looks like: ``requests.post`` with
  ``timeout=(connect, read)``, retried at once on any failure, up to 4 attempts;
- ``openai``: the official package with its defaults (2 retries with backoff,
  Retry-After honoured), ``timeout`` set to the budget;
- ``requests``: one plain ``requests.post(..., timeout=(connect, read))``.

The ``sweep`` section (bench/sweep.py) runs the first three against a growing share of
failures once and draws bench/fault_sweep.png; a run of named sections writes its figures
to a temporary folder instead.
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from week04_lib import ClientConfig, LLMClient, Timeouts, errors
from week04_lib.fakeserver import FakeLLMServer
from week04_lib.fakeserver.handler import MAX_FILLER_HEADERS, TRAILER_EVERY_S

RUNS = 3
PAYLOAD = {"model": "fake-mini", "messages": [{"role": "user", "content": "Summarise the incident in one line."}]}
MESSAGES = PAYLOAD["messages"]
FIGURES = Path(__file__).parent  # where sections save their figures (main changes it for named sections)


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def median(values: list[float]) -> float:
    return statistics.median(values)


# ----------------------------------------------------------------------- the clients


def llm_client(url: str, **settings: Any) -> LLMClient:
    return LLMClient(ClientConfig(base_url=url, model="fake-mini", **settings))


def naive_call(
    url: str,
    timeout: tuple[float, float] = (5, 30),
    attempts: int = 4,
    deadline_s: float | None = None,
    messages: list[dict[str, str]] = MESSAGES,
) -> bool:
    """``deadline_s``: start no attempt once that many seconds have passed, and cut each
    attempt's timeouts to the time left (requests itself has no limit on a whole call)."""
    end = None if deadline_s is None else time.monotonic() + deadline_s
    for _ in range(attempts):
        limit = timeout
        if end is not None:
            left = end - time.monotonic()
            if left <= 0:
                break
            limit = (min(timeout[0], left), min(timeout[1], left))
        try:
            reply = requests.post(f"{url}/chat/completions", json={**PAYLOAD, "messages": messages}, timeout=limit)
            if reply.status_code == 200:
                reply.json()
                return True
        except (requests.RequestException, ValueError):
            pass
    return False


def openai_client(url: str, timeout: Any = 30.0, backoff_scale: float = 1.0) -> Any:
    """``timeout``: seconds or an ``httpx.Timeout``. ``backoff_scale``: the SDK's own
    backoff sleeps multiplied by this; a Retry-After it honours is waited as sent."""
    import openai

    sdk = openai.OpenAI(base_url=url, api_key="unused", timeout=timeout)
    if backoff_scale != 1.0:
        computed = sdk._calculate_retry_timeout

        def shortened(remaining_retries: int, options: Any, response_headers: Any = None) -> float:
            wait = computed(remaining_retries, options, response_headers)
            return wait if wait == sdk._parse_retry_after_header(response_headers) else wait * backoff_scale

        sdk._calculate_retry_timeout = shortened
    return sdk


# ------------------------------------------------------------------------- overhead


def per_call_s(call: Callable[[], Any], n: int) -> float:
    call()  # warm up: connection, imports
    start = time.perf_counter()
    for _ in range(n):
        call()
    return (time.perf_counter() - start) / n


def overhead_section(n: int = 300) -> list[str]:
    rows: dict[str, list[float]] = {k: [] for k in ("session", "post", "client", "hit")}
    for _ in range(RUNS):
        with FakeLLMServer(latency=0) as srv:
            url = f"{srv.url}/chat/completions"
            session = requests.Session()
            # interleaved, so a slow moment of the machine hits every client alike
            rows["session"].append(
                per_call_s(lambda s=session, u=url: s.post(u, json=PAYLOAD, timeout=(5, 30)).json(), n)
            )
            with llm_client(srv.url) as client:
                rows["client"].append(per_call_s(lambda: client.chat(MESSAGES, temperature=0), n))
            rows["post"].append(per_call_s(lambda u=url: requests.post(u, json=PAYLOAD, timeout=(5, 30)).json(), n))
            with llm_client(srv.url, cache="memory") as cached:
                rows["hit"].append(per_call_s(lambda: cached.chat(MESSAGES, temperature=0), n))
            session.close()
    base = median(rows["session"])
    ms = {k: median(v) * 1000 for k, v in rows.items()}
    return [
        f"### Overhead per call ({n} calls a run, fake server with latency=0, median of {RUNS})",
        "",
        "| client | ms per call | ratio to a bare `requests.Session().post` |",
        "|---|---|---|",
        f"| bare `requests.Session().post` (keep-alive) | {ms['session']:.2f} | 1.00 |",
        f"| `LLMClient.chat` (no cache) | {ms['client']:.2f} | {median(rows['client']) / base:.2f} |",
        f"| bare `requests.post` (new connection each call) | {ms['post']:.2f} | {median(rows['post']) / base:.2f} |",
        f"| `LLMClient.chat`, cache hit | {ms['hit']:.3f} | {median(rows['hit']) / base:.3f} |",
        "",
        "`LLMClient` adds validation, a request id, the retry policy, the breaker, cost and logging;",
        "it also reads proxy and CA settings from the environment once, where a bare",
        "`requests.Session` reads them again on every request, which pays for part of the rest.",
        f"The ratio of each of this run's {RUNS} runs: "
        + ", ".join(f"{c / b:.2f}" for c, b in zip(rows["client"], rows["session"], strict=True))
        + ".",
    ]


# --------------------------------------------------------------------------- goodput


def goodput(kind: str, rpm: int, seconds: float, threads: int) -> tuple[float, int]:
    """Share of ``rpm`` answered in ``seconds`` by ``threads`` busy threads; 429s received."""
    answered = 0
    lock = threading.Lock()
    with FakeLLMServer(rpm=rpm, latency=0) as srv:
        end = time.monotonic() + seconds
        if kind == "LLMClient":
            client = llm_client(srv.url, rpm=rpm, timeouts=Timeouts(5, 30, seconds))
            call: Callable[[], Any] = lambda: client.chat(MESSAGES, temperature=0)  # noqa: E731
        elif kind == "openai":
            sdk = openai_client(srv.url)
            call = lambda: sdk.chat.completions.create(model="fake-mini", messages=MESSAGES)  # noqa: E731
        else:

            def call() -> None:
                if not naive_call(srv.url):
                    raise errors.LLMError("failed")

        def worker(_: int) -> None:
            nonlocal answered
            while time.monotonic() < end:
                try:
                    call()
                except Exception:  # every client's own failure: count only the answers
                    continue
                if time.monotonic() <= end:
                    with lock:
                        answered += 1

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(worker, range(threads)))
        refused = sum(a.fault == "rate_limited" for a in srv.attempts)
    return answered / (rpm / 60 * seconds), refused


def goodput_section(rpm: int = 600, seconds: float = 8.0, threads: int = 8) -> list[str]:
    rows = []
    for kind in ("LLMClient", "naive loop", "openai"):
        shares, refusals = zip(*(goodput(kind, rpm, seconds, threads) for _ in range(RUNS)), strict=True)
        label = f"`LLMClient(rpm={rpm})`" if kind == "LLMClient" else kind
        rows.append(f"| {label} | {median(list(shares)):.1%} | {median(list(refusals)):.0f} |")
    return [
        f"### Goodput under a server limit of R = {rpm} RPM ({threads} threads, {seconds:g} s, median of {RUNS})",
        "",
        "| client | answered, as a share of R | 429s received |",
        "|---|---|---|",
        *rows,
        "",
        "The server's bucket holds one second of budget, so a client without a limiter can",
        "briefly exceed R at the start; it pays for it in 429s.",
    ]


def contention_section(rpm: int = 540, threads: int = 32, seconds: float = 10.0) -> list[str]:
    """Our own limiter against a healthy server (issue 12): it must not let requests go
    that cannot finish, and so must never open the breaker. A call counts as answered in
    the window when the request that brought its answer reached the server in it (the
    limiter's slots are what `rpm` allows; an answer may arrive just after)."""
    outcomes: Counter[str] = Counter()
    answered_ids: list[str] = []
    lock = threading.Lock()
    with FakeLLMServer() as srv:  # healthy, with its realistic long-tailed latency
        settings = {"rpm": rpm, "max_concurrency": 8, "timeouts": Timeouts(1, 2, 3)}
        with llm_client(srv.url, **settings) as client:
            start = time.monotonic()
            end = start + seconds

            def worker(_: int) -> None:
                while time.monotonic() < end:
                    try:
                        result = client.chat(MESSAGES, temperature=0, cache=False)
                        kind = "answered"
                    except errors.LLMError as exc:
                        kind = type(exc).__name__
                    with lock:
                        outcomes[kind] += 1
                        if kind == "answered":
                            answered_ids.append(result.request_id)

            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(worker, range(threads)))
        arrived = {a.headers.get("X-Request-ID"): a.t for a in srv.attempts}  # a call's last request
        sent_in_window = sum(start <= a.t < end for a in srv.attempts)
    in_window = sum(start <= arrived[rid] < end for rid in answered_ids)
    allowed = rpm / 60 * seconds
    seen = ", ".join(f"{kind} {n}" for kind, n in outcomes.most_common())
    return [
        f"### Our own limiter against a healthy server ({threads} threads, `rpm={rpm}`, `max_concurrency=8`, "
        f"`Timeouts(1, 2, 3)`, {seconds:g} s, one run)",
        "",
        f"{sent_in_window} requests reached the server in the {seconds:g} s window, and {in_window} of them "
        f"brought an answer: {in_window / allowed:.0%} of the {allowed:.0f} requests that `rpm` allows in "
        f"{seconds:g} s. Every call's outcome (the calls still waiting at the end included): {seen}.",
    ]


# ----------------------------------------------------------------------- amplification


def amplification_section(calls: int = 100) -> list[str]:
    results: dict[str, list[float]] = {"LLMClient": [], "naive loop": [], "openai": []}
    for _ in range(RUNS):
        for kind in results:
            with FakeLLMServer(default="503", latency=0) as srv:
                if kind == "LLMClient":
                    no_breaker = {"breaker_failures": 10**6, "breaker_failure_rate": None}
                    with llm_client(srv.url, backoff_base=0.001, backoff_cap=0.01, **no_breaker) as c:
                        for _ in range(calls):
                            with contextlib.suppress(errors.LLMError):
                                c.chat(MESSAGES)
                elif kind == "openai":
                    import openai

                    sdk = openai.OpenAI(base_url=srv.url, api_key="unused")
                    sdk._calculate_retry_timeout = lambda *a, **k: 0.001  # same work, without its sleeps
                    for _ in range(calls):
                        with contextlib.suppress(openai.APIError):
                            sdk.chat.completions.create(model="fake-mini", messages=MESSAGES)
                else:
                    for _ in range(calls):
                        naive_call(srv.url)
                results[kind].append(len(srv.attempts) / calls)
    rows = [f"| {kind} | {median(values):.2f} |" for kind, values in results.items()]
    return [
        f"### Amplification during a full outage (every request 503, {calls} calls, median of {RUNS})",
        "",
        "| client | requests sent per logical call |",
        "|---|---|",
        *rows,
        "",
        "`LLMClient` uses its default adaptive throttle (retries only while at least half of the",
        "requests succeed) and its breaker is disabled here, to measure the throttle alone; the",
        "breaker would stop sending after a few failed calls. The openai row has its backoff",
        "sleeps shortened (its request count is unchanged).",
    ]


# ---------------------------------------------------------------------- time to give up

GIVE_UP_FAULTS = {  # fault -> column heading
    "hang": "`hang`",
    "trickle:0.2": "`trickle:0.2` (one body byte every 0.2 s)",
    "header_trickle:0.3": "`header_trickle:0.3` (one header line every 0.3 s)",
    "chunked_stall": "`chunked_stall` (a trailer that never ends)",
}
GIVE_UP_KINDS = ("LLMClient", "naive loop", "openai", "requests")


def give_up_s(kind: str, fault: str, budget_s: float, limit_s: float) -> float:
    """Seconds until ``kind`` gives up on ``fault`` with a ``budget_s`` budget."""

    def call(url: str) -> None:
        if kind == "LLMClient":
            with llm_client(url, timeouts=Timeouts(budget_s, budget_s, budget_s)) as c:
                c.chat(MESSAGES)
        elif kind == "openai":
            with openai_client(url, timeout=budget_s) as sdk:
                sdk.chat.completions.create(model="fake-mini", messages=MESSAGES)
        elif kind == "naive loop":
            naive_call(url, timeout=(budget_s, budget_s))
        else:
            requests.post(f"{url}/chat/completions", json=PAYLOAD, timeout=(budget_s, budget_s))

    return time_to_give_up(call, fault, limit_s, f"give-up {kind} {fault}")


def time_to_give_up(call: Callable[[str], Any], fault: str, limit_s: float, name: str) -> float:
    """Seconds until ``call(url)`` ends against a server answering ``fault`` (inf if it
    was still waiting after ``limit_s``; the server is then stopped, which ends every
    connection, and the abandoned client must finish before this returns)."""
    srv = FakeLLMServer(default=fault, latency=0).start()
    finished = threading.Event()
    took: list[float] = []

    def run() -> None:
        start = time.monotonic()
        with contextlib.suppress(Exception):  # giving up is the point; how long it took is the figure
            call(srv.url)
        took.append(time.monotonic() - start)
        finished.set()

    worker = threading.Thread(target=run, name=name, daemon=True)
    worker.start()
    done = finished.wait(limit_s)
    srv.stop()
    worker.join(limit_s)  # with no server left, every client fails fast (openai after its backoff)
    if worker.is_alive():
        raise RuntimeError(f"{name}: still running {limit_s:g} s after its server stopped")
    return took[0] if done else float("inf")


def give_up_section(
    faults: tuple[str, ...] = tuple(GIVE_UP_FAULTS), budget_s: float = 2.0, limit_s: float = 10.0, runs: int = RUNS
) -> list[str]:
    pairs = [(kind, fault) for fault in faults for kind in GIVE_UP_KINDS]
    measured: dict[tuple[str, str], list[float]] = {pair: [] for pair in pairs}
    for _ in range(runs):
        with ThreadPoolExecutor(len(pairs)) as pool:  # the clients only wait, so they wait side by side
            took = pool.map(lambda pair: give_up_s(*pair, budget_s, limit_s), pairs)
            for pair, seconds in zip(pairs, took, strict=True):
                measured[pair].append(seconds)

    def cell(values: list[float]) -> str:
        value = median(values)
        return f"> {limit_s:g} s (still waiting)" if value == float("inf") else f"{value:.2f} s"

    rows = [f"| {kind} | " + " | ".join(cell(measured[kind, f]) for f in faults) + " |" for kind in GIVE_UP_KINDS]
    return [
        f"### Time to give up with a {budget_s:g} s budget (median of {runs}; cut off at {limit_s:g} s)",
        "",
        "| client | " + " | ".join(GIVE_UP_FAULTS.get(f, f"`{f}`") for f in faults) + " |",
        "|---" * (len(faults) + 1) + "|",
        *rows,
        "",
        f"The budget is `Timeouts({budget_s:g}, {budget_s:g}, {budget_s:g})` for LLMClient, "
        f"`timeout={budget_s:g}` for openai and `timeout=({budget_s:g}, {budget_s:g})` for requests.",
        f"`header_trickle` sends {MAX_FILLER_HEADERS} header lines before the body; `chunked_stall` a whole body,",
        f"then a trailer line every {TRAILER_EVERY_S:g} s and never the closing blank line. A client cut off at",
        "the cap is freed by stopping its server, and has ended before the next run starts.",
    ]


# ------------------------------------------------------------------------ the sweep


def sweep_section() -> list[str]:
    """Answered share, requests per call and p95 against 0-100% of 503, 429 or hang."""
    import sweep  # bench/sweep.py: it imports the clients above from this module, as `run`

    return sweep.sweep_section(FIGURES / "fault_sweep.png")


def outage_section() -> list[str]:
    """A warm client's first 10 s of a 503 outage."""
    import outage  # bench/outage.py

    return outage.outage_section()


def stream_give_up_section() -> list[str]:
    """Time to give up on a stalled, late or keep-alive-only stream."""
    import streams  # bench/streams.py

    return streams.stream_give_up_section()


def reembed_section() -> list[str]:
    """Requests and cost to re-embed a corpus with a few lines changed."""
    import streams

    return streams.reembed_section()


def shared_limit_section() -> list[str]:
    """4 processes x 8 threads against a server limit, with one budget on Redis and without."""
    import processes  # bench/processes.py

    return processes.shared_limit_section()


def shared_cache_section() -> list[str]:
    """Requests sent for 4 processes x 200 calls over 200 prompts, through a Redis cache."""
    import processes

    return processes.shared_cache_section()


def redis_killed_section() -> list[str]:
    """Calls with a deadline while Redis is killed and started again."""
    import processes

    return processes.redis_killed_section()


def shared_overhead_section() -> list[str]:
    """Per-call time of the shared limiter against the local one."""
    import processes

    return processes.shared_overhead_section()


SECTIONS: list[Callable[[], list[str]]] = [
    overhead_section,
    goodput_section,
    contention_section,
    amplification_section,
    give_up_section,
    stream_give_up_section,
    reembed_section,
    shared_limit_section,
    shared_cache_section,
    redis_killed_section,
    shared_overhead_section,
    outage_section,
    sweep_section,
]


def main(argv: list[str] | None = None) -> int:
    """All sections, written to bench/RESULTS.md; or only the sections named on the command
    line (``python bench/run.py give_up``), printed and not written (figures go to a
    temporary folder)."""
    global FIGURES
    names = sys.argv[1:] if argv is None else argv
    by_name = {section.__name__.removesuffix("_section"): section for section in SECTIONS}
    if unknown := [name for name in names if name not in by_name]:
        print(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(by_name)}", file=sys.stderr)
        return 2
    if names:
        FIGURES = Path(tempfile.mkdtemp(prefix="bench-"))
    started = time.monotonic()
    lines = [
        "# Benchmarks",
        "",
        f"Machine: {machine()}. Every figure is the median of {RUNS} runs in one process, except the",
        "fault sweep's and those of the sections that say (one run), which start several processes.",
        "",
    ]
    for section in [by_name[name] for name in names] or SECTIONS:
        part = section()
        print("\n".join(part) + "\n", flush=True)
        lines += [*part, ""]
    took = time.monotonic() - started
    if names:
        print(f"{', '.join(names)} in {took:.0f} s (bench/RESULTS.md not written; figures, if any, in {FIGURES})")
        return 0
    lines.append(f"Total time: {took:.0f} s. Rerun with `make bench`.")
    Path(__file__).with_name("RESULTS.md").write_text("\n".join(lines) + "\n")
    print(f"written to bench/RESULTS.md in {took:.0f} s")
    return 0


if __name__ == "__main__":
    sys.modules.setdefault("run", sys.modules[__name__])  # bench/sweep.py's `import run` finds this module
    sys.exit(main())
