"""The command line, run as a user would (a subprocess), and its exit codes."""

import json
import os
import subprocess
import sys
from pathlib import Path

from week04_lib.fakeserver import FakeLLMServer

INCIDENT = Path(__file__).resolve().parent.parent / "data" / "incident_logs.jsonl"


def run(*args, **env):
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("WEEK04_", "OPENAI_"))}
    clean.update(env)
    return subprocess.run(
        [sys.executable, "-m", "week04_lib", *args], capture_output=True, text=True, env=clean, timeout=60
    )


def one_line(text):
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


def test_chat_with_no_configuration_uses_an_embedded_fake_server():
    done = run("chat", "hello")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Re: 'hello'") and "embedded fake server" in done.stderr


def test_chat_json_output():
    with FakeLLMServer(latency=0) as srv:
        done = run("chat", "hi", "--json", "--base-url", srv.url, "--model", "fake-large", "--max-tokens", "5")
    result = json.loads(done.stdout)
    assert result["model"] == "fake-large" and result["usage"]["completion_tokens"] <= 5
    assert srv.attempts[0].body["max_tokens"] == 5


def test_a_wrong_key_is_one_clear_line_and_exit_3():
    with FakeLLMServer(latency=0, api_key="sk-right") as srv:
        done = run("chat", "hello", WEEK04_BASE_URL=srv.url, WEEK04_API_KEY="sk-wrong-secret")
    line = one_line(done.stderr)
    assert done.returncode == 3 and line.startswith("error: AuthError") and "API key" in line
    assert "sk-wrong-secret" not in done.stderr + done.stdout


def test_a_dead_server_is_exit_4_after_retries():
    with FakeLLMServer(default="503", latency=0) as srv:
        done = run("chat", "hello", "--attempts", "2", WEEK04_BASE_URL=srv.url, WEEK04_BACKOFF_BASE="0.01")
    assert done.returncode == 4 and one_line(done.stderr).startswith("error: ServerError")
    assert len(srv.attempts) == 2


def test_bad_input_is_exit_2():
    with FakeLLMServer(latency=0) as srv:
        done = run("chat", "hello", "--max-tokens", "-3", "--base-url", srv.url)
        bad_env = run("chat", "hello", WEEK04_BASE_URL=srv.url, WEEK04_MAX_ATTEMPTS="lots")
    assert done.returncode == 2 and "max_tokens" in one_line(done.stderr) and srv.attempts == []
    assert bad_env.returncode == 2 and "WEEK04_MAX_ATTEMPTS" in one_line(bad_env.stderr)


def test_logs_summarize_the_incident():
    done = run("logs", "summarize", str(INCIDENT))
    assert done.returncode == 0 and "calls from 2026-11-02" in done.stdout and "all_models_failed" in done.stdout
    as_json = json.loads(run("logs", "summarize", str(INCIDENT), "--json").stdout)
    assert as_json["calls"] > 1000 and as_json["by_model"]
    missing = run("logs", "summarize", "/nonexistent.jsonl")
    assert missing.returncode == 2 and "no log file" in one_line(missing.stderr)


def test_help_and_serve_help():
    assert "Exit status" in run("--help").stdout
    assert "--script" in run("serve", "--help").stdout
    assert run("nonsense").returncode == 2
