"""State shared by processes through Redis (issue 15), measured with real processes.

- ``shared_limit``: 4 processes x 8 threads, each process's client at ``rpm=R``, against a
  server whose own limit is R: one budget on Redis against one budget per process.
- ``shared_cache``: 4 processes asking the same 200 prompts in the same order at the same
  moment: requests sent with a Redis cache and cross-process single-flight, and with the
  cache alone.
- ``redis_killed``: calls with a 2 s deadline while Redis is killed and started again.
- ``shared_overhead``: per-call time with the shared limiter against the local one.

The processes are started with "spawn" and run the workers below (``bench/`` is on their
``sys.path``; this file is bench/processes.py); each builds its client, then waits at a barrier, so every window starts
when all of them are ready. Run them alone with ``python bench/run.py shared_limit``.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import random
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from run import MESSAGES, RUNS, llm_client, median

from week04_lib import Timeouts, errors
from week04_lib.fakeserver import FakeLLMServer
from week04_lib.shared import SharedStateWarning
from week04_lib.shared.server import RedisServer

SPAWN = mp.get_context("spawn")
CHAT = "/chat/completions"
START_LIMIT_S = 60.0  # the longest a process may take to start and build its client


# ------------------------------------------------------------------- processes


class Workers:
    """One spawned process per job, each running ``target(barrier, results, *job)``; they
    build their clients, then wait at the barrier until ``release()``."""

    def __init__(self, target: Callable[..., None], jobs: list[tuple[Any, ...]]) -> None:
        self.barrier, self.queue = SPAWN.Barrier(len(jobs) + 1), SPAWN.Queue()
        self.processes = [
            SPAWN.Process(target=target, args=(self.barrier, self.queue, *job), daemon=True) for job in jobs
        ]

    def __enter__(self) -> Workers:
        for process in self.processes:
            process.start()
        return self

    def release(self) -> float:
        """Let every process go; the moment they went (the monotonic clock, which on one
        machine is theirs and the fake server's too)."""
        self.barrier.wait(START_LIMIT_S)
        return time.monotonic()

    def results(self, wait_s: float) -> list[Any]:
        """What each process put on its queue, in the order they finished."""
        return [self.queue.get(timeout=wait_s) for _ in self.processes]

    def __exit__(self, *exc: object) -> None:
        for process in self.processes:
            process.join(5)
            if process.is_alive():  # one of ours that did not finish: end it, by its own handle
                process.terminate()
                process.join()


def run_processes(target: Callable[..., None], jobs: list[tuple[Any, ...]], wait_s: float) -> tuple[float, list[Any]]:
    """Start the processes, release them together: the moment, and their results."""
    with Workers(target, jobs) as workers:
        released = workers.release()
        return released, workers.results(wait_s)


def outcome(call: Callable[[], Any]) -> str:
    """How ``call()`` ended: "answered", an LLMError's class name, or "other: <class>"."""
    try:
        call()
    except errors.LLMError as exc:
        return type(exc).__name__
    except Exception as exc:  # must not happen; counted, not hidden
        return f"other: {type(exc).__name__}"
    return "answered"


def quiet_logs() -> None:
    """The client's warnings (a 429, Redis down) would go to stderr; the bench counts them."""
    logging.getLogger("week04_lib").addHandler(logging.NullHandler())
    logging.getLogger("week04_lib").propagate = False


def seen(outcomes: Counter[str]) -> str:
    return ", ".join(f"{kind} {n}" for kind, n in sorted(outcomes.items(), key=lambda kv: -kv[1])) or "none"


# ------------------------------------------------------------------ shared limit


def limit_worker(barrier: Any, results: Any, url: str, settings: dict[str, Any], seconds: float, threads: int) -> None:
    """``threads`` threads calling for ``seconds`` after the barrier; the outcome of every
    call started in that window."""
    quiet_logs()
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    with llm_client(url, **settings) as client:
        barrier.wait(START_LIMIT_S)
        end = time.monotonic() + seconds

        def worker(_: int) -> None:
            while time.monotonic() < end:
                kind = outcome(lambda: client.chat(MESSAGES, temperature=0, cache=False))
                with lock:
                    outcomes[kind] += 1

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(worker, range(threads)))
    results.put(outcomes)


