"""Plots of notebook 04: cost saved, texts sent, incidents, latency percentiles, breaker states and its diagram."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timezone
from typing import Any

import matplotlib as mpl
import matplotlib.dates as mdates
import numpy as np
from matplotlib.axes import Axes
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from .style import COLORS, _axes


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
    Taught in notebook 04, section 4.5.
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


_BOXES = {  # state: (centre x, centre y, title, what a call meets there), in axes fractions
    "closed": (0.16, 0.72, "closed", "calls go through;\ntransient failures\nare counted"),
    "open": (0.84, 0.72, "open", "calls fail fast\n(CircuitOpen):\nno request sent"),
    "half_open": (0.5, 0.16, "half-open", "one call goes through\n(the probe); the others\nfail fast until it answers"),
}
_BOX_W, _BOX_H = 0.26, 0.3


def _state_box(ax: Axes, state: str) -> None:
    x, y, title, inside = _BOXES[state]
    edge = {"closed": COLORS["ok"], "open": COLORS["bad"], "half_open": COLORS["accent"]}[state]
    box = FancyBboxPatch(
        (x - _BOX_W / 2, y - _BOX_H / 2),
        _BOX_W,
        _BOX_H,
        boxstyle="round,pad=0.01,rounding_size=0.03",
        facecolor=edge,
        alpha=0.15,
        edgecolor="none",
    )
    ax.add_patch(box)
    ax.add_patch(
        FancyBboxPatch(
            (x - _BOX_W / 2, y - _BOX_H / 2),
            _BOX_W,
            _BOX_H,
            boxstyle="round,pad=0.01,rounding_size=0.03",
            facecolor="none",
            edgecolor=edge,
            linewidth=1.6,
        )
    )
    ax.text(x, y + 0.09, title, ha="center", va="center", fontsize=10, fontweight="bold", color=edge)
    ax.text(x, y - 0.04, inside, ha="center", va="center", fontsize=7.5, color="#333333", linespacing=1.2)


def _transition(ax: Axes, start: tuple[float, float], end: tuple[float, float], label: str, **where: Any) -> None:
    """An arrow from ``start`` to ``end`` with ``label`` at ``where["at"]`` (axes fractions)."""
    bend = where.pop("rad", 0.0)
    at = where.pop("at")
    ax.add_patch(
        FancyArrowPatch(
            start,
            end,
            connectionstyle=f"arc3,rad={bend}",
            arrowstyle="-|>",
            mutation_scale=12,
            linewidth=1.3,
            color="#444444",
        )
    )
    ax.text(*at, label, fontsize=7.5, color="#222222", linespacing=1.2, **{"ha": "center", "va": "center", **where})


def breaker_diagram(
    failures: int = 5,
    reset_s: float = 30.0,
    failure_rate: float | None = None,
    window: int = 20,
    ax: Axes | None = None,
) -> Axes:
    """The circuit breaker's state machine: closed, open and half-open, and what moves it.

    The labels carry the settings of ``week04_lib.circuit.CircuitBreaker`` (the same
    arguments): it opens after ``failures`` transient failures in a row or, with
    ``failure_rate``, when that share of the last ``window`` calls failed once at least
    ``min(failures, window)`` calls are in the window; it turns half-open when ``reset_s``
    have passed (seen by the next call or look at its state); the one probe's success
    closes it, its failure opens it again. Taught in notebook 04, section 4.5.
    """
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(6.4, 3.8))
    for state in _BOXES:
        _state_box(ax, state)
    if failure_rate is None:
        trip = f"{failures} transient failures in a row"
    else:
        enough = min(failures, window)
        trip = (
            f"failure rate \u2265 {failure_rate:.0%} of the last {window} calls\n(once at least {enough} calls are in)"
        )
    closed, opened, half = (_BOXES[s][:2] for s in ("closed", "open", "half_open"))
    w, h = _BOX_W / 2 + 0.012, _BOX_H / 2 + 0.012
    _transition(ax, (closed[0] + w, closed[1] + 0.04), (opened[0] - w, opened[1] + 0.04), trip, at=(0.5, 0.86))
    _transition(
        ax,
        (opened[0] - 0.03, opened[1] - h),
        (half[0] + w, half[1] + 0.05),
        f"reset_s = {reset_s:g} s\nhave passed",
        rad=0.2,
        at=(0.69, 0.42),
        ha="right",
    )
    _transition(
        ax,
        (half[0] + w, half[1] - 0.03),
        (opened[0] + 0.03, opened[1] - h),
        "the probe\nfails",
        rad=0.35,
        at=(0.94, 0.3),
    )
    _transition(
        ax,
        (half[0] - w, half[1] + 0.05),
        (closed[0], closed[1] - h),
        "the probe succeeds\n(a fresh count)",
        rad=-0.2,
        at=(0.12, 0.3),
    )
    ax.text(
        0.5,
        0.6,
        "a 400 is the service answering (a success);\na 429 counts as neither",
        ha="center",
        va="center",
        fontsize=7,
        color="#666666",
        style="italic",
    )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_axis_off()
    ax.set_title("The circuit breaker's three states")
    return ax
