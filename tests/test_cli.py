"""The command line and its exit codes.

Two tests run it as a user would (a subprocess): the first chat with nothing configured,
and a stream whose deltas must reach a pipe before it ends. The others call
``week04_lib.cli.main`` in this process through the ``run_cli`` fixture (conftest.py):
the same arguments, environment, exit status, stdout and stderr, without paying ~0.5 s of
interpreter start and imports per command."""

import json
import os
import select
import subprocess
import sys
from pathlib import Path

from week04_lib import ClientConfig, LLMClient
from week04_lib.fakeserver import FakeLLMServer

INCIDENT = Path(__file__).resolve().parent.parent / "data" / "incident_logs.jsonl"


def clean_env(**env):
    """This environment without WEEK04_ and OPENAI_ settings, plus ``env``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("WEEK04_", "OPENAI_"))}
    clean.update(env)
    return clean


def run(*args, **env):
    """``python -m week04_lib ARGS`` in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "week04_lib", *args], capture_output=True, text=True, env=clean_env(**env), timeout=60
    )


def one_line(text):
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


def test_chat_with_no_configuration_uses_an_embedded_fake_server():
    done = run("chat", "hello")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Re: 'hello'") and "embedded fake server" in done.stderr


def test_chat_json_output(run_cli):
    with FakeLLMServer(latency=0) as srv:
        done = run_cli("chat", "hi", "--json", "--base-url", srv.url, "--model", "fake-large", "--max-tokens", "5")
    result = json.loads(done.stdout)
    assert result["model"] == "fake-large" and result["usage"]["completion_tokens"] <= 5
    assert srv.attempts[0].body["max_tokens"] == 5


def test_a_wrong_key_is_one_clear_line_and_exit_3(run_cli):
    with FakeLLMServer(latency=0, api_key="sk-right") as srv:
        done = run_cli("chat", "hello", WEEK04_BASE_URL=srv.url, WEEK04_API_KEY="sk-wrong-secret")
    line = one_line(done.stderr)
    assert done.returncode == 3 and line.startswith("error: AuthError") and "API key" in line
    assert "sk-wrong-secret" not in done.stderr + done.stdout


def test_a_dead_server_is_exit_4_after_retries(run_cli):
    with FakeLLMServer(default="503", latency=0) as srv:
        done = run_cli("chat", "hello", "--attempts", "2", WEEK04_BASE_URL=srv.url, WEEK04_BACKOFF_BASE="0.01")
    assert done.returncode == 4 and one_line(done.stderr).startswith("error: ServerError")
    assert len(srv.attempts) == 2


def test_bad_input_is_exit_2(run_cli):
    with FakeLLMServer(latency=0) as srv:
        done = run_cli("chat", "hello", "--max-tokens", "-3", "--base-url", srv.url)
        bad_env = run_cli("chat", "hello", WEEK04_BASE_URL=srv.url, WEEK04_MAX_ATTEMPTS="lots")
    assert done.returncode == 2 and "max_tokens" in one_line(done.stderr) and srv.attempts == []
    assert bad_env.returncode == 2 and "WEEK04_MAX_ATTEMPTS" in one_line(bad_env.stderr)


def test_logs_summarize_the_incident(run_cli):
    done = run_cli("logs", "summarize", str(INCIDENT))
    assert done.returncode == 0 and "calls from 2026-11-02" in done.stdout and "all_models_failed" in done.stdout
    as_json = json.loads(run_cli("logs", "summarize", str(INCIDENT), "--json").stdout)
    assert as_json["calls"] > 1000 and as_json["by_model"]
    missing = run_cli("logs", "summarize", "/nonexistent.jsonl")
    assert missing.returncode == 2 and "no log file" in one_line(missing.stderr)


def test_help_and_serve_help(run_cli):
    assert "Exit status" in run_cli("--help").stdout
    assert "--script" in run_cli("serve", "--help").stdout
    assert run_cli("nonsense").returncode == 2


# ---------------------------------------------------------------- chat --stream