def limit_run(shared: str | None, rpm: int, seconds: float, processes: int, threads: int) -> dict[str, Any]:
    with FakeLLMServer(rpm=rpm, burst_s=1.0, latency=0.03) as srv:
        settings = {"rpm": rpm, "timeouts": Timeouts(2, 5, 10), "shared": shared}
        job = (srv.url, settings, seconds, threads)
        start, answers = run_processes(limit_worker, [job] * processes, wait_s=seconds + 60)
        sent = [a for a in srv.attempts if a.path.endswith(CHAT)]
    in_window = [a for a in sent if start <= a.t < start + seconds]
    return {
        "answered_in_window": sum(a.fault == "ok" for a in in_window),
        "refused_in_window": sum(a.fault == "rate_limited" for a in in_window),
        "refused": sum(a.fault == "rate_limited" for a in sent),
        "sent": len(sent),
        "calls": sum(answers, Counter()),
    }


def shared_limit_section(rpm: int = 600, seconds: float = 20.0, processes: int = 4, threads: int = 8) -> list[str]:
    allowed = rpm / 60 * seconds
    rows = []
    with RedisServer() as redis:
        for label, shared in (("shared limiter (Redis)", redis.url), ("one limiter per process", None)):
            r = limit_run(shared, rpm, seconds, processes, threads)
            calls: Counter[str] = r["calls"]
            failed = Counter({kind: n for kind, n in calls.items() if kind != "answered"})
            rows.append(
                f"| {label} | {r['answered_in_window']} ({r['answered_in_window'] / allowed:.1%}) "
                f"| {r['refused_in_window']} | {r['refused']} | {r['sent']} "
                f"| {calls['answered']} | {sum(failed.values())}{': ' + seen(failed) if failed else ''} |"
            )
    return [
        f"### {processes} processes x {threads} threads, each process's client at `rpm={rpm}`, against a server "
        f"limit of R = {rpm} RPM ({seconds:g} s window, one run)",
        "",
        f"| variant | 200s in the window (share of R x {seconds:g} s = {allowed:.0f}) | 429s in the window "
        "| 429s in all | requests in all | calls answered | calls failed, by error |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        "The server's bucket holds 1 s of its budget and starts full; its answers take 0.03 s. The window",
        "opens when every process has built its client; the calls started in it are counted to their end",
        '(`Timeouts(2, 5, 10)`, default retries), so "in all" includes the few seconds after the window.',
    ]


# ------------------------------------------------------------------ shared cache


def cache_prompts(n: int) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": f"Question {i}: what does a circuit breaker protect?"}] for i in range(n)]


def cache_worker(barrier: Any, results: Any, url: str, settings: dict[str, Any], prompts: int) -> None:
    """One call per prompt, in order, from the barrier on: outcomes, and how many were cached."""
    quiet_logs()
    outcomes: Counter[str] = Counter()
    with llm_client(url, **settings) as client:
        barrier.wait(START_LIMIT_S)
        started = time.monotonic()
        for messages in cache_prompts(prompts):
            answer: list[Any] = []
            outcomes[outcome(lambda m=messages, a=answer: a.append(client.chat(m, temperature=0)))] += 1
            outcomes["from the cache"] += bool(answer and answer[0].cached)
        took = time.monotonic() - started
    results.put((outcomes, took))


def cache_run(
    redis: RedisServer, with_shared: bool, prompts: int, processes: int
) -> tuple[int, int, Counter[str], float]:
    redis.client().flushall()  # no answer left from the other variant
    with FakeLLMServer(latency=0.03) as srv:
        settings = {"cache": redis.url, "shared": redis.url if with_shared else None}
        _, answers = run_processes(cache_worker, [(srv.url, settings, prompts)] * processes, wait_s=120)
        sent = sum(a.path.endswith(CHAT) for a in srv.attempts)
        billed = srv.billed_requests
    return sent, billed, sum((calls for calls, _ in answers), Counter()), max(took for _, took in answers)


