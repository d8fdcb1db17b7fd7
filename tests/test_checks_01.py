"""Notebook 01's checks pass the reference solutions and fail wrong answers (real fake servers, no mocks)."""

from __future__ import annotations

import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import urllib3

from week04_lib import ClientConfig, LLMClient, errors
from week04_lib.config import PRESETS, Timeouts
from week04_lib.exercises import load_file
from week04_lib.fakeserver import FakeLLMServer
from week04_lib.transport import Transport

NOTEBOOKS = Path(__file__).parents[1] / "notebooks"


checks = load_file(NOTEBOOKS / "checks" / "checks_01.py")
solutions = load_file(NOTEBOOKS / "solutions" / "01_solutions.py")
PAYLOAD = checks.PAYLOAD


# -- the reference passes every check
@pytest.mark.parametrize("name", ["pick_preset", "call_with_budget", "post_with_deadline"])
def test_reference_passes(name):
    getattr(checks, f"check_{name}")(getattr(solutions, name))


# -- ★ wrong answers
def pick_preset_with_embedding(samples, max_cut=0.01):
    """Wrong: the embedding preset is not for chat."""
    for name in sorted(PRESETS, key=lambda n: PRESETS[n][1]):
        if sum(s > PRESETS[name][1] for s in samples) / len(samples) <= max_cut:
            return name
    raise ValueError("none fits")


def pick_preset_never_raises(samples, max_cut=0.01):
    """Wrong: falls back on the longest preset instead of saying that none fits."""
    for name in ("quick_chat", "standard", "long_form"):
        if sum(s > PRESETS[name][1] for s in samples) / len(samples) <= max_cut:
            return name
    return "long_form"


@pytest.mark.parametrize("wrong", [pick_preset_with_embedding, pick_preset_never_raises])
def test_pick_preset_check_fails_wrong_answers(wrong):
    with pytest.raises(AssertionError):
        checks.check_pick_preset(wrong)


# -- ★★ wrong answers
def budget_per_attempt(url, payload, budget_s):
    """Wrong: each attempt gets the whole budget, so two attempts take twice as long."""
    for attempt in (1, 2):
        try:
            return Transport(url).chat(payload, timeouts=Timeouts(connect=1, read=budget_s, total=budget_s))
        except errors.TransientError:
            if attempt == 2:
                raise


def retries_permanent_errors(url, payload, budget_s):
    """Wrong: a 401 gets a second attempt."""
    deadline = time.monotonic() + budget_s
    timeouts = Timeouts(connect=1, read=budget_s, total=budget_s)
    try:
        return Transport(url).chat(payload, timeouts=timeouts, deadline=deadline)
    except errors.LLMError:
        return Transport(url).chat(payload, timeouts=timeouts, deadline=deadline)


def retries_until_success(url, payload, budget_s):
    """Wrong: more than two attempts."""
    deadline = time.monotonic() + budget_s
    timeouts = Timeouts(connect=1, read=budget_s, total=budget_s)
    while True:
        try:
            return Transport(url).chat(payload, timeouts=timeouts, deadline=deadline)
        except errors.TransientError:
            if time.monotonic() >= deadline:
                raise


@pytest.mark.parametrize("wrong", [budget_per_attempt, retries_permanent_errors, retries_until_success])
def test_call_with_budget_check_fails_wrong_answers(wrong):
    with pytest.raises(AssertionError):
        checks.check_call_with_budget(wrong)


# -- ★★★ wrong answers
def whole_budget_per_read(url, payload, total_s):
    """Wrong (issue 13): the deadline is checked between reads, but each read may wait the whole budget."""
    deadline = time.monotonic() + total_s
    try:
        response = requests.post(url, json=payload, timeout=(1, total_s), stream=True)
    except requests.Timeout as e:
        raise TimeoutError("no reply") from e
    try:
        response.raw.connection.sock.settimeout(total_s)
        chunks = []
        while chunk := response.raw.read1(65536):
            chunks.append(chunk)
            if time.monotonic() > deadline:
                raise TimeoutError("too late")
    except (TimeoutError, urllib3.exceptions.ReadTimeoutError) as e:
        raise TimeoutError("too late") from e
    finally:
        response.close()
    return json.loads(b"".join(chunks))


def clock_between_chunks(url, payload, total_s):
    """Wrong: section 1.4's naive loop; iter_content waits for 8192 bytes, so a trickle runs on."""
    deadline = time.monotonic() + total_s
    body = b""
    try:
        with requests.post(url, json=payload, timeout=(1, total_s), stream=True) as r:
            for chunk in r.iter_content(chunk_size=8192):
                body += chunk
                if time.monotonic() > deadline:
                    raise TimeoutError("too late")
    except requests.Timeout as e:
        raise TimeoutError("no reply") from e
    return json.loads(body)


def read_timeout_only(url, payload, total_s):
    """Wrong: a read timeout bounds each silence, not the call."""
    try:
        return requests.post(url, json=payload, timeout=(1, total_s)).json()
    except requests.Timeout as e:
        raise TimeoutError("no reply") from e


@pytest.mark.parametrize("wrong", [whole_budget_per_read, clock_between_chunks, read_timeout_only])
def test_post_with_deadline_check_fails_wrong_answers(wrong):
    with pytest.raises(AssertionError):
        checks.check_post_with_deadline(wrong)


# -- the self-check "can you simulate failures and show graceful handling?"
def fault_outcomes(faults):
    outcomes = {}
    with FakeLLMServer(script=faults, latency=0) as srv:
        transport = Transport(srv.url)
        for fault in faults:
            try:
                outcomes[fault] = transport.chat(PAYLOAD, timeouts=Timeouts(connect=1, read=2, total=3))
            except Exception as e:
                outcomes[fault] = e
    return outcomes


