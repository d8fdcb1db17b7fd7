"""plots.stream_timeline: one row per stream, its chunks, the clocks' windows and how it ended."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest

from week04_lib import errors, plots
from week04_lib.config import Timeouts

LIMITS = Timeouts(connect=1, read=5, total=1.2, first_token=0.4, idle=0.3)
EVENTS = {
    "healthy": {"chunks": [0.1, 0.15, 0.2], "end": 0.25},
    "stall": {
        "chunks": [0.1, 0.15],
        "end": 0.45,
        "error": errors.StreamTimeout("the stream stalled", partial_text="Re: hi"),
    },
    "keep-alive": {"chunks": [], "comments": [0.1, 0.2, 0.3, 0.5], "end": 0.4, "error": "FirstTokenTimeout"},
    "gave up waiting": {"chunks": [0.1], "end": 1.0, "unbounded": True},
}


@pytest.fixture
def ax():
    fig, ax = plt.subplots()
    yield ax
    plt.close(fig)


def x_spans(collection) -> list[tuple[float, float]]:
    """The (left, right) of every rectangle a broken_barh drew."""
    return [(min(p.vertices[:, 0]), max(p.vertices[:, 0])) for p in collection.get_paths()]


def test_one_row_per_stream_in_order_with_how_it_ended(ax):
    assert plots.stream_timeline(EVENTS, LIMITS, ax=ax) is ax
    assert [t.get_text() for t in ax.get_yticklabels()] == list(EVENTS)
    texts = [t.get_text() for t in ax.texts if t.get_text()]  # the arrow is an empty annotation
    assert texts == ["complete 0.25s", "StreamTimeout 0.45s", "FirstTokenTimeout 0.40s", "still waiting 1.00s"]
    assert ax.get_ylim() == (3.5, -0.5)  # the first stream on top
    assert ax.get_xlim()[1] > 1.2  # the total and the arrow fit


def test_limits_are_shaded_per_row_and_the_total_is_a_line(ax):
    plots.stream_timeline(EVENTS, LIMITS, ax=ax)
    # the first-token window of every row: it ends at the first chunk, the limit, or the end
    windows = [c for c in ax.collections if plots.COLORS["accent"].lower() in _hex(c)]
    assert [x_spans(c) for c in windows] == [[(0, 0.1)], [(0, 0.1)], [(0, 0.4)], [(0, 0.1)]]
    # after each chunk the next must come within idle: the stall's window runs out at its cut
    bands = [c for c in ax.collections if plots.COLORS["limit"].lower() in _hex(c)]
    assert x_spans(bands[1]) == [(0.1, 0.15), pytest.approx((0.15, 0.45))]
    assert x_spans(bands[0])[-1] == pytest.approx((0.2, 0.25))  # a complete stream: cut at its end
    assert len(bands) == 3  # no chunk in the keep-alive row: no idle window
    assert any(list(line.get_xdata()) == [1.2, 1.2] for line in ax.get_lines())
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert sorted(legend) == sorted(
        ["first token ≤ 0.4s", "next chunk ≤ 0.3s", "chunk", "keep-alive comment", "total 1.2s"]
    )


def test_comments_after_the_end_are_not_drawn(ax):
    plots.stream_timeline(EVENTS, LIMITS, ax=ax)
    comments = [line for line in ax.get_lines() if line.get_label() == "keep-alive comment"]
    assert list(comments[0].get_xdata()) == [0.1, 0.2, 0.3]


def test_without_limits_no_windows_and_no_total(ax):
    plots.stream_timeline(EVENTS, None, ax=ax)
    assert not ax.collections
    assert not [t for t in ax.get_legend().get_texts() if t.get_text().startswith("total")]
    assert ax.get_title() == "Stream timeline"


def test_limits_may_be_a_mapping(ax):
    plots.stream_timeline({"s": {"chunks": [0.5], "end": 0.6}}, {"first_token": 0.4}, ax=ax)
    assert [x_spans(c) for c in ax.collections] == [[(0, 0.4)]]


def test_bad_input_says_what_a_row_needs():
    with pytest.raises(ValueError, match="at least one stream"):
        plots.stream_timeline({}, LIMITS)
    with pytest.raises(ValueError, match=r"'broken'.*needs 'end'"):
        plots.stream_timeline({"broken": {"chunks": [0.1]}}, LIMITS)


def _hex(collection) -> str:
    return matplotlib.colors.to_hex(collection.get_facecolor()[0][:3]).lower()
