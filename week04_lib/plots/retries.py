"""Plots of notebook 02: backoff schedules, recovery, attempts per call, the fault sweep."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

from .style import COLORS, _axes

STRATEGY_COLORS = {
    "none": COLORS["bad"],
    "full": COLORS["ok"],
    "equal": COLORS["accent"],
    "decorrelated": COLORS["neutral"],
}
_MARKERS = {"none": "o", "full": "s", "equal": "^", "decorrelated": "D"}
_SPARE = ("bad", "accent", "neutral", "limit")


def _strategy_style(name: str, index: int) -> tuple[str, str]:
    color = STRATEGY_COLORS.get(name, COLORS[_SPARE[index % len(_SPARE)]])
    return color, _MARKERS.get(name, "v")


def backoff_schedules(
    schedules: Mapping[str, Sequence[float]], cap: float | None = None, ax: Axes | None = None
) -> Axes:
    """The sleep before each retry, one line and marker set per strategy.

    ``schedules`` maps a strategy name to its delays (e.g. from ``backoff.schedule``);
    the legend gives each one's total sleep. ``cap`` draws the longest allowed sleep.
    Taught in notebook 02, section 2.3.
    """
    ax = _axes(ax)
    longest = 0
    for i, (name, delays) in enumerate(schedules.items()):
        color, marker = _strategy_style(name, i)
        attempts = range(1, len(delays) + 1)
        label = f"{name} ({sum(delays):.1f}s)"
        ax.plot(attempts, delays, color=color, marker=marker, markersize=5, linewidth=1.5, label=label)
        longest = max(longest, len(delays))
    if cap is not None:
        ax.axhline(cap, color=COLORS["limit"], linestyle="--", linewidth=1.2)
        ax.annotate(
            f"cap {cap:g}s",
            (0, cap),
            xycoords=("axes fraction", "data"),
            xytext=(3, 3),
            textcoords="offset points",
            fontsize=8,
            color=COLORS["limit"],
        )
    ax.set_xticks(range(1, longest + 1))
    ax.set_ylim(0, (cap if cap is not None else ax.get_ylim()[1]) * 1.12)
    ax.set_xlabel("retry number")
    ax.set_ylabel("sleep before the retry (s)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), title="strategy (total sleep)")
    ax.set_title("Backoff schedules (seeded)")
    return ax


def _timelines(results: Any) -> list[tuple[str, Sequence[float], str]]:
    """(name, call times, legend detail) from RecoveryResults or a mapping of times."""
    if isinstance(results, Mapping):
        return [(str(name), list(times), f"{len(times):,} requests") for name, times in results.items()]
    return [(r.strategy, r.call_times, f"{r.calls:,} calls, all done at {r.finished_s:.1f}s") for r in results]


def recovery_timeline(
    results: Any,
    ax: Axes | None = None,
    bin_s: float = 0.5,
    until_s: float | None = None,
    capacity_rps: float | None = None,
    outage_s: float | None = None,
    ymax: float | None = None,
) -> Axes:
    """Requests sent per time bin, one step line per strategy.

    ``results`` is a sequence of ``sim.RecoveryResult`` (the legend adds calls and the
    time the last client finished) or a mapping of label to request times in seconds.
    Without jitter the clients retry in lockstep: tall spikes with silence between;
    jitter spreads the same clients into a low, even stream. ``until_s`` cuts the x axis
    (a strategy still running there is marked "off the chart"); ``capacity_rps`` draws
    what the server can answer per bin; ``outage_s`` shades the outage; ``ymax`` cuts the
    y axis and writes the tallest count of each bin it cuts (the first storm dwarfs the rest).
    Taught in notebook 02, sections 2.1 and 2.5.
    """
    ax = _axes(ax)
    lines = _timelines(results)
    end = until_s if until_s is not None else max((max(t, default=0.0) for _, t, _ in lines), default=1.0)
    edges = np.arange(0.0, end + bin_s, bin_s)
    clipped: dict[int, int] = {}  # bin -> the tallest count cut off there
    for i, (name, times, detail) in enumerate(lines):
        color, _ = _strategy_style(name, i)
        counts, _ = np.histogram(np.asarray(times, dtype=float), bins=edges)
        beyond = until_s is not None and max(times, default=0.0) > until_s
        label = f"{name}: {detail}" + (" (off the chart)" if beyond else "")
        ax.stairs(counts, edges, color=color, linewidth=1.4, label=label)
        if ymax is not None:
            for b in np.flatnonzero(counts > ymax):
                clipped[int(b)] = max(clipped.get(int(b), 0), int(counts[b]))
    for b, height in clipped.items():
        ax.annotate(
            f"↑ {height}",
            (edges[b + 1], ymax),
            xytext=(2, -2),
            textcoords="offset points",
            va="top",
            fontsize=7,
            color=COLORS["muted"],
        )
    if capacity_rps is not None:
        per_bin = capacity_rps * bin_s
        ax.axhline(
            per_bin,
            color=COLORS["limit"],
            linestyle="--",
            linewidth=1.2,
            label=f"server capacity: {per_bin:g} per {bin_s:g}s",
        )
    if outage_s is not None:
        ax.axvspan(0, outage_s, color=COLORS["muted"], alpha=0.2, linewidth=0, label=f"outage ({outage_s:g}s)")
    ax.set_xlim(0, end)
    ax.set_ylim(0, ymax)
    ax.set_xlabel("seconds")
    ax.set_ylabel(f"requests per {bin_s:g}s")
    ax.legend(loc="upper right")
    ax.set_title("Requests over time")
    return ax


def attempts_per_call(runs: Mapping[str, Sequence[int]], ax: Axes | None = None) -> Axes:
    """Grouped bars: how many logical calls took 1, 2, 3 ... attempts, per run.

    ``runs`` maps a label (e.g. "no budget") to the attempts of each logical call; the
    legend gives the mean. Taught in notebook 02, section 2.7.
    """
    ax = _axes(ax)
    highest = max((max(a, default=1) for a in runs.values()), default=1)
    xs = np.arange(1, highest + 1)
    width = 0.8 / max(len(runs), 1)
    palette = [COLORS["bad"], COLORS["ok"], COLORS["neutral"], COLORS["accent"]]
    tallest = 1
    for i, (label, attempts) in enumerate(runs.items()):
        counts = np.array([sum(1 for a in attempts if a == x) for x in xs])
        tallest = max(tallest, int(counts.max(initial=0)))
        mean = float(np.mean(attempts)) if len(attempts) else 0.0
        offset = (i - (len(runs) - 1) / 2) * width
        bars = ax.bar(
            xs + offset,
            counts,
            width=width * 0.95,
            color=palette[i % len(palette)],
            alpha=0.85,
            label=f"{label}: {mean:.2f} attempts per call",
        )
        ax.bar_label(bars, labels=[str(c) if c else "" for c in counts], fontsize=8, padding=1)
    ax.set_xticks(xs)
    ax.set_ylim(0, tallest * 1.25)
    ax.set_xlabel("attempts for one logical call")
    ax.set_ylabel("logical calls")
    ax.grid(axis="x", visible=False)
    ax.legend(loc="upper center")
    ax.set_title("Attempts per call")
    return ax


def fault_sweep(
    runs: Mapping[str, Sequence[Mapping[str, float]]], axes: Sequence[Axes] | None = None
) -> tuple[Axes, Axes]:
    """Two panels against the share of failed requests: calls answered, requests per call.

    ``runs`` maps a label (a client or a configuration) to its rows, each with ``share``
    (% of requests that fail), ``answered`` (share of logical calls answered, 0 to 1) and
    ``requests per call``. Grey dashes show a client without retries (answers 1 - share,
    one request a call); the legend goes below the figure. ``axes``: two axes to draw on
    (a new wide figure when None); returns them. Taught in notebook 02, section 2.8.
    """
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(9.0, 3.2))
    answered_ax, cost_ax = axes[0], axes[1]
    palette = [COLORS["bad"], COLORS["ok"], COLORS["neutral"], COLORS["accent"], COLORS["limit"]]
    shares = sorted({float(row["share"]) for rows in runs.values() for row in rows}) or [0.0, 100.0]
    lo, hi = shares[0], shares[-1]
    answered_ax.plot(
        [lo, hi], [100 - lo, 100 - hi], color=COLORS["muted"], linestyle="--", linewidth=1, label="no retries"
    )
    cost_ax.axhline(1.0, color=COLORS["muted"], linestyle="--", linewidth=1, label="no retries")
    for i, (label, rows) in enumerate(runs.items()):
        ordered = sorted(rows, key=lambda row: row["share"])
        xs = [row["share"] for row in ordered]
        style = {"color": palette[i % len(palette)], "marker": "os^Dv"[i % 5], "markersize": 4, "label": label}
        answered_ax.plot(xs, [100 * row["answered"] for row in ordered], **style)
        cost_ax.plot(xs, [row["requests per call"] for row in ordered], **style)
    answered_ax.set_ylim(-3, 103)
    answered_ax.set_ylabel("calls answered (%)")
    answered_ax.set_title("Calls answered")
    cost_ax.set_ylim(bottom=0)
    cost_ax.set_ylabel("requests sent per call")
    cost_ax.set_title("Load on the service")
    for ax in (answered_ax, cost_ax):
        ax.set_xlabel("requests that fail (%)")
        ax.set_xticks(shares if len(shares) <= 12 else ax.get_xticks())
    handles, labels = answered_ax.get_legend_handles_labels()
    answered_ax.figure.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 3))
    return answered_ax, cost_ax


def _requests_so_far(ax: Axes, sorted_times: np.ndarray, until_s: float, **style: Any) -> None:
    """A step line: how many requests were sent by each moment, held flat until ``until_s``."""
    n = sorted_times.size
    ax.step(np.r_[sorted_times, until_s], np.r_[np.arange(1, n + 1), n], where="post", linewidth=2, **style)


def naive_retries(
    naive: Mapping[str, Sequence[float]],
    sensible: Mapping[str, Sequence[float]] | None = None,
    until_s: float = 1.0,
) -> list[Axes]:
    """Requests one logical call sends, one panel per server fault, on one log scale.

    ``naive`` maps a fault (e.g. "503") to the times of the requests the naive loop sent
    against it, in seconds from the first; each panel writes its rate in requests per
    second. ``sensible`` maps the same faults to the request times of a client that
    retries only transient errors and waits between tries: a handful of requests, which
    only a log axis shows next to the hundreds. Legend below. Returns the axes.
    Taught in notebook 02, section 2.1.
    """
    fig, axes = plt.subplots(1, len(naive), figsize=(6.4, 3.0), sharey=True)
    axes = list(np.atleast_1d(axes))
    for ax, (fault, times) in zip(axes, naive.items(), strict=True):
        t = np.sort(np.asarray(times, dtype=float))
        span = float(t[-1]) if t.size > 1 else until_s
        _requests_so_far(ax, t, until_s, color=COLORS["bad"], label="naive loop: at once, on any error")
        stopped = span < until_s * 0.9  # the demo stopped this one early; the loop itself would not
        note = f"{t.size:,} requests\n≈ {t.size / span:,.0f} per second" + ("\n(then the demo stopped it)" * stopped)
        ax.annotate(
            note,
            (span, t.size),
            xytext=(4 if stopped else -4, -6),
            textcoords="offset points",
            ha="left" if stopped else "right",
            va="top",
            fontsize=8,
            color=COLORS["bad"],
        )
        polite = np.sort(np.asarray((sensible or {}).get(fault, []), dtype=float))
        polite = polite[polite <= until_s]
        if polite.size:
            _requests_so_far(
                ax,
                polite,
                until_s,
                color=COLORS["ok"],
                marker="o",
                markevery=list(range(polite.size)),
                label="retry transient errors only, with backoff",
            )
            ax.annotate(
                f"{polite.size} request{'s' if polite.size > 1 else ''}",
                (until_s, polite.size),
                xytext=(-4, 4),
                textcoords="offset points",
                ha="right",
                fontsize=8,
                color=COLORS["ok"],
            )
        ax.set_title(f"server answers {fault}")
        ax.set_xlim(0, until_s)
        ax.set_xlabel("seconds since the first request")
    axes[0].set_yscale("log")
    axes[0].set_ylim(0.7, None)
    axes[0].yaxis.set_major_formatter(mpl.ticker.FuncFormatter(lambda value, _: f"{value:,.0f}"))
    axes[0].set_ylabel("requests sent so far (log scale)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=2)
    return axes


def recovery_panels(
    results: Sequence[Any],
    bin_s: float = 0.5,
    until_s: float | None = None,
    capacity_rps: float | None = None,
    outage_s: float | None = None,
    ymax: float | None = None,
) -> list[Axes]:
    """``recovery_timeline`` as small multiples: one panel per strategy, one x and one y scale.

    Four step lines on one axis cannot be told apart; stacked panels can. Each panel names
    its strategy, its calls and when its last client finished; the capacity line and the
    outage are explained once, in a legend below. Returns the axes, top to bottom.
    Taught in notebook 02, section 2.5.
    """
    fig, axes = plt.subplots(len(results), 1, figsize=(6.4, 1.45 * len(results) + 0.9), sharex=True, sharey=True)
    axes = list(np.atleast_1d(axes))
    for i, (ax, result) in enumerate(zip(axes, results, strict=True)):
        recovery_timeline(
            [result], ax=ax, bin_s=bin_s, until_s=until_s, capacity_rps=capacity_rps, outage_s=outage_s, ymax=ymax
        )
        handles, labels = ax.get_legend_handles_labels()
        ax.get_legend().remove()
        ax.set_title("")
        ax.set_xlabel("")
        ax.set_ylabel("")
        color, _ = _strategy_style(result.strategy, i)
        ax.text(
            0.99,
            0.92,
            labels[0],
            transform=ax.transAxes,
            ha="right",
            va="top",
            fontsize=8,
            color=color,
            fontweight="bold",
        )
    axes[-1].set_xlabel("seconds")
    fig.supylabel(f"requests per {bin_s:g} s", fontsize=9)
    fig.legend(handles[1:], labels[1:], loc="outside lower center", ncols=2)
    return axes
