"""Plots of notebook 05: outcomes per configuration and latency distributions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib as mpl
import numpy as np
from matplotlib.axes import Axes

from .style import COLORS, _axes, _marked_line

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
