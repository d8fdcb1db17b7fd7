"""Plots of notebook 03: rate-limit timelines and budgets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib as mpl
import numpy as np
from matplotlib.axes import Axes

from .style import COLORS, _axes


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
