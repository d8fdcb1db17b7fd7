"""One plot style and small plotting helpers for the five notebooks.

Every helper takes its data and an optional ``ax`` and returns the ``ax`` it drew on
(a new figure is made when ``ax`` is None), so a notebook can put two plots side by
side or add to one. Call ``use_style()`` once in a notebook's setup cell.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

__all__ = ["COLORS", "latency_histogram", "time_to_failure", "use_style"]

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
        ax.axvline(seconds, color=COLORS["bad"], linewidth=1.2)
        ax.annotate(
            f"{name} {seconds:g}s: cuts {share}",
            (seconds, 0.97),
            xycoords=("data", "axes fraction"),
            xytext=(-2, 0),
            textcoords="offset points",
            rotation=90,
            ha="right",
            va="top",
            fontsize=8,
            color=COLORS["bad"],
        )
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