def shared_cache_section(prompts: int = 200, processes: int = 4) -> list[str]:
    rows = []
    with RedisServer() as redis:
        variants = (("Redis cache + `shared` (single-flight across processes)", True), ("Redis cache alone", False))
        for label, with_shared in variants:
            sent, billed, calls, took = cache_run(redis, with_shared, prompts, processes)
            failed = Counter({k: n for k, n in calls.items() if k not in ("answered", "from the cache")})
            rows.append(
                f"| {label} | {sent} | {billed} | {calls['answered']} | {calls['from the cache']} "
                f"| {sum(failed.values())}{': ' + seen(failed) if failed else ''} | {took:.1f} s |"
            )
    return [
        f"### A cache shared by {processes} processes: {processes} x {prompts} calls over {prompts} distinct "
        "prompts, same order, same start (one run)",
        "",
        f"| variant | requests the server received (for {processes * prompts} calls) | billed "
        f"| calls answered | of them from the cache | calls failed | slowest process's {prompts} calls |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        "Each process calls one prompt after the other (`temperature=0`) from the moment all are ready, so",
        "the processes ask for the same prompt at about the same time; the server answers in 0.03 s.",
    ]


# ------------------------------------------------------------------ redis killed

KILLED_POOL = 200  # prompts the calls draw from: some are cache hits, some meet in flight
DEADLINE = Timeouts(2, 2, 2)


def killed_worker(
    barrier: Any, results: Any, url: str, redis_url: str, seconds: float, threads: int, seed: int
) -> None:
    """``threads`` threads calling for ``seconds``: each call's start (after the barrier),
    duration and outcome; and the warnings and log records about Redis."""
    records: list[tuple[float, float, str]] = []
    events: Counter[str] = Counter()

    class Count(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            events[getattr(record, "event", record.levelname)] += 1

    quiet_logs()
    heard = logging.getLogger("week04_lib.shared")
    heard.setLevel(logging.INFO)  # "back" is an info record
    heard.addHandler(Count())
    lock = threading.Lock()
    settings = {"shared": redis_url, "cache": redis_url, "rpm": 1200, "timeouts": DEADLINE}
    with warnings.catch_warnings(record=True) as caught, llm_client(url, **settings) as client:
        warnings.simplefilter("always", SharedStateWarning)
        barrier.wait(START_LIMIT_S)
        zero = time.monotonic()
        end = zero + seconds
        prompts = cache_prompts(KILLED_POOL)

        def worker(i: int) -> None:
            rng = random.Random(seed * 100 + i)
            while time.monotonic() < end:
                messages = rng.choice(prompts)
                started = time.monotonic()
                kind = outcome(lambda m=messages: client.chat(m, temperature=0))
                with lock:
                    records.append((started - zero, time.monotonic() - started, kind))

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(worker, range(threads)))
    events["SharedStateWarning"] = sum(issubclass(w.category, SharedStateWarning) for w in caught)
    results.put((records, events))


PHASES = ("before the kill", "while Redis is down", "after the restart")


def phase_of(began: float, kill_at: float, back_at: float) -> str:
    return PHASES[0] if began < kill_at else PHASES[1] if began < back_at else PHASES[2]


