"""The fault sweep of `make bench` (issue 12): three clients against a growing share of failures.

For each fault kind (503; 429 with and without a Retry-After hint; hang) and each share
of failures in SHARES, every client gets its own fake server answering ``ok`` or the
fault, and THREADS threads making the point's logical calls. Draws are paired: call i
asks its own question, and the server gives that question's n-th request the same fault
for every client. Per point and client: the share of calls answered, the requests the
server received per logical call, and the 95th percentile of call latency (answered or
not).

The clients are run.py's: ``LLMClient`` (its defaults but for the backoff and the
timeouts), the official ``openai`` package (its defaults but for the backoff and the
timeout) and the naive 4-attempt loop (no backoff to shorten). Points that use the CPU
run one client after another; the hang points, which spend their time waiting for
timeouts, run side by side (each client against its own server).

Run it alone with ``python bench/run.py sweep``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from run import MESSAGES, llm_client, naive_call, openai_client

from week04_lib import ClientConfig, Timeouts
from week04_lib.fakeserver import FakeLLMServer

SHARES = (0, 5, 10, 20, 30, 50, 70, 90, 100)  # % of requests that meet the fault
THREADS = 8
CLIENTS = ("LLMClient", "openai", "naive loop")
BACKOFF_SCALE = 0.1  # every client's own backoff sleeps, shortened alike (Retry-After hints are not)
HINT_MS = 100  # the Retry-After of the hinted half of the 429s
WINDOW_S = 10.0  # "the first seconds of an outage", measured at 100% 503
SLEEPERS_AT_ONCE = 12  # hang runs (one client at one share) side by side
SEED = 12_000
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(ClientConfig)}
BACKOFF = {name: _DEFAULTS[name] * BACKOFF_SCALE for name in ("backoff_base", "backoff_cap")}


@dataclass(frozen=True)
class Kind:
    """One fault kind: the faults (and their weights within the failing share) and the
    settings every client gets against it."""

    name: str
    title: str
    faults: dict[str, float]
    calls: int  # logical calls a point
    calls_at_100: int
    timeouts: Timeouts  # LLMClient
    openai_timeout: Any  # seconds or httpx.Timeout
    naive_timeout: tuple[float, float]
    naive_deadline_s: float | None = None
    deadline_s: float | None = None  # an answer later than this (+ SLACK_S) is not answered in time
    waits: bool = False  # its points spend their time waiting: run them side by side

    def mix(self, share: int) -> dict[str, float]:
        return {"ok": 1 - share / 100, **{fault: weight * share / 100 for fault, weight in self.faults.items()}}

    def n_calls(self, share: int) -> int:
        return self.calls_at_100 if share == 100 else self.calls


SLACK_S = 0.05  # scheduling noise: an answer later than the deadline plus this missed it
STANDARD = Timeouts.preset("standard")
KINDS = (
    Kind("503", "503", {"503": 1.0}, 400, 1000, STANDARD, 30.0, (5, 30)),
    Kind(
        "429",
        f"429, half with `retry-after-ms={HINT_MS}`, half without a hint",
        {f"429:retry-after-ms={HINT_MS}": 0.5, "429": 0.5},
        400,
        1000,
        STANDARD,
        30.0,
        (5, 30),
    ),
    Kind(
        "hang",
        "hang (accept, never answer); an answer later than the 2 s deadline (+0.05 s) is not counted as answered",
        {"hang": 1.0},
        100,
        100,
        Timeouts(connect=1, read=1, total=2),
        httpx.Timeout(2, read=1),
        (1, 1),
        naive_deadline_s=2.0,
        deadline_s=2.0,
        waits=True,
    ),
)


@dataclass
class Point:
    """What one client did at one share of one fault kind."""

    kind: str
    share: int
    client: str
    calls: int
    answered: int
    requests: int
    p95_s: float
    took_s: float
    errors: Counter[str] = field(default_factory=Counter)
    window: tuple[int, int] = (0, 0)  # calls started and requests received in the first WINDOW_S

    @property
    def answered_share(self) -> float:
        return self.answered / self.calls

    @property
    def per_call(self) -> float:
        return self.requests / self.calls


# ---------------------------------------------------------------------- measuring


@contextlib.contextmanager
def caller(client: str, kind: Kind, url: str) -> Iterator[Callable[[int], Any]]:
    """Logical call number ``i`` of ``client``, as a function of ``i`` that returns or raises.
    Each call asks its own question, so a server drawing faults per prompt (``paired``)
    gives call ``i`` the same faults whichever client makes it."""
    if client == "LLMClient":
        with llm_client(url, timeouts=kind.timeouts, **BACKOFF) as llm:
            yield lambda i: llm.chat(question(i))
    elif client == "openai":
        with openai_client(url, timeout=kind.openai_timeout, backoff_scale=BACKOFF_SCALE) as sdk:
            yield lambda i: sdk.chat.completions.create(model="fake-mini", messages=question(i))
    else:

        class GaveUp(Exception):
            pass

        def naive(i: int) -> None:
            if not naive_call(url, timeout=kind.naive_timeout, deadline_s=kind.naive_deadline_s, messages=question(i)):
                raise GaveUp

        yield naive


def question(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"{MESSAGES[0]['content']} (call {i})"}]


def timed(call: Callable[[int], Any], i: int) -> tuple[float, float, str | None]:
    start = time.monotonic()
    try:
        call(i)
        error = None
    except Exception as exc:  # every client's own failure: it counts as not answered
        error = type(exc).__name__
    return start, time.monotonic(), error


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[-1]


def run_point(kind: Kind, share: int, client: str) -> Point:
    n = kind.n_calls(share)
    seed = SEED + 100 * KINDS.index(kind) + share  # with paired draws: the same faults call by call
    with FakeLLMServer(mix=kind.mix(share), seed=seed, paired=True, latency=0) as srv:
        with caller(client, kind, srv.url) as call, ThreadPoolExecutor(THREADS) as pool:
            rows = list(pool.map(lambda i: timed(call, i), range(n)))
        arrivals = [a.t for a in srv.attempts]
    if kind.deadline_s is not None:  # the same deadline for all: openai cannot hold one itself
        late = kind.deadline_s + SLACK_S
        rows = [(start, end, "late (past the deadline)" if error is None and end - start > late else error)
                for start, end, error in rows]  # fmt: skip
    t0 = min(start for start, _, _ in rows)
    point = Point(
        kind.name,
        share,
        client,
        n,
        answered=sum(error is None for *_, error in rows),
        requests=len(arrivals),
        p95_s=p95([end - start for start, end, _ in rows]),
        took_s=max(end for _, end, _ in rows) - t0,
        errors=Counter(error for *_, error in rows if error is not None),
        window=(
            sum(start < t0 + WINDOW_S for start, _, _ in rows),
            sum(t < t0 + WINDOW_S for t in arrivals),
        ),
    )
    print(
        f"sweep {kind.name:>4} {share:>3}% {client:<10} {point.answered_share:7.1%} answered, "
        f"{point.per_call:.2f} requests/call, p95 {point.p95_s:.3f} s, {point.took_s:.1f} s",
        file=sys.stderr,
        flush=True,
    )
    return point


def sweep(kinds: tuple[Kind, ...] = KINDS) -> dict[tuple[str, int, str], Point]:
    """Every point: the CPU-bound ones one at a time, then the waiting ones side by side
    (longest first). A share of 0 uses the CPU whatever the kind."""
    jobs = [(kind, share, client) for kind in kinds for share in SHARES for client in CLIENTS]
    alone = [job for job in jobs if not (job[0].waits and job[1] > 0)]
    together = sorted((job for job in jobs if job not in alone), key=lambda job: (-job[1], CLIENTS.index(job[2])))
    points = [run_point(*job) for job in alone]
    with ThreadPoolExecutor(SLEEPERS_AT_ONCE) as pool:
        points += pool.map(lambda job: run_point(*job), together)
    return {(p.kind, p.share, p.client): p for p in points}


# ------------------------------------------------------------------------ reporting


def seconds(value: float) -> str:
    return f"{value:.3f}" if value < 1 else f"{value:.2f}"


def table(kind: Kind, points: dict[tuple[str, int, str], Point]) -> list[str]:
    rows = []
    for share in SHARES:
        cells = [points[kind.name, share, c] for c in CLIENTS]
        rows.append(
            f"| {share}% | "
            + " | ".join(f"{p.answered_share:.1%} / {p.per_call:.2f} / {seconds(p.p95_s)}" for p in cells)
            + " |"
        )
    settings = (
        f"LLMClient `{kind.timeouts}`, openai `timeout={kind.openai_timeout!r}`, naive loop "
        f"`timeout={kind.naive_timeout}`"
        + (
            f", no attempt started after {kind.naive_deadline_s:g} s and each cut to the time left"
            if kind.naive_deadline_s
            else ""
        )
    )
    calls = f"{kind.calls} calls a point" + (
        f" ({kind.calls_at_100} at 100%)" if kind.calls_at_100 != kind.calls else ""
    )
    return [
        f"#### {kind.title}: {calls}",
        "",
        "| failure share | " + " | ".join(f"{c}: answered / requests per call / p95 s" for c in CLIENTS) + " |",
        "|---" * (len(CLIENTS) + 1) + "|",
        *rows,
        "",
        f"Timeouts: {settings}.",
        *checks(kind, points),
        "",
    ]


def checks(kind: Kind, points: dict[tuple[str, int, str], Point]) -> list[str]:
    """Where LLMClient answers fewer calls than the naive loop minus 2 points or than
    openai (shares up to 50%), and why its unanswered calls failed."""
    short = []
    for share in (s for s in SHARES if s <= 50):
        mine, sdk, naive = (points[kind.name, share, c] for c in ("LLMClient", "openai", "naive loop"))
        if mine.answered_share < naive.answered_share - 0.02 or mine.answered_share < sdk.answered_share:
            short.append(
                f"{share}% ({mine.answered_share:.1%} against {naive.answered_share:.1%} naive, "
                f"{sdk.answered_share:.1%} openai)"
            )
    failed = [
        f"{share}%: " + ", ".join(f"{name} {count}" for name, count in p.errors.most_common())
        for share in SHARES
        if (p := points[kind.name, share, "LLMClient"]).errors
    ]
    return [
        "At shares up to 50%, LLMClient answers fewer calls than the naive loop minus 2 points, "
        "or than openai, at: " + ("; ".join(short) if short else "none") + ".",
        "LLMClient's unanswered calls, by error: " + ("; ".join(failed) if failed else "none") + ".",
    ]


def window_lines(points: dict[tuple[str, int, str], Point]) -> list[str]:
    rows = []
    for client in CLIENTS:
        p = points["503", 100, client]
        calls, requests = p.window
        rows.append(
            f"| {client} | {requests / max(calls, 1):.2f} ({requests} / {calls}) | {p.per_call:.2f} "
            f"({p.requests} / {p.calls}) | {p.took_s:.1f} s |"
        )
    return [
        f"#### Every request 503: the first {WINDOW_S:g} s against the whole run",
        "",
        f"| client | requests per call in the first {WINDOW_S:g} s (requests / calls started) "
        "| requests per call, whole run | the run lasted |",
        "|---|---|---|---|",
        *rows,
        "",
        f"From the 100% point of the 503 table; a run shorter than {WINDOW_S:g} s is all first seconds.",
        "",
    ]


def figure(points: dict[tuple[str, int, str], Point], kinds: tuple[Kind, ...], path: Path) -> None:
    """Two panels a fault kind (a row each): answered, and requests per call, against the share."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from week04_lib.plots import COLORS, use_style

    use_style()
    looks = {
        "LLMClient": (COLORS["neutral"], "o", "-"),
        "openai": (COLORS["accent"], "s", "--"),
        "naive loop": (COLORS["bad"], "^", ":"),
    }
    fig, axes = plt.subplots(len(kinds), 2, figsize=(7.2, 2.3 * len(kinds)), sharex=True, squeeze=False)
    most = max(p.per_call for p in points.values())
    for row, kind in zip(axes, kinds, strict=True):
        for client in CLIENTS:
            color, marker, style = looks[client]
            found = [points[kind.name, share, client] for share in SHARES]
            look = {"color": color, "marker": marker, "linestyle": style, "markersize": 4, "label": client}
            row[0].plot(SHARES, [100 * p.answered_share for p in found], **look)
            row[1].plot(SHARES, [p.per_call for p in found], **look)
        row[0].set_ylim(-3, 103)
        row[0].set_ylabel(f"{kind.name}\nanswered (%)")
        row[1].set_ylim(0, most * 1.05)  # one scale for every kind
        row[1].set_ylabel("requests per call")
    axes[0][0].set_title("Calls answered")
    axes[0][1].set_title("Requests per logical call")
    axes[0][1].legend(loc="upper left")
    for ax in axes[-1]:
        ax.set_xlabel("share of requests that fail (%)")
    fig.savefig(path)
    plt.close(fig)


