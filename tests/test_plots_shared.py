"""plots.shared_budget: two processes sending to one account, one panel per variant."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import pytest

from week04_lib import plots


@dataclass(frozen=True)
class Sent:
    """What the fake server records of a request (``FakeLLMServer.attempts``): the part used."""

    t: float
    process: str
    fault: str = "ok"
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.headers:  # as the client sends it: extra_headers={"X-Process": name}
            self.headers["X-Process"] = self.process


START = 100.0  # monotonic seconds, as the server records them
APART = [  # each process its own limiter: B's last two are refused
    Sent(100.1, "A"),
    Sent(100.2, "B"),
    Sent(100.6, "A"),
    Sent(100.7, "B", "rate_limited"),
    Sent(101.2, "B", "rate_limited"),
]
POOLED = [Sent(100.1, "A"), Sent(100.6, "B"), Sent(101.1, "A")]  # one budget: none refused
VARIANTS = {"each its own": APART, "one budget": POOLED}


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def lines(ax) -> dict[str, matplotlib.lines.Line2D]:
    return {line.get_label(): line for line in ax.get_lines()}


def legend(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_one_panel_per_variant_titled_with_its_counts():
    axes = plots.shared_budget(VARIANTS, limit_rpm=120, start=START)
    assert len(axes) == 2
    assert axes[0].get_title() == "each its own\n3 answered, 2 refused (429)"
    assert axes[1].get_title() == "one budget\n3 answered, 0 refused (429)"
    assert axes[0].get_position().x0 < axes[1].get_position().x0  # side by side
    assert axes[0].get_ylim() == axes[1].get_ylim()  # one y scale
    assert axes[0].get_ylabel() == "requests sent, cumulative"


def test_each_process_and_both_together_summed_over_time():
    ax = plots.shared_budget(VARIANTS, limit_rpm=120, start=START, until_s=1.5)[0]
    assert legend(ax) == [
        "A: 2 sent, 0 refused",
        "B: 3 sent, 2 refused",
        "together: 5 sent",
        "account limit: 120/min = 2/s, 2 saved up",
        "refused (429)",
    ]
    b = lines(ax)["B: 3 sent, 2 refused"]
    assert list(b.get_xdata()) == pytest.approx([0, 0.2, 0.7, 1.2, 1.5])  # from the start to until_s
    assert list(b.get_ydata()) == [0, 1, 2, 3, 3]
    assert b.get_drawstyle() == "steps-post"
    together = lines(ax)["together: 5 sent"]
    assert list(together.get_xdata()) == pytest.approx([0, 0.1, 0.2, 0.6, 0.7, 1.2, 1.5])
    assert list(together.get_ydata()) == [0, 1, 2, 3, 4, 5, 5]


def test_refused_requests_are_marked_on_their_process_line():
    axes = plots.shared_budget(VARIANTS, limit_rpm=120, start=START)
    marks = lines(axes[0])["refused (429)"]
    assert marks.get_marker() == "x"
    assert list(marks.get_xdata()) == pytest.approx([0.7, 1.2])
    assert list(marks.get_ydata()) == [2, 3]  # on B's line: its 2nd and 3rd request
    assert "refused (429)" not in lines(axes[1])  # nothing refused: nothing marked, not in the legend


@pytest.mark.parametrize(
    ("rpm", "burst_s", "saved", "rate"),
    [(120, 1.0, 2, 2), (600, 0.5, 5, 10), (30, 1.0, 1, 0.5)],  # the server saves at least one request
)
def test_the_account_limit_starts_at_the_servers_burst_and_climbs_at_rpm_over_60(rpm, burst_s, saved, rate):
    ax = plots.shared_budget(VARIANTS, limit_rpm=rpm, burst_s=burst_s, start=START, until_s=2.0)[0]
    limit = lines(ax)[f"account limit: {rpm}/min = {rate:g}/s, {saved} saved up"]
    assert list(limit.get_xdata()) == [0, 2.0]
    assert list(limit.get_ydata()) == pytest.approx([saved, saved + rate * 2.0])
    assert ax.get_xlim() == (0, 2.0)
    assert ax.get_ylim()[1] > saved + rate * 2.0  # the limit fits


def test_the_y_scale_fits_the_busiest_variant():
    busy = [Sent(100 + i / 100, "A") for i in range(40)]  # 40 requests in 0.4 s, far over 2/s
    axes = plots.shared_budget({"busy": busy, "quiet": POOLED}, limit_rpm=120, start=START)
    assert axes[1].get_ylim()[1] >= 40


def test_time_starts_at_the_first_request_of_any_variant_by_default():
    late = [Sent(100.5, "A"), Sent(100.9, "B")]
    axes = plots.shared_budget({"early": POOLED, "late": late}, limit_rpm=120)
    assert list(lines(axes[1])["A: 1 sent, 0 refused"].get_xdata())[:2] == pytest.approx([0, 0.4])


def test_processes_are_told_apart_by_the_header_in_any_case_and_keep_their_order():
    lower = [Sent(100.1, "B", headers={"x-process": "B"}), Sent(100.2, "A", headers={"x-process": "A"})]
    ax = plots.shared_budget({"v": lower}, limit_rpm=120)[0]
    assert legend(ax)[:2] == ["A: 1 sent, 0 refused", "B: 1 sent, 0 refused"]
    assert lines(ax)["A: 1 sent, 0 refused"].get_color() == plots.COLORS["neutral"]
    assert lines(ax)["B: 1 sent, 0 refused"].get_color() == plots.COLORS["ok"]


def test_other_failures_are_counted_apart_from_answers_and_429s():
    ax = plots.shared_budget({"v": [Sent(100.1, "A"), Sent(100.2, "A", "503")]}, limit_rpm=120)[0]
    assert ax.get_title() == "v\n1 answered, 0 refused (429), 1 other"


def test_bad_input_says_what_to_do():
    with pytest.raises(ValueError, match=r"extra_headers=\{'X-Process': name\}"):
        plots.shared_budget({"v": [Sent(100.1, "A", headers={"X-Other": "A"})]}, limit_rpm=120)
    with pytest.raises(ValueError, match="at least one variant"):
        plots.shared_budget({}, limit_rpm=120)
    with pytest.raises(ValueError, match="limit_rpm"):
        plots.shared_budget(VARIANTS, limit_rpm=0)
