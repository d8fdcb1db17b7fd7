"""Plots of notebook 03: rate-limit timelines and budgets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

from ..ratelimit import TokenBucket
from .style import COLORS, _axes


def rate_timeline(
    series: Mapping[str, Sequence[float]],
    refused: Mapping[str, Sequence[float]] | None = None,
    limit_rps: float | None = None,
    ax: Axes | None = None,
    bin_s: float = 0.25,
    until_s: float | None = None,
    ymax: float | None = None,
) -> Axes:
    """Requests per second over time, one step line per client, its 429s filled below.

    ``series`` maps a label (a client configuration) to the send times of every request
    it made, in seconds from the start; ``refused`` maps the same labels to the times of
    the requests the server refused with 429 (a subset). ``limit_rps`` draws the server's
    limit, on top of the data and labelled. A client without a limiter spikes over the line
    and its excess comes back as 429s; a limited client runs as a flat line just under it.
    ``ymax`` fixes the y axis (to compare panels: see ``rate_panels``).
    Taught in notebook 03, section 3.2.
    """
    ax = _axes(ax)
    refused = refused or {}
    end = until_s
    if end is None:
        end = max((max(t, default=0.0) for t in (*series.values(), *refused.values())), default=1.0)
    edges = np.arange(0.0, end + bin_s, bin_s)
    palette = [COLORS["neutral"], COLORS["ok"], COLORS["accent"], COLORS["muted"]]
    tallest = limit_rps or 1.0
    for i, (label, times) in enumerate(series.items()):
        counts, _ = np.histogram(np.asarray(times, dtype=float), bins=edges)
        rates = counts / bin_s
        tallest = max(tallest, float(rates.max(initial=0)))
        ax.stairs(
            rates,
            edges,
            color=palette[i % len(palette)],
            linewidth=1.8,
            zorder=4,
            label=f"{label}: {len(times)} requests sent",
        )
        no = refused.get(label)
        if no is not None:
            bad, _ = np.histogram(np.asarray(no, dtype=float), bins=edges)
            ax.stairs(
                bad / bin_s,
                edges,
                fill=True,
                color=COLORS["bad"],
                alpha=0.45,
                linewidth=0,
                zorder=2,
                label=f"{len(no)} of them refused (429)",
            )
    if limit_rps is not None:  # drawn last and on top: a limited client runs right on it
        ax.axhline(
            limit_rps,
            color=COLORS["limit"],
            linestyle=(0, (4, 2)),
            linewidth=2,
            zorder=6,
            label=f"server limit: {limit_rps:g}/s",
        )
        ax.annotate(
            f"server limit {limit_rps:g}/s",
            (1, limit_rps),
            xycoords=("axes fraction", "data"),
            xytext=(-3, 4),
            textcoords="offset points",
            ha="right",
            fontsize=8,
            fontweight="bold",
            color=COLORS["limit"],
            zorder=7,
            bbox={"facecolor": "white", "edgecolor": "none", "pad": 1, "alpha": 0.85},
        )
    ax.set_xlim(0, end)
    ax.set_ylim(0, ymax if ymax is not None else tallest * 1.5)  # headroom for the legend
    ax.set_xlabel("seconds")
    ax.set_ylabel(f"requests per second\n({bin_s:g}s bins)")
    ax.legend(loc="upper right")
    ax.set_title("Requests per second")
    return ax


def _per_minute(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def limit_budget(workloads: Mapping[str, Mapping[str, float]], ax: Axes | None = None) -> Axes:
    """Horizontal bars: the calls per minute each limit allows, per workload.

    ``workloads`` maps a workload label to ``{limit name: calls per minute}`` (e.g. RPM,
    TPM and concurrency). The smallest bar of each workload is the limit that bites
    first: drawn solid and labelled; the others are drawn faded. Log x axis, since the
    limits differ by orders of magnitude.
    Taught in notebook 03, section 3.3.
    """
    ax = _axes(ax)
    names = list(dict.fromkeys(name for limits in workloads.values() for name in limits))
    palette = [COLORS["neutral"], COLORS["accent"], COLORS["limit"], COLORS["ok"]]
    colors = {name: palette[i % len(palette)] for i, name in enumerate(names)}
    height = 0.8 / max(len(names), 1)
    largest = 1.0
    for y, limits in enumerate(workloads.values()):
        binding = min(limits, key=lambda name: limits[name])
        for j, name in enumerate(names):
            if name not in limits:
                continue
            value = float(limits[name])
            largest = max(largest, value)
            pos = y + (j - (len(names) - 1) / 2) * height
            bites = name == binding
            ax.barh(pos, value, height=height * 0.9, color=colors[name], alpha=0.95 if bites else 0.3)
            text = f"{name} {_per_minute(value)}/min" + ("  <- bites first" if bites else "")
            ax.text(value * 1.1, pos, text, va="center", fontsize=8, fontweight="bold" if bites else "normal")
    ax.set_xscale("log")
    ax.set_xlim(1, largest * 30)
    ax.xaxis.set_major_formatter(mpl.ticker.FuncFormatter(lambda value, _: f"{value:,.0f}"))
    ax.set_yticks(range(len(workloads)), list(workloads))
    ax.set_ylim(len(workloads) - 0.5, -0.5)  # the first workload on top
    ax.set_xlabel("calls per minute the limit allows (log scale)")
    ax.grid(axis="y", visible=False)
    ax.set_title("Which limit bites first")
    return ax


def cumulative_grants(
    times: Sequence[float],
    amounts: Sequence[float] | None = None,
    rate_per_s: float | None = None,
    ax: Axes | None = None,
    unit: str = "requests",
    label: str = "granted",
) -> Axes:
    """What a limiter let through, summed over time, against the budget line.

    ``times`` are grant times (e.g. ``Permit.granted_at`` in virtual seconds) and
    ``amounts`` what each grant spent (1 request each when None). ``rate_per_s`` draws the
    budget, ``rate_per_s * t``: a limiter keeps the step line close to it, at most one
    call above it.
    Taught in notebook 03, section 3.3.
    """
    ax = _axes(ax)
    order = np.argsort(np.asarray(times, dtype=float), kind="stable")
    t = np.asarray(times, dtype=float)[order]
    spent = np.ones_like(t) if amounts is None else np.asarray(amounts, dtype=float)[order]
    total = np.cumsum(spent)
    end = float(t.max(initial=0.0)) * 1.05 or 1.0
    if t.size:
        ax.step(np.r_[0.0, t, end], np.r_[0.0, total, total[-1]], where="post", color=COLORS["neutral"], label=label)
        ax.plot(t, total, "o", color=COLORS["neutral"], markersize=3)
    if rate_per_s is not None:
        ax.plot(
            [0, end],
            [0, rate_per_s * end],
            color=COLORS["limit"],
            linestyle="--",
            linewidth=1.2,
            label=f"budget: {rate_per_s:,.4g} {unit}/s",
        )
    ax.set_xlim(0, end)
    ax.set_ylim(0, max(float(total[-1]) if t.size else 1.0, (rate_per_s or 0) * end) * 1.08)
    ax.set_xlabel("seconds (virtual)")
    ax.set_ylabel(f"{unit} granted, cumulative")
    ax.legend(loc="upper left")
    ax.set_title(f"Cumulative {unit} granted")
    return ax


def rate_panels(
    runs: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    limit_rps: float | None = None,
    bin_s: float = 0.1,
    titles: Mapping[str, str] | None = None,
) -> list[Axes]:
    """``rate_timeline`` as stacked panels on one x and one y scale, one per client.

    ``runs`` maps a label to (send times, refused times) in seconds; ``titles`` maps a
    label to its panel's title. Sharing the y scale is the point: a flat line at the limit
    and a line spiking over it must be drawn to the same height to be compared.
    Taught in notebook 03, section 3.2.
    """
    edges = np.arange(0.0, max((max(sent, default=0.0) for sent, _ in runs.values()), default=1.0) + bin_s, bin_s)
    peak = max((np.histogram(np.asarray(sent, dtype=float), bins=edges)[0].max(initial=0) for sent, _ in runs.values()))
    ymax = max(float(peak) / bin_s, limit_rps or 0.0) * 1.45  # headroom for the legend
    _, axes = plt.subplots(len(runs), 1, figsize=(6.4, 2.6 * len(runs)), sharex=True, sharey=True)
    axes = list(np.atleast_1d(axes))
    for ax, (label, (sent, refused)) in zip(axes, runs.items(), strict=True):
        rate_timeline(
            {label: sent},
            {label: refused},
            limit_rps=limit_rps,
            ax=ax,
            bin_s=bin_s,
            ymax=ymax,
            until_s=float(edges[-1]),
        )
        ax.set_title((titles or {}).get(label, label))
    for ax in axes[:-1]:
        ax.set_xlabel("")
    return axes


def token_bucket(
    arrivals: Sequence[float],
    rate: float,
    capacity: float,
    amount: float = 1.0,
    until_s: float | None = None,
    ax: Axes | None = None,
) -> Axes:
    """A token bucket over time: its level, the requests that take from it, and their waits.

    Runs the package's own ``ratelimit.TokenBucket`` on a virtual clock, so the picture is
    exact and the same every time: each request arriving at a time in ``arrivals`` takes
    ``amount`` tokens, at once if the bucket holds them (granted) or, if not, as soon as
    they have refilled (waited: the arrow runs from arrival to grant, the way
    ``RateLimiter`` reserves a place). The level refills at ``rate`` a second and never
    rises above ``capacity``, the burst a quiet spell saves up.
    Taught in notebook 03, section 3.1.
    """
    ax = _axes(ax)
    now = [0.0]
    bucket = TokenBucket(rate, capacity, clock=lambda: now[0])
    grants = []  # (arrival, grant)
    for t in sorted(arrivals):
        now[0] = t
        wait = bucket.wait_for(amount)
        bucket.take(amount, at=t + wait)  # a reservation when it has to wait
        grants.append((t, t + wait))
    end = until_s if until_s is not None else max((g for _, g in grants), default=1.0) + capacity / rate
    # The level, replayed on a second real bucket: refills between grants, a step down at each.
    replay = TokenBucket(rate, capacity, clock=lambda: 0.0)
    xs, ys, last = [0.0], [float(capacity)], 0.0
    for grant in [*sorted(g for _, g in grants), end]:
        for t in np.linspace(last, grant, 40)[1:]:
            xs.append(float(t))
            ys.append(replay.level_at(float(t)))
        if grant < end:
            replay.take(amount, at=grant)
            xs.append(grant)
            ys.append(replay.level_at(grant))
        last = grant
    ax.fill_between(xs, ys, color=COLORS["neutral"], alpha=0.15, linewidth=0)
    ax.plot(xs, ys, color=COLORS["neutral"], linewidth=1.8, label="tokens in the bucket")
    ax.axhline(capacity, color=COLORS["limit"], linestyle="--", linewidth=1.2)
    ax.annotate(
        f"capacity {capacity:g} (the burst it saves up)",
        (end, capacity),
        xytext=(-3, 3),
        textcoords="offset points",
        ha="right",
        fontsize=8,
        color=COLORS["limit"],
    )
    lane = -0.25 * capacity  # requests drawn below the level: one row, waiting ones staggered
    granted = [a for a, g in grants if g == a]
    waited = [
        (a, g, lane - 0.12 * capacity * (1 + k % 2)) for k, (a, g) in enumerate((a, g) for a, g in grants if g > a)
    ]
    ax.plot(granted, [lane] * len(granted), "o", color=COLORS["ok"], markersize=6, label="request, granted at once")
    for a, g, y in waited:
        ax.annotate(
            "", (g, y), xytext=(a, y), arrowprops={"arrowstyle": "-|>", "color": COLORS["accent"], "linewidth": 1.4}
        )
    ax.plot(
        [a for a, _, _ in waited],
        [y for _, _, y in waited],
        "s",
        color=COLORS["accent"],
        markersize=5,
        label="request that waited (arrow: the wait)",
    )
    for _, g in grants:  # each grant's token leaves the level here
        ax.plot([g, g], [lane, capacity], color=COLORS["muted"], linewidth=0.5, linestyle=":", zorder=0)
    slope_at = _longest_climb(xs, ys)  # label the refill where the level climbs longest
    if slope_at is not None:
        x, y = slope_at
        ax.annotate(
            f"refill: {rate:g} token{'s' if rate != 1 else ''} a second",
            (x, y),
            xytext=(8, -14),
            textcoords="offset points",
            fontsize=8,
            color=COLORS["neutral"],
            arrowprops={"arrowstyle": "-", "color": COLORS["neutral"], "linewidth": 0.8},
        )
    ax.set_xlim(0, end)
    ax.set_ylim(lane - 0.36 * capacity, capacity * 1.3)
    ax.set_yticks([v for v in ax.get_yticks() if 0 <= v <= capacity])
    ax.set_xlabel("seconds (virtual)")
    ax.set_ylabel("tokens")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=3)
    ax.set_title(f"A token bucket: {rate:g} a second, holds {capacity:g}")
    return ax


def _longest_climb(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float] | None:
    """The middle of the longest stretch over which the level rises: where to label the refill."""
    best, start = None, None
    for i in range(1, len(xs)):
        rising = ys[i] > ys[i - 1] + 1e-12 and xs[i] > xs[i - 1]
        if rising and start is None:
            start = i - 1
        if start is not None and (not rising or i == len(xs) - 1):
            stop = i if rising else i - 1
            if best is None or xs[stop] - xs[start] > xs[best[1]] - xs[best[0]]:
                best = (start, stop)
            start = None
    if best is None:
        return None
    mid = (best[0] + best[1]) // 2
    return xs[mid], ys[mid]
