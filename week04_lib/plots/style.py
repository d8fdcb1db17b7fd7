"""The course's plot style: colours, sizes, and the helpers every plot uses."""

from __future__ import annotations

from typing import Any

import matplotlib as mpl
import matplotlib.pyplot as plt
from matplotlib.axes import Axes

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
