"""One plot style and small plotting helpers for the five notebooks.

Every helper takes its data and an optional ``ax`` and returns the ``ax`` it drew on
(a new figure is made when ``ax`` is None), so a notebook can put two plots side by
side or add to one. Call ``use_style()`` once in a notebook's setup cell.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timezone
from typing import Any

import matplotlib as mpl
import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

__all__ = [
    "BREAKER_COLORS",
    "COLORS",
    "OUTCOME_COLORS",
    "STRATEGY_COLORS",
    "attempts_per_call",
    "backoff_schedules",
    "breaker_states",
    "cost_saved",
    "cumulative_grants",
    "fault_sweep",
    "incident_timeline",
    "latency_cdf",
    "latency_histogram",
    "latency_percentiles",
    "limit_budget",
    "outcome_bars",
    "rate_timeline",
    "recovery_timeline",
    "time_to_failure",
    "use_style",
]

# Colour-blind-safe (Okabe-Ito): what went well, what went wrong, neutral, limits.
COLORS = {
    "ok": "#009E73",
    "bad": "#D55E00",
    "neutral": "#0072B2",
    "muted": "#999999",
    "limit": "#CC79A7",
    "accent": "#E69F00",
}

STYLE: dict[str, Any] = {
    "figure.figsize": (6.4, 3.2),
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "figure.autolayout": False,
    "figure.constrained_layout.use": True,
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.axisbelow": True,
    "axes.prop_cycle": mpl.cycler(color=[COLORS[k] for k in ("neutral", "accent", "ok", "bad", "limit", "muted")]),
}


def _marked_line(ax: Axes, x: float, label: str, *, top: float, linestyle: str = "-") -> None:
    """A vertical limit line with its label written along it."""
    ax.axvline(x, color=COLORS["bad"], linestyle=linestyle, linewidth=1.2)
    ax.annotate(
        label,
        (x, top),
        xycoords=("data", "axes fraction"),
        xytext=(-2, 0),
        textcoords="offset points",
        rotation=90,
        ha="right",
        va="top",
        fontsize=8,
        color=COLORS["bad"],
    )


def use_style() -> None:
    """Apply the course's plot style (small figures, readable fonts, a light grid).

    Taught in notebook 01, setup; used by every notebook.
    """
    mpl.rcParams.update(STYLE)


def _axes(ax: Axes | None) -> Axes:
    if ax is None:
        _, ax = plt.subplots()
    return ax


def latency_histogram(
    samples: Sequence[float], cutoffs: Mapping[str, float], ax: Axes | None = None, bins: int = 60
) -> Axes:
    """Histogram of call latencies on a log x axis, with a line at each read timeout.

    ``cutoffs`` maps a label (e.g. a preset name) to seconds; each line is labelled
    with the share of ``samples`` longer than it: the calls that timeout would cut.
    Taught in notebook 01, section 1.6.
    """
    ax = _axes(ax)
    values = np.asarray(samples, dtype=float)
    values = values[values > 0]
    if values.size == 0:
        raise ValueError("latency_histogram needs at least one positive sample")
    high = max(values.max(), *cutoffs.values()) * 1.2 if cutoffs else values.max() * 1.2
    counts, _, _ = ax.hist(values, bins=np.geomspace(values.min(), high, bins), color=COLORS["neutral"], alpha=0.75)
    ax.set_ylim(0, counts.max() * 1.6)  # headroom for the labels
    ax.set_xscale("log")
    ax.set_xlabel("seconds (log scale)")
    ax.set_ylabel("calls")
    median = float(np.median(values))
    ax.axvline(median, color=COLORS["muted"], linestyle=":", linewidth=1)
    ax.annotate(
        f"median {median:.2g}s",
        (median, 0.97),
        xycoords=("data", "axes fraction"),
        xytext=(3, 0),
        textcoords="offset points",
        va="top",
        fontsize=8,
        color=COLORS["muted"],
    )
    for name, seconds in sorted(cutoffs.items(), key=lambda item: item[1]):
        cut = float(np.mean(values > seconds))
        share = "none" if cut == 0 else f"{cut:.1%}" if cut >= 0.001 else f"{cut:.2%}"
        _marked_line(ax, seconds, f"{name} {seconds:g}s: cuts {share}", top=0.97)
    ax.set_title(f"{values.size:,} calls: where each read timeout cuts")
    return ax


def time_to_failure(rows: Sequence[Mapping[str, Any]], budget_s: float | None = None, ax: Axes | None = None) -> Axes:
    """Horizontal bars: seconds until each approach returned or gave up.

    Each row is a mapping with ``label`` and ``seconds``, and optionally ``outcome``
    (text written after the bar) and ``unbounded`` (True if it was still waiting when
    we stopped it: drawn hatched, with an arrow). ``budget_s`` draws the time budget;
    a bar past it is coloured as a failure to stay bounded.
    Taught in notebook 01, section 1.4.
    """
    ax = _axes(ax)
    labels = [str(row["label"]) for row in rows]
    seconds = [float(row["seconds"]) for row in rows]
    longest = max(seconds + ([budget_s] if budget_s else []), default=1.0)
    for y, row in enumerate(rows):
        value = seconds[y]
        unbounded = bool(row.get("unbounded"))
        late = unbounded or (budget_s is not None and value > budget_s * 1.05)
        color = COLORS["bad"] if late else COLORS["ok"]
        ax.barh(
            y,
            value,
            color=color,
            alpha=0.85,
            height=0.6,
            hatch="//" if unbounded else None,
            edgecolor="white" if unbounded else color,
        )
        text = str(row.get("outcome", ""))
        if unbounded:
            ax.annotate(
                "",
                (value + longest * 0.12, y),
                xytext=(value, y),
                arrowprops={"arrowstyle": "->", "color": color, "linewidth": 1.5},
            )
            text = f"{text} (still waiting)" if text else "still waiting"
        offset = longest * (0.14 if unbounded else 0.02)
        ax.text(value + offset, y, f"{value:.1f}s  {text}".rstrip(), va="center", fontsize=8)
    if budget_s is not None:
        ax.axvline(budget_s, color=COLORS["limit"], linestyle="--", linewidth=1.2)
        ax.text(budget_s, -0.9, f" budget {budget_s:g}s", va="center", fontsize=8, color=COLORS["limit"])
    ax.set_yticks(range(len(rows)), labels)
    ax.set_ylim(len(rows) - 0.5, -1.1)  # top to bottom, with a free row for the budget's label
    ax.set_xlim(0, longest * 1.9)
    ax.set_xlabel("seconds until the call returned or gave up")
    ax.grid(axis="y", visible=False)
    ax.set_title("Time to failure")
    return ax


# One colour and marker per backoff strategy, the same in every plot of notebook 02:
# lockstep (no jitter) is the failure, full jitter the recommended default.
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


def rate_timeline(
    series: Mapping[str, Sequence[float]],
    refused: Mapping[str, Sequence[float]] | None = None,
    limit_rps: float | None = None,
    ax: Axes | None = None,
    bin_s: float = 0.25,
    until_s: float | None = None,
    ymax: float | None = None,
) -> Axes:
    """Requests per second over time, one step line per client, its 429s filled below.

    ``series`` maps a label (a client configuration) to the send times of every request
    it made, in seconds from the start; ``refused`` maps the same labels to the times of
    the requests the server refused with 429 (a subset). ``limit_rps`` draws the server's
    limit. A client without a limiter spikes over the line and its excess comes back as
    429s; a limited client runs as a flat line just under it. ``ymax`` fixes the y axis
    (to compare panels).
    Taught in notebook 03, section 3.2.
    """
    ax = _axes(ax)
    refused = refused or {}
    end = until_s
    if end is None:
        end = max((max(t, default=0.0) for t in (*series.values(), *refused.values())), default=1.0)
    edges = np.arange(0.0, end + bin_s, bin_s)
    palette = [COLORS["neutral"], COLORS["ok"], COLORS["accent"], COLORS["muted"]]
    tallest = limit_rps or 1.0
    for i, (label, times) in enumerate(series.items()):
        counts, _ = np.histogram(np.asarray(times, dtype=float), bins=edges)
        rates = counts / bin_s
        tallest = max(tallest, float(rates.max(initial=0)))
        ax.stairs(
            rates,
            edges,
            color=palette[i % len(palette)],
            linewidth=1.8,
            zorder=4,  # over the limit line: a limited client runs right on it
            label=f"{label}: {len(times)} requests sent",
        )
        no = refused.get(label)
        if no is not None:
            bad, _ = np.histogram(np.asarray(no, dtype=float), bins=edges)
            ax.stairs(
                bad / bin_s,
                edges,
                fill=True,
                color=COLORS["bad"],
                alpha=0.45,
                linewidth=0,
                zorder=2,
                label=f"{len(no)} of them refused (429)",
            )
    if limit_rps is not None:
        ax.axhline(
            limit_rps,
            color=COLORS["limit"],
            linestyle="--",
            linewidth=1.4,
            zorder=3,
            label=f"server limit: {limit_rps:g}/s",
        )
    ax.set_xlim(0, end)
    ax.set_ylim(0, ymax if ymax is not None else tallest * 1.5)  # headroom for the legend
    ax.set_xlabel("seconds")
    ax.set_ylabel(f"requests per second\n({bin_s:g}s bins)")
    ax.legend(loc="upper right")
    ax.set_title("Requests per second")
    return ax


def _per_minute(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def limit_budget(workloads: Mapping[str, Mapping[str, float]], ax: Axes | None = None) -> Axes:
    """Horizontal bars: the calls per minute each limit allows, per workload.

    ``workloads`` maps a workload label to ``{limit name: calls per minute}`` (e.g. RPM,
    TPM and concurrency). The smallest bar of each workload is the limit that bites
    first: drawn solid and labelled; the others are drawn faded. Log x axis, since the
    limits differ by orders of magnitude.
    Taught in notebook 03, section 3.3.
    """
    ax = _axes(ax)
    names = list(dict.fromkeys(name for limits in workloads.values() for name in limits))
    palette = [COLORS["neutral"], COLORS["accent"], COLORS["limit"], COLORS["ok"]]
    colors = {name: palette[i % len(palette)] for i, name in enumerate(names)}
    height = 0.8 / max(len(names), 1)
    largest = 1.0
    for y, limits in enumerate(workloads.values()):
        binding = min(limits, key=lambda name: limits[name])
        for j, name in enumerate(names):
            if name not in limits:
                continue
            value = float(limits[name])
            largest = max(largest, value)
            pos = y + (j - (len(names) - 1) / 2) * height
            bites = name == binding
            ax.barh(pos, value, height=height * 0.9, color=colors[name], alpha=0.95 if bites else 0.3)
            text = f"{name} {_per_minute(value)}/min" + ("  <- bites first" if bites else "")
            ax.text(value * 1.1, pos, text, va="center", fontsize=8, fontweight="bold" if bites else "normal")
    ax.set_xscale("log")
    ax.set_xlim(1, largest * 30)
    ax.xaxis.set_major_formatter(mpl.ticker.FuncFormatter(lambda value, _: f"{value:,.0f}"))
    ax.set_yticks(range(len(workloads)), list(workloads))
    ax.set_ylim(len(workloads) - 0.5, -0.5)  # the first workload on top
    ax.set_xlabel("calls per minute the limit allows (log scale)")
    ax.grid(axis="y", visible=False)
    ax.set_title("Which limit bites first")
    return ax


def cumulative_grants(
    times: Sequence[float],
    amounts: Sequence[float] | None = None,
    rate_per_s: float | None = None,
    ax: Axes | None = None,
    unit: str = "requests",
    label: str = "granted",
) -> Axes:
    """What a limiter let through, summed over time, against the budget line.

    ``times`` are grant times (e.g. ``Permit.granted_at`` in virtual seconds) and
    ``amounts`` what each grant spent (1 request each when None). ``rate_per_s`` draws the
    budget, ``rate_per_s * t``: a limiter keeps the step line close to it, at most one
    call above it.
    Taught in notebook 03, section 3.3.
    """
    ax = _axes(ax)
    order = np.argsort(np.asarray(times, dtype=float), kind="stable")
    t = np.asarray(times, dtype=float)[order]
    spent = np.ones_like(t) if amounts is None else np.asarray(amounts, dtype=float)[order]
    total = np.cumsum(spent)
    end = float(t.max(initial=0.0)) * 1.05 or 1.0
    if t.size:
        ax.step(np.r_[0.0, t, end], np.r_[0.0, total, total[-1]], where="post", color=COLORS["neutral"], label=label)
        ax.plot(t, total, "o", color=COLORS["neutral"], markersize=3)
    if rate_per_s is not None:
        ax.plot(
            [0, end],
            [0, rate_per_s * end],
            color=COLORS["limit"],
            linestyle="--",
            linewidth=1.2,
            label=f"budget: {rate_per_s:,.4g} {unit}/s",
        )
    ax.set_xlim(0, end)
    ax.set_ylim(0, max(float(total[-1]) if t.size else 1.0, (rate_per_s or 0) * end) * 1.08)
    ax.set_xlabel("seconds (virtual)")
    ax.set_ylabel(f"{unit} granted, cumulative")
    ax.legend(loc="upper left")
    ax.set_title(f"Cumulative {unit} granted")
    return ax


# --------------------------------------------------------------------- notebook 04


def cost_saved(without: Sequence[float], with_cache: Sequence[float], ax: Axes | None = None) -> Axes:
    """Cumulative cost of a workload, call by call, without and with a cache.

    ``without`` and ``with_cache`` are the cost in USD of each call, in order (a cache
    hit costs 0). The gap between the two lines is what the cache saved: shaded, and
    written at the end with its share of the bill.
    Taught in notebook 04, section 4.3.
    """
    ax = _axes(ax)
    plain = np.cumsum(np.asarray(without, dtype=float))
    cached = np.cumsum(np.asarray(with_cache, dtype=float))
    calls = np.arange(1, plain.size + 1)
    if plain.size == 0:
        raise ValueError("cost_saved needs at least one call")
    ax.plot(calls, plain, color=COLORS["bad"], linewidth=1.8, label=f"without a cache: ${plain[-1]:.4f}")
    ax.plot(calls, cached, color=COLORS["ok"], linewidth=1.8, label=f"with a cache: ${cached[-1]:.4f}")
    ax.fill_between(calls, cached, plain, color=COLORS["ok"], alpha=0.12, linewidth=0)
    saved = plain[-1] - cached[-1]
    share = saved / plain[-1] if plain[-1] else 0.0
    ax.annotate(
        f"saved ${saved:.4f}\n({share:.0%} of the bill)",
        (calls[-1], (plain[-1] + cached[-1]) / 2),
        xytext=(-6, 0),
        textcoords="offset points",
        ha="right",
        va="center",
        fontsize=8,
        color=COLORS["ok"],
        fontweight="bold",
    )
    ax.set_xlim(0, calls[-1] * 1.02)
    ax.set_ylim(0, plain[-1] * 1.08)
    ax.yaxis.set_major_formatter(mpl.ticker.FuncFormatter(lambda value, _: f"${value:.3g}"))
    ax.set_xlabel("calls made")
    ax.set_ylabel("cumulative cost (USD)")
    ax.legend(loc="upper left")
    ax.set_title("What the cache saved")
    return ax


def _dates(values: Any) -> np.ndarray:
    """Datetimes (tz-aware allowed) to matplotlib date numbers."""
    items = values.to_pydatetime() if hasattr(values, "to_pydatetime") else list(values)
    return np.asarray(mdates.date2num(list(items)), dtype=float)


def _shade_windows(ax: Axes, windows: Mapping[str, tuple[Any, Any]] | None) -> None:
    for label, (start, end) in (windows or {}).items():
        left, right = _dates([start, end])
        ax.axvspan(left, right, color=COLORS["muted"], alpha=0.18, linewidth=0, zorder=0)
        ax.annotate(
            label,
            ((left + right) / 2, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(0, -2),
            textcoords="offset points",
            ha="center",
            va="top",
            fontsize=8,
            color="#555555",
            fontweight="bold",
        )


def _time_axis(ax: Axes, left: float, right: float) -> None:
    ax.set_xlim(left, right)
    ax.xaxis.set_major_locator(mdates.MinuteLocator(byminute=range(0, 60, 10)))
    ax.xaxis.set_minor_locator(mdates.MinuteLocator(byminute=range(0, 60, 5)))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=timezone.utc))
    ax.set_xlabel("time (UTC)")


def _stairs_over_time(
    ax: Axes, frame: Any, styles: Mapping[str, Mapping[str, Any]] | None = None
) -> tuple[float, float, float]:
    """One step line per column of ``frame`` (a DatetimeIndex of bin starts); a NaN is a
    gap. Returns (left, right, tallest)."""
    starts = _dates(frame.index)
    if starts.size == 0:
        raise ValueError("nothing to plot: the frame has no rows")
    step = float(np.median(np.diff(starts))) if starts.size > 1 else 1 / 1440
    edges = np.r_[starts, starts[-1] + step]
    palette = [COLORS["neutral"], COLORS["bad"], COLORS["ok"], COLORS["accent"], COLORS["limit"]]
    tallest = 0.0
    for i, column in enumerate(frame.columns):
        values = np.asarray(frame[column], dtype=float)
        style = {"color": palette[i % len(palette)], "linewidth": 1.5, **dict((styles or {}).get(column, {}))}
        ax.stairs(values, edges, baseline=None, label=str(column), **style)
        tallest = max(tallest, float(np.nanmax(values, initial=0.0)))
    return float(edges[0]), float(edges[-1]), tallest


def incident_timeline(
    frame: Any,
    windows: Mapping[str, tuple[Any, Any]] | None = None,
    ax: Axes | None = None,
    ylabel: str = "",
    percent: bool = False,
    colors: Mapping[str, str] | None = None,
    legend_loc: str | None = None,
) -> Axes:
    """Per-minute counts or rates over clock time, with the incident windows shaded.

    ``frame`` is a pandas DataFrame indexed by the start of each bin (a DatetimeIndex,
    e.g. from ``resample("1min")``), one step line per column. ``windows`` maps a label
    to ``(start, end)`` timestamps, drawn as labelled grey bands. ``percent`` formats the
    y axis as a percentage (values from 0 to 1); ``colors`` maps a column to its colour.
    With several columns, the legend goes right of the plot, or inside at ``legend_loc``.
    Taught in notebook 04, section 4.5.
    """
    ax = _axes(ax)
    styles = {column: {"color": color} for column, color in (colors or {}).items()}
    left, right, tallest = _stairs_over_time(ax, frame, styles)
    _shade_windows(ax, windows)
    _time_axis(ax, left, right)
    ax.set_ylim(0, (tallest or 1.0) * 1.3)  # headroom for the window labels
    if percent:
        ax.yaxis.set_major_formatter(mpl.ticker.PercentFormatter(1.0, decimals=0))
    ax.set_ylabel(ylabel)
    if len(frame.columns) > 1:
        if legend_loc is None:
            ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
        else:
            ax.legend(loc=legend_loc)
    return ax


def latency_percentiles(
    frame: Any,
    windows: Mapping[str, tuple[Any, Any]] | None = None,
    ax: Axes | None = None,
    timeout_s: float | None = None,
) -> Axes:
    """Latency percentiles per time bin on a log axis, with the incident windows shaded.

    ``frame`` is a pandas DataFrame indexed by bin start (a DatetimeIndex) whose columns
    are percentiles in seconds, e.g. ``p50``, ``p95``, ``p99``: the median is drawn solid,
    the tail lighter and dashed. ``timeout_s`` draws the read timeout, where the tail
    is cut. Taught in notebook 04, section 4.5.
    """
    ax = _axes(ax)
    tail = [COLORS["neutral"], COLORS["accent"], COLORS["bad"], COLORS["limit"]]
    styles = {
        column: {"color": tail[min(i, len(tail) - 1)], "linewidth": 1.8 if i == 0 else 1.2}
        | ({"linestyle": "--"} if i >= 2 else {})
        for i, column in enumerate(frame.columns)
    }
    left, right, tallest = _stairs_over_time(ax, frame, styles)
    values = np.asarray(frame, dtype=float)
    low = float(np.nanmin(values[values > 0])) if np.any(values > 0) else 0.1
    high = max(tallest, timeout_s or 0.0)
    if timeout_s is not None:
        ax.axhline(timeout_s, color=COLORS["limit"], linestyle=":", linewidth=1.2, label=f"read timeout {timeout_s:g}s")
    _shade_windows(ax, windows)
    _time_axis(ax, left, right)
    ax.set_yscale("log")
    ax.set_ylim(low / 1.5, high * 3)  # headroom for the window labels
    ax.yaxis.set_major_formatter(mpl.ticker.FuncFormatter(lambda value, _: f"{value:g}s"))
    ax.set_ylabel("latency per call")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return ax


BREAKER_COLORS = {"closed": "#FFFFFF", "open": COLORS["bad"], "half_open": COLORS["accent"]}
_ROWS = {  # outcome: (row, label, colour)
    "ok": (2, "answered", COLORS["ok"]),
    "failed": (1, "failed at the service", COLORS["bad"]),
    "fast": (0, "failed fast (not sent)", COLORS["muted"]),
}


def breaker_states(
    calls: Sequence[tuple[float, str]],
    transitions: Sequence[tuple[float, str]] | None = None,
    outage: tuple[float, float] | None = None,
    until_s: float | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Every call of a run as a tick, and the circuit breaker's state behind them.

    ``calls`` are ``(seconds, outcome)`` with outcome ``"ok"`` (answered), ``"failed"``
    (sent, and failed at the service) or ``"fast"`` (failed fast: the breaker was open,
    no request sent). ``transitions`` are ``(seconds, new_state)`` as an ``on_change``
    listener hears them (the breaker starts closed); None means no breaker. The
    background is red while open; an amber line marks each half-open moment (its probe).
    ``outage`` marks when the service was down, as a bar on the top row.
    Taught in notebook 04, section 4.6.
    """
    ax = _axes(ax)
    end = until_s if until_s is not None else max((t for t, _ in calls), default=1.0)
    if transitions is not None:
        bands = [(0.0, "closed"), *[(float(t), str(s)) for t, s in transitions]]
        for (start, state), (stop, _) in zip(bands, [*bands[1:], (end, "")], strict=True):
            if state == "open" and stop > start:
                ax.axvspan(start, stop, color=BREAKER_COLORS["open"], alpha=0.18, linewidth=0)
            elif state == "half_open":  # often an instant: the probe's answer ends it
                ax.axvspan(start, max(stop, start), color=BREAKER_COLORS["half_open"], alpha=0.3, linewidth=0)
                ax.axvline(start, color=BREAKER_COLORS["half_open"], linewidth=1.0, zorder=1)
        ax.axvspan(0, 0, color=BREAKER_COLORS["open"], alpha=0.18, label="breaker open")
        ax.plot([], [], color=BREAKER_COLORS["half_open"], linewidth=1.0, label="half-open: one probe")
    counts = {}
    for outcome, (row, _, color) in _ROWS.items():
        times = [t for t, o in calls if o == outcome]
        counts[outcome] = len(times)
        ax.plot(times, [row] * len(times), "|", color=color, markersize=11, markeredgewidth=1.4, zorder=3)
    if outage is not None:
        ax.broken_barh([(outage[0], outage[1] - outage[0])], (2.7, 0.5), color=COLORS["bad"], alpha=0.85)
        ax.text((outage[0] + outage[1]) / 2, 2.95, "service down", ha="center", va="center", color="white", fontsize=8)
    labels = [f"{text} ({counts[o]})" for o, (_, text, _) in sorted(_ROWS.items(), key=lambda kv: kv[1][0])]
    ax.set_yticks([0, 1, 2], labels)
    ax.set_ylim(-0.6, 3.4)
    ax.set_xlim(0, end)
    ax.grid(axis="y", visible=False)
    ax.set_xlabel("seconds (virtual)")
    if transitions is not None:
        ax.legend(loc="center right", frameon=True, framealpha=0.9, edgecolor="none")
    ax.set_title(f"{counts['failed']} requests sent to the failing service, {counts['fast']} failed fast")
    return ax