def chat_text(srv, prompt="hello"):
    """What ``chat`` prints for ``prompt``: the answer of a plain (unstreamed) call."""
    with LLMClient(ClientConfig(base_url=srv.url, model="gpt-4o-mini")) as client:
        return client.chat([{"role": "user", "content": prompt}], temperature=0, cache=False).text


def test_stream_prints_the_same_text_as_chat_and_with_json_stdout_is_one_document(run_cli):
    with FakeLLMServer(latency=0) as srv:
        text = chat_text(srv)
        streamed = run_cli("chat", "hello", "--stream", "--base-url", srv.url)
        as_json = run_cli("chat", "hello", "--stream", "--json", "--base-url", srv.url)
    assert streamed.returncode == as_json.returncode == 0, streamed.stderr
    assert streamed.stdout == text + "\n" and len(text.split()) > 3
    assert [a.body.get("stream") for a in srv.attempts] == [None, True, True]
    assert "first token" in one_line(streamed.stderr)
    result = json.loads(as_json.stdout)  # the streamed text went to stderr
    assert result["text"] == text and as_json.stderr.startswith(text + "\n")
    assert result["ttft_s"] > 0 and result["usage"]["completion_tokens"] > 0


def test_stream_deltas_reach_stdout_before_the_stream_ends():
    srv = FakeLLMServer(["stream_stall:2"], latency=0).start()  # two words, then silence until stop
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "week04_lib", "chat", "hello", "--stream", "--base-url", srv.url],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env(),
        )  # fmt: skip
        seen = b""
        while b"'hello': " not in seen:  # flushed, not held in a buffer until the end
            ready, _, _ = select.select([proc.stdout], [], [], 30)
            assert ready, f"nothing printed while the stream stalls: {seen!r}"
            chunk = os.read(proc.stdout.fileno(), 4096)
            assert chunk, f"stdout closed early: {seen!r}"
            seen += chunk
        assert proc.poll() is None  # still streaming: the server has not let go
    finally:
        srv.stop()
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 4 and (seen + out).decode() == "Re: 'hello': \n"
    assert "incomplete" in one_line(err.decode())


def test_an_interrupted_stream_keeps_its_text_and_exits_4(run_cli):
    with FakeLLMServer(["ok", "stream_cut:3"], latency=0) as srv:
        full = chat_text(srv)
        done = run_cli("chat", "hello", "--stream", "--base-url", srv.url)
    partial = " ".join(full.split(" ")[:3]) + " "  # the three words sent before the cut
    assert done.returncode == 4 and done.stdout == partial + "\n" and full.startswith(partial)
    line = one_line(done.stderr)
    assert line.startswith("error: StreamInterrupted") and "incomplete" in line
    assert len(srv.attempts) == 2  # text already shown is never retried


def test_first_token_and_idle_flags_bound_the_stream(run_cli):
    with FakeLLMServer(["stream_slow_start:20", "stream_stall:2"], latency=0) as srv:
        slow = run_cli("chat", "hello", "--stream", "--first-token", "0.3", "--attempts", "1", "--base-url", srv.url)
        stalled = run_cli("chat", "hello", "--stream", "--idle", "0.3", "--base-url", srv.url)
    # without the flags the standard preset waits 20 s and 10 s; the server would wait longer
    assert slow.returncode == 4 and slow.stdout == ""
    assert one_line(slow.stderr).startswith("error: FirstTokenTimeout")
    assert stalled.returncode == 4 and stalled.stdout == "Re: 'hello': \n"
    assert one_line(stalled.stderr).startswith("error: StreamTimeout")
    with FakeLLMServer(latency=0) as srv:
        unstreamed = run_cli("chat", "hello", "--idle", "3", "--base-url", srv.url)
    assert unstreamed.returncode == 2 and "--stream" in one_line(unstreamed.stderr) and srv.attempts == []


# ---------------------------------------------------------------- embed


def embed_lines(stdout):
    return [json.loads(line) for line in stdout.splitlines()]


