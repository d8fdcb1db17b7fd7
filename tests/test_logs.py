"""JSON-lines logs: the formatter, the file handler, reading back with pandas, the summary."""

import json
import logging

import pytest

from week04_lib.fakeserver import FakeLLMServer
from week04_lib.logs import FIELDS, JsonFormatter, format_summary, log_to, read_logs, summarize
from week04_lib.retry import RetryPolicy, wait_backoff
from week04_lib.transport import Transport
from week04_lib.virtual_time import VirtualClock

from .conftest import HELLO


@pytest.fixture
def log_file(tmp_path):
    path = tmp_path / "calls.jsonl"
    handler = log_to(path, secrets=["sk-secret-123"])
    yield path
    logging.getLogger("week04_lib").removeHandler(handler)
    handler.close()


def emit(event, **fields):
    logging.getLogger("week04_lib.test").info("%s happened", event, extra={"event": event, **fields})


def test_every_line_has_every_field(log_file):
    emit("final", request_id="r1", model="m", latency_s=0.25, success=True, tokens_in=10, tokens_out=5)
    line = json.loads(log_file.read_text().splitlines()[-1])
    assert list(line)[: len(FIELDS)] == list(FIELDS)
    assert (line["event"], line["request_id"], line["latency_s"], line["success"]) == ("final", "r1", 0.25, True)
    assert line["cache_hit"] is None and line["message"] == "final happened" and line["ts"].endswith("Z")


def test_secrets_are_scrubbed_everywhere(log_file):
    emit("attempt", error_type="auth", model="sk-secret-123")
    logging.getLogger("week04_lib.test").warning("key was sk-secret-123")
    text = log_file.read_text()
    assert "sk-secret-123" not in text and text.count("***") == 2


def test_an_owners_handler_keeps_only_that_owners_records(tmp_path):
    from week04_lib.logs import records_of, stop_logging

    mine, theirs = object(), object()
    path = tmp_path / "mine.jsonl"
    handler = log_to(path, owner=mine)
    try:
        with records_of(mine):
            emit("attempt", request_id="mine")
        with records_of(theirs):
            emit("attempt", request_id="theirs")
        emit("attempt", request_id="nobody's")
    finally:
        stop_logging(handler)
    assert [json.loads(line)["request_id"] for line in path.read_text().splitlines()] == ["mine"]


def test_retries_are_logged_as_json(log_file):
    clock = VirtualClock()
    with FakeLLMServer(["503", "ok"], latency=0) as srv, Transport(srv.url) as t:
        RetryPolicy(wait=wait_backoff("none", 0.5, 1), clock=clock, sleep=clock.sleep).call(
            lambda n: t.chat({"model": "m", "messages": HELLO}, request_id="rid", attempt=n), request_id="rid"
        )
    frame = read_logs(log_file)
    retry = frame[frame["event"] == "retry"].iloc[0]
    assert (retry["request_id"], retry["attempt"], retry["error_type"], retry["retry_sleep_s"]) == (
        "rid",
        1,
        "server_error",
        0.5,
    )


def test_virtual_timestamps():
    record = logging.LogRecord("week04_lib", logging.INFO, __file__, 1, "x", None, None)
    record.ts = 0.0
    assert json.loads(JsonFormatter().format(record))["ts"] == "1970-01-01T00:00:00.000Z"


def test_read_logs_of_nothing(tmp_path):
    assert list(read_logs(tmp_path / "none.jsonl").columns) == list(FIELDS)
    assert summarize(read_logs(tmp_path / "none.jsonl")) == {"calls": 0}
    assert format_summary({"calls": 0}) == "no calls in this log"


def test_summary_numbers(log_file):
    for i in range(100):
        emit("attempt", request_id=f"r{i}", model="a" if i < 80 else "b")
        ok = i % 10 != 0
        emit(
            "final",
            request_id=f"r{i}",
            model="a" if i < 80 else "b",
            latency_s=float(i),
            success=ok,
            error_type=None if ok else "server_error",
            tokens_in=10,
            tokens_out=2,
            cost_usd=0.001,
            cache_hit=i < 25,
        )
    s = summarize(read_logs(log_file))
    assert s["calls"] == 100 and s["error_rate"] == 0.1 and s["errors_by_type"] == {"server_error": 10}
    assert s["latency_p50_s"] == 49.5 and s["latency_p99_s"] == pytest.approx(98.01)
    assert s["by_model"]["a"]["calls"] == 80 and s["by_model"]["b"]["error_rate"] == 0.1
    assert (s["tokens_in"], s["tokens_out"], s["cost_usd"], s["cache_hit_rate"]) == (1000, 200, 0.1, 0.25)
    assert s["attempts_per_call"] == 1.0
    assert "100 calls" in format_summary(s) and "server_error 10" in format_summary(s)


def test_a_secret_that_json_escapes_is_scrubbed_too():
    secret = 'sk-"odd\\key-é'
    record = logging.LogRecord("week04_lib", logging.INFO, __file__, 1, "key is %s", (secret,), None)
    line = JsonFormatter([secret]).format(record)
    assert "odd" not in line and json.loads(line)["message"] == "key is ***"