# One colour per outcome of a logical call, the same in every plot of notebook 05.
OUTCOME_COLORS = {
    "answered": COLORS["ok"],
    "fallback": "#56B4E9",  # Okabe-Ito sky blue: answered, by another model
    "cached": COLORS["neutral"],
    "stale": COLORS["limit"],
    "failed": COLORS["bad"],
}


def _rows_of(table: Any) -> dict[str, dict[str, Any]]:
    """``{row label: {column: value}}`` from a mapping of mappings or a pandas DataFrame."""
    if hasattr(table, "to_dict") and hasattr(table, "columns"):
        table = table.to_dict("index")
    return {str(label): {str(k): v for k, v in dict(row).items()} for label, row in table.items()}


def outcome_bars(
    table: Any,
    ax: Axes | None = None,
    requests: Mapping[str, float] | None = None,
    outcomes: Sequence[str] | None = None,
) -> Axes:
    """Horizontal stacked bars: how the logical calls of a workload ended, per client.

    ``table`` maps a client configuration to ``{outcome: calls}`` (or is a DataFrame with
    one row per configuration); the outcomes are drawn in the order ``answered``,
    ``fallback``, ``cached``, ``stale``, ``failed`` (other columns are ignored unless named
    in ``outcomes``). Each segment is labelled with its count when there is room.
    ``requests`` maps the same labels to the requests each client sent, written after its
    bar: what the outcome cost the provider. The first configuration is drawn on top.
    Taught in notebook 05, section 5.2.
    """
    ax = _axes(ax)
    rows = _rows_of(table)
    if not rows:
        raise ValueError("outcome_bars needs at least one row")
    order = (
        list(outcomes) if outcomes is not None else [o for o in OUTCOME_COLORS if any(o in r for r in rows.values())]
    )
    spare = [COLORS["muted"], COLORS["accent"]]
    colors = {o: OUTCOME_COLORS.get(o, spare[i % len(spare)]) for i, o in enumerate(order)}
    widest = max(sum(float(r.get(o, 0)) for o in order) for r in rows.values()) or 1.0
    for y, (label, row) in enumerate(rows.items()):
        left = 0.0
        for outcome in order:
            value = float(row.get(outcome, 0))
            if value <= 0:
                continue
            ax.barh(y, value, left=left, height=0.62, color=colors[outcome], edgecolor="white", linewidth=0.6)
            if value >= widest * 0.045:
                dark = outcome in ("cached", "failed", "answered")
                ax.text(
                    left + value / 2,
                    y,
                    f"{value:g}",
                    ha="center",
                    va="center",
                    fontsize=7.5,
                    color="white" if dark else "black",
                )
            left += value
        if requests is not None and label in requests:
            ax.text(left + widest * 0.015, y, f"{requests[label]:,.0f} requests", va="center", fontsize=8)
    for outcome in order:
        ax.barh(0, 0, color=colors[outcome], label=outcome)  # legend entries, in order
    ax.set_yticks(range(len(rows)), list(rows))
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlim(0, widest * (1.3 if requests is not None else 1.02))
    ax.set_xticks([t for t in ax.get_xticks() if 0 <= t <= widest])  # none under the request counts
    ax.set_xlabel("logical calls")
    ax.grid(axis="y", visible=False)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=len(order), handlelength=1.0, columnspacing=1.2)
    ax.set_title("How each call ended")
    return ax