def sweep_section(figure_path: Path) -> list[str]:
    started = time.monotonic()
    points = sweep()
    figure(points, KINDS, figure_path)
    took = time.monotonic() - started
    return [
        f"### Fault sweep: answered, requests per call, p95 against a share of failures ({THREADS} threads, one run)",
        "",
        f"![answered and requests per call against the share of failures]({figure_path.name})",
        "",
        "Each cell: share of logical calls answered / requests the fake server received per logical call /",
        "95th percentile of call latency in seconds, answered or not. Every client at every point has its own",
        "fake server (`latency=0`) answering `ok` or the fault in the table's title, drawn per question",
        "(`paired=True`): call i's n-th request meets the same fault for the three clients.",
        "`LLMClient` runs with `ClientConfig` defaults except the timeouts named under",
        f"each table and the backoff: every client's own backoff is shortened to {BACKOFF_SCALE:g} of its default",
        f"(`LLMClient`: `backoff_base={BACKOFF['backoff_base']:g}`, `backoff_cap={BACKOFF['backoff_cap']:g}`;",
        "openai: each backoff sleep it computes times the same factor, a Retry-After it honours as sent;",
        "the naive loop retries at once and has none). openai keeps `max_retries=2`; the naive loop makes",
        "up to 4 attempts. The 503 and 429 points ran one client at a time; the hang points above 0%, which",
        f"wait on timeouts, ran up to {SLEEPERS_AT_ONCE} client runs side by side.",
        "",
        *(line for kind in KINDS for line in table(kind, points)),
        *window_lines(points),
        f"The sweep took {took:.0f} s.",
    ]
