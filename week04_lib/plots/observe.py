"""Plots of notebook 04: cost saved, texts sent, incidents, latency percentiles (the breaker's
are in plots/breaker.py, still importable from here)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timezone
from typing import Any

import matplotlib as mpl
import matplotlib.dates as mdates
import numpy as np
from matplotlib.axes import Axes

from .breaker import BREAKER_COLORS, breaker_diagram, breaker_states
from .style import COLORS, _axes

__all__ = [
    "BREAKER_COLORS",
    "breaker_diagram",
    "breaker_states",
    "cost_saved",
    "incident_timeline",
    "latency_percentiles",
    "texts_sent",
]


def cost_saved(without: Sequence[float], with_cache: Sequence[float], ax: Axes | None = None) -> Axes:
    """Cumulative cost of a workload, call by call, without and with a cache.

    ``without`` and ``with_cache`` are the cost in USD of each call, in order (a cache
    hit costs 0). The gap between the two lines is what the cache saved: shaded, and
    written at the end with its share of the bill.
    Taught in notebook 04, section 4.4.
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


def texts_sent(table: Any, ax: Axes | None = None) -> Axes:
    """Horizontal bars: of the texts each run asked to embed, how many it sent.

    ``table`` has one row per run (a DataFrame, or a mapping of label to row) with the
    columns ``texts`` (asked for), ``texts sent``, ``requests``, ``tokens`` and ``cost (USD)``.
    Each bar is the texts asked for, in grey (found in a cache), with the part sent over it
    in orange; after it, what was sent and what it cost. The first row is drawn on top.
    Taught in notebook 04, section 4.8.
    """
    ax = _axes(ax)
    rows = table.to_dict("index") if hasattr(table, "columns") else dict(table)
    if not rows:
        raise ValueError("texts_sent needs at least one row")
    widest = max(float(row["texts"]) for row in rows.values())
    for y, row in enumerate(rows.values()):
        asked, sent, requests = float(row["texts"]), float(row["texts sent"]), int(row["requests"])
        ax.barh(y, asked, height=0.62, color=COLORS["muted"], alpha=0.35)
        ax.barh(y, sent, height=0.62, color=COLORS["bad"])
        note = f"{sent:,.0f} in {requests} request{'' if requests == 1 else 's'}: "
        note += f"{float(row['tokens']):,.0f} tokens, ${float(row['cost (USD)']):.2g}"
        ax.text(asked + widest * 0.02, y, note, va="center", fontsize=7.5)
    ax.barh(0, 0, color=COLORS["bad"], label="sent")  # legend entries
    ax.barh(0, 0, color=COLORS["muted"], alpha=0.35, label="from the cache")
    ax.set_yticks(range(len(rows)), [str(label) for label in rows])
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlim(0, widest * 2.0)
    ax.set_xticks([t for t in ax.get_xticks() if 0 <= t <= widest])  # none under the notes
    ax.set_xlabel("texts")
    ax.grid(axis="y", visible=False)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, handlelength=1.0)
    ax.set_title("Texts sent to the server")
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
    Taught in notebook 04, section 4.7 and its appendix.
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
    is cut. Taught in notebook 04, appendix.
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
