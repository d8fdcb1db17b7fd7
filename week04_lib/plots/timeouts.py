"""Plots of notebook 01: latency tails and time to failure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes

from .style import COLORS, _axes, _marked_line


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
