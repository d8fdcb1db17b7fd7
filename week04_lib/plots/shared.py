"""Plots of notebook 03, section 3.8: several processes sending to one account."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

from .style import COLORS

REFUSED = "rate_limited"  # the fault the fake server records when its own limit refused a request
PROCESS_COLORS = [COLORS["neutral"], COLORS["ok"], COLORS["accent"], COLORS["muted"]]


def shared_budget(
    variants: Mapping[str, Sequence[Any]],
    limit_rpm: float,
    burst_s: float = 1.0,
    start: float | None = None,
    until_s: float | None = None,
    header: str = "X-Process",
) -> list[Axes]:
    """Several processes sending to one account: one panel per variant, side by side.

    ``variants`` maps a label (e.g. "each process its own limiter") to the requests one
    account received: the fake server's ``attempts``, each with ``.t`` (monotonic seconds),
    ``.headers`` (the process's name in the ``header`` header, any case) and ``.fault``
    ("rate_limited" when the server's own limit refused it with a 429). Each panel draws
    every process's requests summed over time (an x on each one refused with a 429), both
    processes together, and the account's limit: the server's bucket starts full, so by
    ``t`` seconds it may answer ``burst + limit_rpm / 60 * t`` requests (``burst_s`` as
    given to ``FakeLLMServer``). Time runs from ``start`` (default: the first request of
    any variant), so panels of variants run at the same time line up. One y scale: a sum
    at twice the limit must look twice as high. Returns the axes, left to right.
    Taught in notebook 03, section 3.8.
    """
    if not variants:
        raise ValueError("shared_budget needs at least one variant: {label: server.attempts}")
    if not limit_rpm or limit_rpm <= 0:
        raise ValueError(f"limit_rpm must be the account's requests per minute (> 0), got {limit_rpm!r}")
    runs = {label: _by_process(attempts, header) for label, attempts in variants.items()}
    every_t = [a.t for attempts in variants.values() for a in attempts]
    t0 = start if start is not None else min(every_t, default=0.0)
    end = until_s if until_s is not None else max((t - t0 for t in every_t), default=1.0) * 1.02 or 1.0
    rate, burst = limit_rpm / 60, max(1.0, limit_rpm / 60 * burst_s)  # the fake server's bucket
    names = sorted({name for processes in runs.values() for name in processes})
    colors = {name: PROCESS_COLORS[i % len(PROCESS_COLORS)] for i, name in enumerate(names)}
    most = max(max((len(a) for a in variants.values()), default=1), burst + rate * end)

    _, axes = plt.subplots(1, len(runs), figsize=(4.6 * len(runs), 3.6), sharey=True, squeeze=False)
    axes = list(axes[0])
    for ax, (label, processes) in zip(axes, runs.items(), strict=True):
        for name, attempts in processes.items():
            _cumulative(
                ax, [a.t - t0 for a in attempts], end, color=colors[name], linewidth=1.5, label=_sent(attempts, name)
            )
        together = sorted(a.t - t0 for attempts in processes.values() for a in attempts)
        _cumulative(ax, together, end, color="black", linewidth=2.2, label=f"together: {len(together)} sent")
        ax.plot(
            [0, end],
            [burst, burst + rate * end],
            color=COLORS["limit"],
            linestyle=(0, (4, 2)),
            linewidth=2,
            zorder=6,
            label=f"account limit: {limit_rpm:g}/min = {rate:g}/s, {burst:g} saved up",
        )
        _refusals(ax, processes, t0)
        answered, refused, other = _outcomes(variants[label])
        ax.set_title(f"{label}\n{answered} answered, {refused} refused (429)" + (f", {other} other" if other else ""))
        ax.set_xlim(0, end)
        ax.set_ylim(0, most * 1.12)
        ax.set_xlabel("seconds")
        ax.legend(loc="upper left")
    axes[0].set_ylabel("requests sent, cumulative")
    return axes


def _by_process(attempts: Sequence[Any], header: str) -> dict[str, list[Any]]:
    """The attempts of each process, in order of arrival, by the value of ``header``;
    the processes by name."""
    wanted = header.lower()
    processes: dict[str, list[Any]] = {}
    for attempt in sorted(attempts, key=lambda a: a.t):
        name = next((v for k, v in attempt.headers.items() if k.lower() == wanted), None)
        if name is None:
            raise ValueError(
                f"a request at t={attempt.t:.3f} has no {header} header: send "
                f"extra_headers={{{header!r}: name}} with every call, so the processes can be told apart"
            )
        processes.setdefault(name, []).append(attempt)
    return dict(sorted(processes.items()))  # the same order in every panel


def _sent(attempts: list[Any], name: str) -> str:
    return f"{name}: {len(attempts)} sent, {sum(a.fault == REFUSED for a in attempts)} refused"


def _refusals(ax: Axes, processes: Mapping[str, list[Any]], t0: float) -> None:
    """An x on each process's line where the server refused one of its requests."""
    points = [(a.t - t0, n) for attempts in processes.values() for n, a in enumerate(attempts, 1) if a.fault == REFUSED]
    if points:
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, "x", color=COLORS["bad"], markersize=5, markeredgewidth=1.5, zorder=5, label="refused (429)")


def _cumulative(ax: Axes, times: Sequence[float], end: float, **style: Any) -> None:
    """A step up by one at each time, from 0 at the start to the total at ``end``."""
    t = np.sort(np.asarray(times, dtype=float))
    counts = np.arange(t.size + 1)
    ax.step(np.r_[0.0, t, max(end, float(t.max(initial=0.0)))], np.r_[counts, t.size], where="post", **style)


def _outcomes(attempts: Sequence[Any]) -> tuple[int, int, int]:
    """Answered ("ok"), refused by the server's limit, and anything else."""
    answered = sum(a.fault == "ok" for a in attempts)
    refused = sum(a.fault == REFUSED for a in attempts)
    return answered, refused, len(attempts) - answered - refused
