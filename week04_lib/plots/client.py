"""Plots of notebook 05: the flow of one call, outcomes per configuration and latency distributions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import Any

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.patches import FancyBboxPatch, Patch, Rectangle

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


# The layers of one LLMClient.chat, in the order week04_lib/client.py applies them, each
# coloured by the notebook that teaches it. (label, notebook, what it does)
PART_COLORS = {"01": COLORS["neutral"], "02": COLORS["accent"], "03": COLORS["limit"], "04": COLORS["ok"]}
FLOW_STEPS = (
    ("validate", "05", "bad input: InvalidRequest, nothing sent"),
    ("request id + deadline", "02", "one id per call, on every attempt (X-Request-ID,\n"
     "Idempotency-Key); the total deadline starts"),
    ("cache lookup", "04", "for each model, the primary then the fallbacks:\na hit is the answer at once, cost 0"),
    ("circuit breaker", "04", "open: skip this model (CircuitOpen)"),
    ("rate limiter", "03", "retries with backoff around these two (gated by the\n"
     "adaptive throttle); each attempt first waits for RPM / TPM budget"),
    ("transport", "01", "one attempt: connect / read timeouts, deadline, typed\n"
     "errors; a permanent one (400, 401, 404) is raised at once"),
    ("store: breaker, limiter, cache", "04", "an answer: the breaker and the limiter learn of it,\n"
     "a whole answer is cached"),
    ("degrade", "03", "every model failed: a stale answer, else the queue,\nelse AllModelsFailed"),
    ("final log line + cost", "04", "exactly one per call, answered or not"),
)  # fmt: skip


def _flow_box(ax: Axes, x: float, y: float, w: float, h: float, text: str, part: str, size: float) -> None:
    color = PART_COLORS.get(part, COLORS["muted"])
    box = FancyBboxPatch(
        (x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0,rounding_size=0.12", facecolor=color, alpha=0.18,
        edgecolor=color, linewidth=1.3,
    )  # fmt: skip
    ax.add_patch(box)
    ax.text(x, y, text, ha="center", va="center", fontsize=size, fontweight="bold")
    ax.text(x + w / 2 - 0.06, y + h / 2 - 0.05, part, ha="right", va="top", fontsize=size - 2.5, color=color)


def _flow_arrow(ax: Axes, start: tuple[float, float], end: tuple[float, float], **style: Any) -> None:
    props = dict(arrowstyle="-|>", color=COLORS["muted"], linewidth=1.1, shrinkA=0, shrinkB=0) | style
    ax.annotate("", end, start, arrowprops=props)


def _flow_frame(ax: Axes, x0: float, y0: float, x1: float, y1: float, label: str, color: str) -> None:
    ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=color, linestyle="--", linewidth=1))
    ax.text(x0 + 0.08, y1 - 0.06, label, ha="left", va="top", fontsize=7.5, color=color, style="italic")


def call_flow(ax: Axes | None = None, compact: bool = False) -> Axes:
    """The flow of one ``LLMClient.chat`` through the layers, in the order ``client.py``
    applies them: validate, request id and deadline, then for each model (primary, then
    fallbacks) the cache, the breaker, and retries with backoff (the adaptive throttle gating
    them) of rate limiter then transport; the store; when every model failed, the degraded
    answers; and one final log line with the cost. Each box is coloured and tagged by the
    notebook that teaches it.

    ``compact=True`` draws the same layers as one small row: the map of the week (notebook
    01). Taught in notebook 05, section 5.1.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(7.4, 1.7) if compact else (7.4, 6.8))
    ax.set_axis_off()
    if compact:
        return _compact_flow(ax)
    w, h, x = 3.0, 0.46, 2.4
    ys = {label: 9.6 - i * 0.95 for i, (label, _, _) in enumerate(FLOW_STEPS)}
    ys["rate limiter"] -= 0.15  # room for the retry frame's label
    ys["transport"] -= 0.15
    ys["store: breaker, limiter, cache"] -= 0.3
    ys["degrade"] -= 0.35
    ys["final log line + cost"] -= 0.35
    for label, part, note in FLOW_STEPS:
        _flow_box(ax, x, ys[label], w, h, label, part, 8.5)
        ax.text(x + w / 2 + 0.95, ys[label], note, ha="left", va="center", fontsize=7.5, color="#333333", wrap=True)
    order = [label for label, _, _ in FLOW_STEPS]
    for upper, lower in pairwise(order):
        _flow_arrow(ax, (x, ys[upper] - h / 2), (x, ys[lower] + h / 2))
    # for each model: from the cache lookup to the store
    top, bottom = ys["cache lookup"] + h / 2 + 0.35, ys["store: breaker, limiter, cache"] - h / 2 - 0.12
    _flow_frame(ax, x - w / 2 - 0.35, bottom, x + w / 2 + 0.35, top, "each model", COLORS["bad"])
    # retries: around the limiter and the transport
    r_top, r_bottom = ys["rate limiter"] + h / 2 + 0.32, ys["transport"] - h / 2 - 0.1
    _flow_frame(ax, x - w / 2 - 0.1, r_bottom, x + w / 2 + 0.1, r_top, "retries (02)", PART_COLORS["02"])
    # loops: a transient error is retried; after the retries, the next model
    left = x - w / 2
    _flow_arrow(
        ax, (left, ys["transport"]), (left, ys["rate limiter"]), connectionstyle="arc3,rad=-0.9",
        color=PART_COLORS["02"],
    )  # fmt: skip
    edge = x - w / 2 - 0.35
    _flow_arrow(
        ax, (edge, r_bottom - 0.1), (edge, ys["cache lookup"]), connectionstyle="arc3,rad=-0.4",
        color=COLORS["bad"], linestyle=":",
    )  # fmt: skip
    middle = (r_bottom + ys["cache lookup"]) / 2
    ax.text(edge - 0.75, middle, "still failing after the retries: next model", rotation=90, ha="center", va="center",
            fontsize=7, color=COLORS["bad"])  # fmt: skip
    # exits to the right: an answer from the cache, skip on an open breaker
    right = x + w / 2
    for label in ("cache lookup", "circuit breaker"):
        _flow_arrow(ax, (right, ys[label]), (right + 0.85, ys[label]), color=COLORS["muted"])
    handles = [Patch(color=c, alpha=0.5, label=f"notebook {p}") for p, c in PART_COLORS.items()]
    ax.legend(handles=handles, loc="lower center", ncol=4, fontsize=7.5, bbox_to_anchor=(0.5, -0.02))
    ax.set_xlim(-0.2, 10.4)
    ax.set_ylim(ys["final log line + cost"] - 0.85, 10.35)
    ax.set_title("One call through LLMClient: the layers, in order")
    return ax