def test_every_fault_typed_passes_real_faults():
    checks.check_every_fault_typed(fault_outcomes(["reset", "drop", "503", "401", "400", "html", "empty"]))


def test_every_fault_typed_fails_when_a_fault_returns_normally():
    # issue 13: replacing the "400" fault with "ok" used to pass
    with pytest.raises(AssertionError, match=r"returned normally.*: ok"):
        checks.check_every_fault_typed(fault_outcomes(["reset", "503", "ok", "html"]))


def test_every_fault_typed_fails_on_an_untyped_exception():
    outcomes = {"503": errors.ServerError("HTTP 503"), "reset": requests.ConnectionError("reset")}
    with pytest.raises(AssertionError, match="reset"):
        checks.check_every_fault_typed(outcomes)


# -- the self-check "can you show a stream does not hang either?"
STREAM_LIMITS = Timeouts(connect=1, read=5, total=0.6, first_token=0.2, idle=0.2)
STREAM_SERVERS = {  # a word every 0.02 s unless said
    "healthy": {},
    "keep-alive only": {"default": "stream_keepalive"},
    "stall after 3 words": {"default": "stream_stall:3"},
    "drip past the total": {"chunk_interval_s": 0.1},
}


def timed_stream(settings):
    """One client.stream call, recorded as notebook 01's section 1.7 records it."""
    run = {"chunks": [], "error": None, "result": None}
    config = {"model": "fake-mini", "timeouts": STREAM_LIMITS, "max_attempts": 1}
    with (
        FakeLLMServer(**{"latency": 0, "chunk_interval_s": 0.02, **settings}) as srv,
        LLMClient(ClientConfig(base_url=srv.url, **config)) as client,
    ):
        started = time.monotonic()
        try:
            with client.stream(PAYLOAD["messages"], max_tokens=8) as stream:
                for _delta in stream:
                    run["chunks"].append(time.monotonic() - started)
            run["result"] = stream.result
        except errors.LLMError as e:
            run["error"] = e
        run["end"] = time.monotonic() - started
    return run


@pytest.fixture(scope="module")
def stream_runs():
    with ThreadPoolExecutor(len(STREAM_SERVERS)) as pool:  # side by side: the slowest takes 0.6 s
        return dict(zip(STREAM_SERVERS, pool.map(timed_stream, STREAM_SERVERS.values()), strict=True))


def test_stream_clocks_passes_real_streams(stream_runs):
    checks.check_stream_clocks(stream_runs, STREAM_LIMITS)


def stall_reported_complete(runs):
    return {**runs, "stall after 3 words": {**runs["stall after 3 words"], "error": None, "result": "some text"}}


def failure_with_a_result(runs):
    return {**runs, "stall after 3 words": {**runs["stall after 3 words"], "result": runs["healthy"]["result"]}}


def no_idle_clock(runs):  # the stall cut only by the total, long after its last chunk
    stall = runs["stall after 3 words"]
    return {**runs, "stall after 3 words": {**stall, "end": stall["chunks"][-1] + 0.6}}


def late_first_token_timeout(runs):
    return {**runs, "keep-alive only": {**runs["keep-alive only"], "end": STREAM_LIMITS.first_token + 0.4}}


def no_total_cut(runs):
    return {label: run for label, run in runs.items() if label != "drip past the total"}


@pytest.mark.parametrize(
    "wrong", [stall_reported_complete, failure_with_a_result, no_idle_clock, late_first_token_timeout, no_total_cut]
)
def test_stream_clocks_fails_wrong_evidence(stream_runs, wrong):
    checks.check_stream_clocks(stream_runs, STREAM_LIMITS)  # the runs it changes pass as they are
    with pytest.raises(AssertionError):
        checks.check_stream_clocks(wrong(stream_runs), STREAM_LIMITS)


def test_stream_clocks_fails_a_plain_requests_reader():
    """Plain requests with a read timeout: the stall ends late and untyped."""
    run = {"chunks": [], "result": None}
    with FakeLLMServer(default="stream_stall:3", latency=0, chunk_interval_s=0.02) as srv:
        started = time.monotonic()
        body = {**PAYLOAD, "stream": True}
        try:
            with requests.post(f"{srv.url}/chat/completions", json=body, stream=True, timeout=(1, 0.3)) as reply:
                for line in reply.iter_lines():
                    if line.startswith(b"data:"):
                        run["chunks"].append(time.monotonic() - started)
        except requests.RequestException as e:
            run["error"] = e
        run["end"] = time.monotonic() - started
    assert isinstance(run["error"], requests.RequestException)
    with pytest.raises(AssertionError, match="not a typed LLMError"):
        checks.check_stream_clocks({"stall after 3 words": run}, STREAM_LIMITS)


# -- the fault the ★★★ check needs: part of the body, then silence
def test_body_stall_sends_part_of_the_body_then_stalls():
    body = json.dumps(PAYLOAD).encode()
    with FakeLLMServer(["body_stall:0.6"], latency=0) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=2) as sock:
            sock.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            sock.settimeout(0.3)
            received = b""
            with pytest.raises(TimeoutError):  # a real socket read times out mid-body
                while chunk := sock.recv(65536):
                    received += chunk
            head, _, partial = received.partition(b"\r\n\r\n")
            length = int(
                next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
            )
            assert head.startswith(b"HTTP/1.1 200") and 0 < len(partial) < length
            sock.settimeout(2)  # after the stall, the rest arrives
            rest = b""
            while len(partial) + len(rest) < length:
                rest += sock.recv(65536)
    assert json.loads(partial + rest)["choices"][0]["message"]["content"]
    assert srv.attempts[0].fault == "body_stall:0.6"
