"""The committed incident log is what its script makes, and holds what notebook 04 finds."""

import runpy
from pathlib import Path

from week04_lib.logs import read_logs, summarize

DATA = Path(__file__).resolve().parent.parent / "data"


def test_the_script_regenerates_the_committed_file(tmp_path):
    script = runpy.run_path(str(DATA / "make_incident_logs.py"))
    script["main"](tmp_path / "again.jsonl")
    assert (tmp_path / "again.jsonl").read_bytes() == (DATA / "incident_logs.jsonl").read_bytes()


def test_the_incidents_are_in_it():
    frame = read_logs(DATA / "incident_logs.jsonl")
    summary = summarize(frame)
    assert summary["calls"] > 2000 and summary["errors_by_type"]["all_models_failed"] > 0
    attempts = frame[frame["event"] == "attempt"].set_index("ts")
    failing = attempts[~attempts["success"].astype(bool)]
    outage = failing[failing["status_code"] == 503]
    storm = failing[failing["status_code"] == 429]
    assert (
        "14:21" <= outage.index.min().strftime("%H:%M") <= "14:22" and outage.index.max().strftime("%H:%M") <= "14:33"
    )
    assert storm.index.min().strftime("%H:%M") == "14:44" and storm.index.max().strftime("%H:%M") == "14:49"
    assert set(frame.loc[frame["event"] == "breaker", "breaker_state"]) == {"open", "half_open", "closed"}