def _compact_flow(ax: Axes) -> Axes:
    steps = [
        ("validate", "05"), ("cache", "04"), ("breaker", "04"), ("limiter", "03"), ("transport", "01"),
        ("fallback /\ndegrade", "03"), ("log +\ncost", "04"),
    ]  # fmt: skip
    w, h, gap = 1.12, 0.62, 0.32
    xs = [w / 2 + i * (w + gap) for i in range(len(steps))]
    for (label, part), x in zip(steps, xs, strict=True):
        _flow_box(ax, x, 0.0, w, h, label, part, 7.5)
    for a, b in pairwise(xs):
        _flow_arrow(ax, (a + w / 2, 0.0), (b - w / 2, 0.0))
    # retries wrap the limiter and the transport
    x0, x1 = xs[3] - w / 2 - 0.1, xs[4] + w / 2 + 0.1
    _flow_frame(ax, x0, -h / 2 - 0.1, x1, h / 2 + 0.42, "retry + backoff (02)", PART_COLORS["02"])
    _flow_arrow(ax, (xs[4], -h / 2), (xs[3], -h / 2), connectionstyle="arc3,rad=-0.5", color=PART_COLORS["02"])
    ax.set_xlim(-0.1, xs[-1] + w / 2 + 0.1)
    ax.set_ylim(-h / 2 - 0.4, h / 2 + 0.5)
    ax.set_aspect("equal")
    ax.set_title("The week on one call: each layer, and the notebook that teaches it", fontsize=9)
    return ax