def _seconds_label(value: float, _: Any = None, digits: int = 3) -> str:
    """0.0214 -> '21.4ms', 0.8 -> '800ms', 1.5 -> '1.5s' (``digits`` significant digits)."""
    if value >= 1:
        return f"{value:.{digits}g}s"
    ms = value * 1000
    return f"{ms:.0f}ms" if ms >= 10 ** (digits - 1) else f"{ms:.{digits}g}ms"


def latency_cdf(
    samples_by_config: Mapping[str, Sequence[float]],
    ax: Axes | None = None,
    deadline_s: float | None = None,
    colors: Mapping[str, str] | None = None,
) -> Axes:
    """The share of calls done by each latency (an empirical CDF), one step line per client.

    ``samples_by_config`` maps a client configuration to the wall-clock seconds of each of
    its logical calls, failures included (a failure that took long is as slow for the user
    as an answer). Log x axis: a cache hit takes a fraction of a millisecond, a retried call
    tens of milliseconds, a timed-out one the whole budget. ``deadline_s`` draws the total
    timeout: no line may pass it. The legend gives each client's p95 and slowest call.
    Taught in notebook 05, section 5.2.
    """
    ax = _axes(ax)
    palette = [COLORS["muted"], COLORS["accent"], COLORS["limit"], COLORS["neutral"], COLORS["ok"], COLORS["bad"]]
    low, high = np.inf, 0.0
    for i, (label, samples) in enumerate(samples_by_config.items()):
        values = np.sort(np.asarray(samples, dtype=float))
        if values.size == 0:
            continue
        values = np.maximum(values, 1e-5)  # a log axis has no zero
        shares = np.arange(1, values.size + 1) / values.size
        color = (colors or {}).get(label, palette[i % len(palette)])
        p95 = float(np.quantile(values, 0.95))
        ax.step(
            np.r_[values[0], values],
            np.r_[0.0, shares],
            where="post",
            color=color,
            linewidth=1.5,
            label=f"{label}: {_seconds_label(p95, digits=2)}, {_seconds_label(float(values[-1]), digits=2)}",
        )
        low, high = min(low, float(values[0])), max(high, float(values[-1]))
    if not np.isfinite(low):
        raise ValueError("latency_cdf needs at least one sample")
    if deadline_s is not None:
        _marked_line(ax, deadline_s, f"total deadline {_seconds_label(deadline_s)}", top=0.98, linestyle="--")
        high = max(high, deadline_s)
    ax.set_xscale("log")
    ax.set_xlim(low / 1.5, high * 1.5)
    ax.xaxis.set_major_formatter(mpl.ticker.FuncFormatter(_seconds_label))
    ax.set_ylim(0, 1.02)
    ax.yaxis.set_major_formatter(mpl.ticker.PercentFormatter(1.0, decimals=0))
    ax.set_xlabel("latency of a logical call (log scale)")
    ax.set_ylabel("calls done")
    ax.legend(loc="upper left", title="p95, slowest call", title_fontsize=8, alignment="left")
    ax.set_title("Latency of every call")
    return ax
