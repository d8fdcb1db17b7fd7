"""Plots of notebook 04, section 4.5: a circuit breaker's states over a run, and its diagram."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from matplotlib.axes import Axes
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from .style import COLORS, _axes

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
