"""Plots of notebook 01: latency tails, time to failure, and stream timelines."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter

from .style import COLORS, _axes

if TYPE_CHECKING:
    from ..config import Timeouts


def latency_survival(samples: Sequence[float], cutoffs: Mapping[str, float], ax: Axes | None = None) -> Axes:
    """The share of calls slower than x (a survival curve), on log axes, with each read timeout marked.

    A log y axis gives the tail as much room as the bulk: 10 %, 1 % and 0.1 % of the calls are
    equally far apart, so the few very slow calls a read timeout cuts are visible, not a flat
    line of empty bins. ``cutoffs`` maps a label (e.g. a preset name) to seconds; each is drawn
    as a line with a dot where it meets the curve: the share of ``samples`` it would cut. Dotted
    lines mark 1 % and 0.1 % of the calls: where the curve crosses them are the p99 and p99.9.
    Taught in notebook 01, section 1.6.
    """
    ax = _axes(ax)
    values = np.sort(np.asarray(samples, dtype=float))
    values = values[values > 0]
    if values.size == 0:
        raise ValueError("latency_survival needs at least one positive sample")
    n = values.size
    slower = 1.0 - np.arange(1, n + 1) / n  # share of calls slower than values[i]
    # the slowest call leaves no one slower, and a log axis has no zero: stop one call early
    ax.step(np.r_[values[0], values[:-1]], np.r_[1.0, slower[:-1]], where="post", color=COLORS["neutral"])
    floor = 0.5 / n
    for share, name in ((0.01, "p99"), (0.001, "p99.9")):
        if share > floor:
            ax.axhline(share, color=COLORS["muted"], linestyle=":", linewidth=1)
            ax.annotate(  # at the left, under the curve: the curve falls, so that corner is empty
                name,
                (0.01, share),
                xycoords=("axes fraction", "data"),
                ha="left",
                va="bottom",
                fontsize=8,
                color=COLORS["muted"],
            )
    past_the_tail = []  # cutoffs no call reaches: one label for all, or they would overlap
    for name, seconds in sorted(cutoffs.items(), key=lambda item: item[1]):
        cut = float(np.mean(values > seconds))
        ax.axvline(seconds, color=COLORS["bad"], linestyle="--", linewidth=1)
        if cut:
            ax.plot([seconds], [cut], "o", color=COLORS["bad"], markersize=4)
            _label_right(ax, seconds, cut, f"{name} {seconds:g}s: {_percent(cut)} slower")
        else:
            past_the_tail.append((name, seconds))
    if past_the_tail:  # in the top right corner, which a falling curve never reaches
        names = ", ".join(f"{name} {seconds:g}s" for name, seconds in past_the_tail)
        ax.annotate(
            f"{names}: none slower",
            (0.99, 0.97),
            xycoords="axes fraction",
            ha="right",
            va="top",
            fontsize=8,
            color=COLORS["bad"],
            bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8},
            zorder=5,
        )
    high = max([values[-1], *cutoffs.values()])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(np.quantile(values, 0.005), high * 3)  # the fastest 0.5 % would only stretch the flat top
    ax.set_ylim(floor, 1.3)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda share, _pos: _percent(share)))
    ax.set_xlabel("seconds x (log scale)")
    ax.set_ylabel("calls slower than x (log scale)")
    ax.set_title(f"{n:,} calls: how many each read timeout cuts")
    return ax


def _label_right(ax: Axes, x: float, y: float, text: str) -> None:
    """Text above and right of (x, y): under a falling curve, that corner is empty."""
    ax.annotate(
        text,
        (x, y),
        xytext=(4, 3),
        textcoords="offset points",
        fontsize=8,
        color=COLORS["bad"],
        bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8},
        zorder=5,  # over the next timeout's line
    )


def _percent(share: float) -> str:
    """0.5 -> '50%', 0.0314 -> '3.1%', 0.0002 -> '0.02%': two digits, however far into the tail."""
    percent = 100 * share
    return f"{percent:.0f}%" if percent >= 10 else f"{percent:.2g}%"


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


def stream_timeline(
    events: Mapping[str, Mapping[str, Any]],
    limits: Timeouts | Mapping[str, float | None] | None = None,
    ax: Axes | None = None,
) -> Axes:
    """One row per stream: when each chunk arrived, and how and when the client stopped.

    ``events`` maps a row's label to a mapping with ``chunks`` (seconds since the request,
    one per chunk with text), ``end`` (when the client stopped reading) and optionally
    ``comments`` (keep-alive comments: drawn faint), ``error`` (an exception or its name:
    a red cross at ``end``; without one the stream ended complete) and ``unbounded`` (True
    if it was still waiting when we gave up on it: an arrow). ``limits`` is a ``Timeouts``
    (or a mapping) whose ``first_token`` and ``idle`` are shaded in every row: the window
    the first chunk must land in (up to that chunk), then after each chunk the window the
    next must land in (up to the next), so a band ends where its clock ran out;
    ``total`` is a dashed line. ``None`` draws no limits. Taught in notebook 01, section 1.7.
    """
    if not events:
        raise ValueError("stream_timeline needs at least one stream: {label: {'chunks': [...], 'end': seconds}}")
    ax = _axes(ax)
    first_token, idle, total = (_limit(limits, name) for name in ("first_token", "idle", "total"))
    longest = max([_row_end(label, row) for label, row in events.items()] + [total or 0.0])
    in_legend: set[str] = set()

    def once(kind: str) -> str:
        """Each kind of mark in the legend once."""
        seen = kind in in_legend
        in_legend.add(kind)
        return "_nolegend_" if seen else kind

    for y, (label, row) in enumerate(events.items()):
        end = _row_end(label, row)
        chunks = sorted(float(t) for t in row.get("chunks", ()))
        band = (y - 0.3, 0.6)
        if first_token is not None:
            first = once(f"first token ≤ {first_token:g}s")
            until = min(first_token, end, *chunks[:1])  # the first chunk stops this clock
            ax.broken_barh([(0, until)], band, color=COLORS["accent"], alpha=0.25, label=first)
        if idle is not None and chunks:  # each chunk restarts the idle clock: the band ends where it ran out
            nexts = [*chunks[1:], end]
            windows = [(t, min(t + idle, after, end) - t) for t, after in zip(chunks, nexts, strict=True)]
            ax.broken_barh(windows, band, color=COLORS["limit"], alpha=0.25, label=once(f"next chunk ≤ {idle:g}s"))
        comments = [float(t) for t in row.get("comments", ()) if float(t) <= end]
        if comments:
            style = {"color": COLORS["muted"], "alpha": 0.6, "markersize": 7}
            ax.plot(comments, [y] * len(comments), "|", **style, label=once("keep-alive comment"))
        if chunks:
            style = {"color": COLORS["neutral"], "markersize": 12, "markeredgewidth": 1.6}
            ax.plot(chunks, [y] * len(chunks), "|", **style, label=once("chunk"))
        _stream_end(ax, y, end, row, longest)
    if total is not None:
        ax.axvline(total, color=COLORS["limit"], linestyle="--", linewidth=1.2, label=f"total {total:g}s")
    ax.set_yticks(range(len(events)), list(events))
    ax.set_ylim(len(events) - 0.5, -0.5)  # the first stream on top
    ax.set_xlim(0, longest * 1.45)  # room for the outcome written after each row's end
    ax.set_xlabel("seconds since the request")
    ax.grid(axis="y", visible=False)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title("Stream timeline" if limits is None else "Stream timeline: the three clocks")
    return ax


def _limit(limits: Timeouts | Mapping[str, float | None] | None, name: str) -> float | None:
    """``limits.name`` or ``limits[name]``; None when absent."""
    if limits is None:
        return None
    value = limits.get(name) if isinstance(limits, Mapping) else getattr(limits, name, None)
    return None if value is None else float(value)


def _row_end(label: str, row: Any) -> float:
    if not isinstance(row, Mapping) or "end" not in row:
        raise ValueError(f"stream {label!r}: each row needs 'end' (seconds) and 'chunks' (a list of seconds)")
    return float(row["end"])


def _stream_end(ax: Axes, y: float, end: float, row: Mapping[str, Any], longest: float) -> None:
    """How the stream ended: complete (green dot), cut with an error (red cross), or still waiting (arrow)."""
    error = row.get("error")
    color, offset = COLORS["bad"], longest * 0.03
    if row.get("unbounded"):
        arrow = {"arrowstyle": "->", "color": color, "linewidth": 1.5}
        ax.annotate("", (end + longest * 0.1, y), xytext=(end, y), arrowprops=arrow)
        text, offset = "still waiting", longest * 0.12
    elif error is not None:
        ax.plot([end], [y], "X", color=color, markersize=8)
        text = error if isinstance(error, str) else type(error).__name__
    else:
        color, text = COLORS["ok"], "complete"
        ax.plot([end], [y], "o", color=color, markersize=6)
    ax.text(end + offset, y, f"{text} {end:.2f}s", va="center", fontsize=8, color=color)