def test_embed_writes_one_line_per_input_line_in_order(run_cli, tmp_path):
    texts = ["alpha", "beta gamma", "alpha", "delta", "épsilon"]  # a repeat, a non-ASCII text
    source = tmp_path / "texts.txt"
    source.write_text("\n".join(texts) + "\n", encoding="utf-8")
    with FakeLLMServer(latency=0) as srv:
        done = run_cli("embed", str(source), "--model", "fake-embed", "--dimensions", "8", "--max-batch", "2",
                   "--base-url", srv.url)  # fmt: skip
        sent = [a.body["input"] for a in srv.attempts]
        with LLMClient(ClientConfig(base_url=srv.url, embedding_model="fake-embed")) as client:
            expected = client.embed(texts, dimensions=8).vectors
    assert done.returncode == 0, done.stderr
    rows = embed_lines(done.stdout)
    assert [r["line"] for r in rows] == [1, 2, 3, 4, 5] and [r["text"] for r in rows] == texts
    assert [r["embedding"] for r in rows] == expected and len(expected[0]) == 8
    # each text once, two per request (sent side by side: in any order)
    assert sorted(sent) == [["alpha", "beta gamma"], ["delta", "épsilon"]]
    assert "5 texts, 4 sent, 0 from cache" in one_line(done.stderr)


def test_embed_reads_stdin_and_writes_out(run_cli, tmp_path):
    out = tmp_path / "vectors.jsonl"
    with FakeLLMServer(latency=0) as srv:
        done = run_cli("embed", "-", "--out", str(out), stdin=b"one\r\ntwo\r\n",
                       WEEK04_BASE_URL=srv.url, WEEK04_EMBEDDING_MODEL="fake-embed")  # fmt: skip
    assert done.returncode == 0 and done.stdout == "", done.stderr
    rows = embed_lines(out.read_text(encoding="utf-8"))
    assert [(r["line"], r["text"]) for r in rows] == [(1, "one"), (2, "two")]
    assert srv.attempts[0].body["model"] == "fake-embed"  # from WEEK04_EMBEDDING_MODEL


def test_embed_refuses_a_blank_line_unless_told_to_skip_it(run_cli, tmp_path):
    source = tmp_path / "texts.txt"
    source.write_text("one\ntwo\n   \nfour\n\n", encoding="utf-8")
    with FakeLLMServer(latency=0) as srv:
        refused = run_cli("embed", str(source), "--base-url", srv.url, "--model", "fake-embed")
        assert srv.attempts == []  # nothing sent
        skipped = run_cli("embed", str(source), "--base-url", srv.url, "--model", "fake-embed", "--skip-blank")
        missing = run_cli("embed", str(tmp_path / "nope.txt"), "--base-url", srv.url)
    line = one_line(refused.stderr)
    assert refused.returncode == 2 and "line 3 " in line and "1 more" in line and "--skip-blank" in line
    assert skipped.returncode == 0 and [r["line"] for r in embed_lines(skipped.stdout)] == [1, 2, 4]
    assert missing.returncode == 2 and "no file" in one_line(missing.stderr)


def test_embed_with_a_sqlite_cache_sends_only_the_changed_lines(run_cli, tmp_path):
    source, cache = tmp_path / "texts.txt", f"sqlite:{tmp_path / 'cache.sqlite'}"
    source.write_text("one\ntwo\nthree\nfour\n", encoding="utf-8")
    with FakeLLMServer(latency=0) as srv:
        first = run_cli("embed", str(source), "--base-url", srv.url, "--model", "fake-embed", "--cache", cache)
        source.write_text("one\nTWO, edited\nthree\nfour\n", encoding="utf-8")
        second = run_cli("embed", str(source), "--base-url", srv.url, "--model", "fake-embed", "--cache", cache)
        with LLMClient(ClientConfig(base_url=srv.url, embedding_model="fake-embed")) as client:
            fresh = client.embed(["one", "TWO, edited", "three", "four"], cache=False).vectors
    assert first.returncode == second.returncode == 0, second.stderr
    assert [a.body["input"] for a in srv.attempts[:2]] == [["one", "two", "three", "four"], ["TWO, edited"]]
    assert [r["embedding"] for r in embed_lines(second.stdout)] == fresh
    assert "4 texts, 1 sent, 3 from cache" in one_line(second.stderr)