def redis_killed_section(
    processes: int = 2, threads: int = 4, up_s: float = 3.0, down_s: float = 3.0, after_s: float = 3.0
) -> list[str]:
    seconds = up_s + down_s + after_s
    with RedisServer() as redis, FakeLLMServer(latency=(0.1, 1.0)) as srv:
        jobs = [(srv.url, redis.url, seconds, threads, seed) for seed in range(processes)]
        with Workers(killed_worker, jobs) as workers:
            start = workers.release()
            time.sleep(up_s)
            redis.kill()
            kill_at = time.monotonic() - start
            time.sleep(down_s)
            redis.start()
            back_at = time.monotonic() - start
            per_process = workers.results(wait_s=seconds + 60)
    calls: dict[str, list[tuple[float, str]]] = {phase: [] for phase in PHASES}
    events: Counter[str] = Counter()
    for records, heard in per_process:
        events += heard
        for began, took, kind in records:
            calls[phase_of(began, kill_at, back_at)].append((took, kind))
    rows = []
    for phase, done in calls.items():
        kinds = Counter(kind for _, kind in done)
        failed = Counter({k: n for k, n in kinds.items() if k != "answered" and not k.startswith("other")})
        others = sum(n for k, n in kinds.items() if k.startswith("other"))
        overrun = max((took - DEADLINE.total for took, _ in done), default=float("nan"))
        rows.append(
            f"| {phase} | {len(done)} | {kinds['answered']} | {sum(failed.values())}"
            f"{': ' + seen(failed) if failed else ''} | {others} | {overrun:+.3f} s |"
        )
    everything = [took for done in calls.values() for took, _ in done]
    return [
        f"### Redis killed mid-run: {processes} processes x {threads} threads, `Timeouts(2, 2, 2)`, "
        "`shared` and `cache` on Redis (one run)",
        "",
        "| calls started | calls | ChatResult | LLMError | other exception | worst (end - start) - deadline |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        f"Redis was killed {kill_at:.1f} s into the run and answered again {back_at:.1f} s in; the calls ran for "
        f"{seconds:g} s over {KILLED_POOL} prompts drawn at random (`temperature=0`, `rpm=1200`), against a "
        "server answering in 0.1 s (median) to 1 s (p99). Worst overrun over all "
        f"{len(everything)} calls: {max(everything) - DEADLINE.total:+.3f} s. What the processes heard about "
        f"Redis, together: {seen(events)}.",
    ]


# ---------------------------------------------------------------- shared overhead


def alternating_per_call_s(calls: dict[str, Callable[[], Any]], n: int, block: int = 50) -> dict[str, float]:
    """Seconds per call of each, measured in alternating blocks, so a slow moment of the
    machine hits every one alike."""
    spent = dict.fromkeys(calls, 0.0)
    for _ in range(n // block):
        for name, call in calls.items():
            start = time.perf_counter()
            for _ in range(block):
                call()
            spent[name] += time.perf_counter() - start
    return {name: seconds / (n // block * block) for name, seconds in spent.items()}


def shared_overhead_section(n: int = 300) -> list[str]:
    rows: dict[str, list[float]] = {"local": [], "shared": []}
    commands: list[float] = []
    scripts: list[float] = []
    with RedisServer() as redis:
        probe = redis.client()
        for _ in range(RUNS):
            with (
                FakeLLMServer(latency=0) as srv,
                llm_client(srv.url, rpm=10**6) as local,
                llm_client(srv.url, rpm=10**6, shared=redis.url) as shared,
            ):
                clients = {"local": local, "shared": shared}
                calls = {name: partial(c.chat, MESSAGES, temperature=0) for name, c in clients.items()}
                for call in calls.values():
                    call()  # warm up: connections, scripts loaded
                probe.config_resetstat()
                for name, seconds in alternating_per_call_s(calls, n).items():
                    rows[name].append(seconds)
                stats = probe.info("commandstats")
                commands.append(sum(v["calls"] for k, v in stats.items() if k != "cmdstat_config") / n)
                scripts.append(sum(stats.get(k, {}).get("calls", 0) for k in ("cmdstat_evalsha", "cmdstat_eval")) / n)
    ms = {k: median(v) * 1000 for k, v in rows.items()}
    ratios = [s / loc for s, loc in zip(rows["shared"], rows["local"], strict=True)]
    return [
        f"### Overhead of the shared limiter ({n} sequential calls each a run, in alternating blocks of 50; "
        f"fake server with latency=0, median of {RUNS})",
        "",
        "| LLMClient, `rpm=10**6` | ms per call | ratio to the local limiter (median of the runs') "
        "| Redis commands per call (those inside scripts included) | of them Lua scripts |",
        "|---|---|---|---|---|",
        f"| local limiter | {ms['local']:.2f} | 1.00 | 0 | 0 |",
        f"| `shared=redis://` (limiter and breaker state on Redis) | {ms['shared']:.2f} "
        f"| {median(ratios):.2f} | {median(commands):.1f} | {median(scripts):.1f} |",
        "",
        "Redis runs on this machine (loopback); across a network each round trip adds its latency.",
        f"The ratio of each of this run's {RUNS} runs: " + ", ".join(f"{r:.2f}" for r in ratios) + ".",
    ]
