"""The fake server's streamed chat completions (server-sent events, stream faults) and
embeddings, over real sockets: the bytes on the wire, then the official ``openai`` package."""

import base64
import http.client
import json
import math
import re
import struct
import threading
import time

import pytest
import requests

from week04_lib import fakeserver
from week04_lib.fakeserver import (
    DEFAULT_EMBEDDING_DIMENSIONS,
    EMBEDDING_MODELS,
    MAX_EMBEDDING_INPUTS,
    FakeLLMServer,
    Fault,
)

from .conftest import HELLO
from .hostile import raw_post, read_head

CHAT = {"model": "fake-mini", "messages": HELLO}
STREAM = {**CHAT, "stream": True}
WITH_USAGE = {**STREAM, "stream_options": {"include_usage": True}}
EMBED = "fake-embed"


# ------------------------------------------------------------------ helpers: the raw wire


def read_chunk(wire):
    """One HTTP chunk's data; b"" for the last chunk (whose CRLF it reads too)."""
    size = int(wire.readline(), 16)
    data = wire.read(size)
    assert wire.read(2) == b"\r\n"
    return data


def read_stream(wire):
    """Every chunk up to the last one, each as sent."""
    chunks = []
    while chunk := read_chunk(wire):
        chunks.append(chunk)
    return chunks


def parse(chunk):
    """An SSE ``data:`` event's JSON (or the string ``[DONE]``)."""
    assert chunk.startswith(b"data: ") and chunk.endswith(b"\n\n") and chunk.count(b"\n\n") == 1, chunk
    data = chunk[6:-2]
    return "[DONE]" if data == b"[DONE]" else json.loads(data)


def streamed(srv, body=WITH_USAGE, headers=()):
    """The head and the parsed events of one streamed answer."""
    with raw_post(srv, body, headers=headers) as wire:
        status, head = read_head(wire)
        chunks = read_stream(wire)
    assert status.startswith(b"HTTP/1.1 200")
    return head, [parse(c) for c in chunks]


def text_of(events):
    return "".join(e["choices"][0]["delta"].get("content", "") for e in events if e != "[DONE]" and e["choices"])


def plain(srv, body=CHAT, headers=None):
    r = requests.post(f"{srv.url}/chat/completions", json=body, headers=headers or {}, timeout=(1, 2))
    assert r.status_code == 200
    return r.json()


# ------------------------------------------------------------------ streaming: the protocol


def test_stream_headers_and_one_event_per_chunk_never_compressed():
    with FakeLLMServer(latency=0, compress="gzip", rpm=600) as srv:
        with raw_post(srv, STREAM, headers=[("Accept-Encoding", "gzip")]) as wire:
            status, head = read_head(wire)
            chunks = read_stream(wire)
            after = wire.read()  # the connection closes after the last chunk (Connection: close)
    assert status.startswith(b"HTTP/1.1 200")
    assert head["Content-Type"] == "text/event-stream; charset=utf-8" and head["Cache-Control"] == "no-cache"
    assert head["Transfer-Encoding"] == "chunked" and "Content-Length" not in head
    assert "Content-Encoding" not in head and head["x-ratelimit-limit-requests"] == "600"
    events = [parse(c) for c in chunks]  # each chunk is exactly one "data: ...\n\n" event
    assert events[-1] == "[DONE]" and after == b""
    assert all(e["object"] == "chat.completion.chunk" for e in events[:-1])


def test_stream_chunks_are_openai_shaped_and_add_up_to_the_plain_answer():
    with FakeLLMServer(latency=0) as srv:
        _, events = streamed(srv, STREAM)
        answer = plain(srv)
    first, *content, finish, done = events
    assert set(first) == {"id", "object", "created", "model", "system_fingerprint", "choices"}  # no usage key
    assert first["system_fingerprint"] == "fp_week04_fake" and first["model"] == "fake-mini"
    assert first["id"].startswith("chatcmpl-") and isinstance(first["created"], int)
    assert first["choices"] == [
        {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
    ]
    assert all(set(c["choices"][0]["delta"]) == {"content"} for c in content)
    assert len(content) == answer["usage"]["completion_tokens"]  # one chunk a word
    assert text_of(events) == answer["choices"][0]["message"]["content"]
    assert finish["choices"][0]["delta"] == {} and finish["choices"][0]["finish_reason"] == "stop"
    assert done == "[DONE]" and len({e["id"] for e in events[:-1]}) == 1


def test_stream_cut_short_by_max_tokens_finishes_with_length():
    body = {**CHAT, "max_tokens": 3}
    with FakeLLMServer(latency=0) as srv:
        _, events = streamed(srv, {**body, "stream": True})
        answer = plain(srv, body)
    assert text_of(events) == answer["choices"][0]["message"]["content"] and len(text_of(events).split()) == 3
    assert events[-2]["choices"][0]["finish_reason"] == "length" == answer["choices"][0]["finish_reason"]


def test_include_usage_adds_a_usage_chunk_and_null_usage_before_it():
    with FakeLLMServer(latency=0) as srv:
        _, events = streamed(srv, WITH_USAGE)
        answer = plain(srv)
    *earlier, usage_chunk, done = events
    assert all("usage" in e and e["usage"] is None for e in earlier)
    assert usage_chunk["choices"] == [] and usage_chunk["usage"] == answer["usage"]
    assert usage_chunk["usage"]["total_tokens"] == usage_chunk["usage"]["prompt_tokens"] + len(earlier) - 2
    assert done == "[DONE]"


def test_a_stream_is_billed_and_replayed_by_idempotency_key_like_a_plain_answer():
    with FakeLLMServer(latency=0) as srv:
        _, events = streamed(srv, WITH_USAGE, headers=[("Idempotency-Key", "k1")])
        billed = (srv.billed_requests, srv.billed_tokens)
        again = plain(srv, headers={"Idempotency-Key": "k1"})
        _, replayed = streamed(srv, WITH_USAGE, headers=[("Idempotency-Key", "k1")])
    assert billed == (1, events[-2]["usage"]["total_tokens"])
    assert (srv.billed_requests, srv.billed_tokens) == billed  # both replays are free
    assert again["id"] == events[0]["id"] and text_of(replayed) == text_of(events)


def test_chunk_interval_paces_the_events():
    with FakeLLMServer(latency=0, chunk_interval_s=0.03) as srv:
        started = time.monotonic()
        with raw_post(srv, {**STREAM, "max_tokens": 4}) as wire:
            read_head(wire)
            chunks = read_stream(wire)
        took = time.monotonic() - started
    assert len(chunks) == 7  # role, 4 words, finish, [DONE]: six pauses between them
    assert took >= 6 * 0.03


# ------------------------------------------------------------------ the stream faults


def test_stream_stall_sends_n_words_then_silence_until_stop():
    srv = FakeLLMServer(["stream_stall:2"], latency=0).start()
    try:
        with raw_post(srv, STREAM, timeout=0.3) as wire:
            read_head(wire)
            events = [parse(read_chunk(wire)) for _ in range(3)]
            with pytest.raises(TimeoutError):
                wire.readline()  # nothing more within 0.3 s
    finally:
        started = time.monotonic()
        srv.stop()
    assert time.monotonic() - started < 1
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    assert [len(e["choices"][0]["delta"]["content"].split()) for e in events[1:]] == [1, 1]


def test_stop_closes_a_stalled_stream_promptly(no_leaks):
    srv = FakeLLMServer(["stream_stall:0"], latency=0).start()
    with raw_post(srv, STREAM, timeout=2) as wire:
        read_head(wire)
        read_chunk(wire)  # the role chunk, then nothing
        timer = threading.Timer(0.1, srv.stop)
        timer.start()
        started = time.monotonic()
        rest = wire.read()
        timer.join()
    assert rest == b"" and time.monotonic() - started < 1  # closed by stop(), well before the 2 s timeout


def test_stream_cut_closes_after_n_words_without_the_last_chunk():
    with FakeLLMServer(["stream_cut:3"], latency=0) as srv:
        with raw_post(srv, WITH_USAGE) as wire:
            read_head(wire)
            chunks = [read_chunk(wire) for _ in range(4)]
            rest = wire.read()  # EOF: no more chunks, no "0\r\n\r\n", no [DONE]
        answer = plain(srv)
    assert rest == b""
    assert answer["choices"][0]["message"]["content"].startswith(text_of([parse(c) for c in chunks]))
    assert srv.billed_requests == 2


def test_stream_garbage_sends_a_malformed_event_then_the_rest():
    with FakeLLMServer(["stream_garbage:2"], latency=0) as srv:
        with raw_post(srv, WITH_USAGE) as wire:
            read_head(wire)
            chunks = read_stream(wire)
        answer = plain(srv)
    assert chunks[3] == b'data: {"id": "chatcmpl-broken", "choices": [{"delta": {"content": "oo\n\n'
    with pytest.raises(json.JSONDecodeError):
        parse(chunks[3])
    events = [parse(c) for i, c in enumerate(chunks) if i != 3]
    assert text_of(events) == answer["choices"][0]["message"]["content"] and events[-1] == "[DONE]"


def test_stream_slow_start_sends_the_first_event_after_s():
    with FakeLLMServer(["stream_slow_start:0.3"], latency=0) as srv:
        started = time.monotonic()
        with raw_post(srv, STREAM) as wire:
            status, head = read_head(wire)
            first = parse(read_chunk(wire))
            first_at = time.monotonic() - started
            rest = read_stream(wire)
    assert status.startswith(b"HTTP/1.1 200") and head["Content-Type"].startswith("text/event-stream")
    assert first_at >= 0.3 and first["choices"][0]["delta"]["role"] == "assistant" and parse(rest[-1]) == "[DONE]"


def test_stream_slow_start_sends_the_headers_at_once(no_leaks):
    srv = FakeLLMServer(["stream_slow_start:60"], latency=0).start()
    with raw_post(srv, STREAM, timeout=2) as wire:
        status, head = read_head(wire)  # within the 2 s read timeout, not after 60 s
        srv.stop()
        rest = wire.read()
    assert status.startswith(b"HTTP/1.1 200") and head["Transfer-Encoding"] == "chunked"
    assert rest == b"" and srv.billed_requests == 0  # stopped during the silence: no event, nothing billed


def test_stream_keepalive_sends_only_comments_until_stop(no_leaks):
    srv = FakeLLMServer(["stream_keepalive"], latency=0).start()
    with raw_post(srv, STREAM) as wire:
        _, head = read_head(wire)
        comments = [read_chunk(wire) for _ in range(3)]
        started = time.monotonic()
        srv.stop()
        rest = wire.read()
    assert time.monotonic() - started < 1 and head["Content-Type"].startswith("text/event-stream")
    assert comments == [b": keep-alive\n\n"] * 3
    assert b"data:" not in rest and srv.billed_requests == 0  # only comments, then the close


def test_stream_faults_on_a_plain_request_answer_normally():
    specs = ["stream_stall:1", "stream_cut:0", "stream_garbage:1", "stream_slow_start:5", "stream_keepalive"]
    with FakeLLMServer(specs, latency=0) as srv:
        answers = [plain(srv) for _ in specs]
    assert all(a["object"] == "chat.completion" and a["choices"][0]["message"]["content"] for a in answers)
    assert [a.fault for a in srv.attempts] == specs and srv.billed_requests == len(specs)


def test_plain_faults_on_a_stream_answer_before_any_event():
    with FakeLLMServer(["503:retry-after=1", "drop", "bad_usage:negative", "bad_usage:missing"], latency=0) as srv:
        error = requests.post(f"{srv.url}/chat/completions", json=STREAM, timeout=2)
        with pytest.raises(requests.ConnectionError):
            requests.post(f"{srv.url}/chat/completions", json=STREAM, timeout=2)
        billed_by_drop = srv.billed_requests
        _, negative = streamed(srv, WITH_USAGE)
        _, missing = streamed(srv, WITH_USAGE)
    assert error.status_code == 503 and error.headers["Content-Type"] == "application/json"
    assert error.json()["error"]["code"] == 503 and error.headers["Retry-After"] == "1"
    assert billed_by_drop == 1
    assert negative[-2]["usage"]["prompt_tokens"] == -5 == negative[-2]["usage"]["total_tokens"]
    assert missing[-2]["choices"][0]["finish_reason"] == "stop" and missing[-1] == "[DONE]"  # no usage chunk
    assert text_of(missing) == text_of(negative)


def test_chunked_stall_on_a_stream_sends_the_events_then_a_trailer_that_never_ends():
    with FakeLLMServer(["chunked_stall"], latency=0) as srv:
        with raw_post(srv, STREAM) as wire:
            _, head = read_head(wire)
            chunks = []
            while size := int(wire.readline(), 16):  # then the last chunk, "0\r\n", and no blank line
                chunks.append(wire.read(size))
                assert wire.read(2) == b"\r\n"
            trailer = [wire.readline() for _ in range(2)]
        answer = plain(srv)
    assert head["Content-Type"].startswith("text/event-stream") and head["Transfer-Encoding"] == "chunked"
    assert head["Cache-Control"] == "no-cache" and "Content-Length" not in head
    events = [parse(c) for c in chunks]  # still one event a chunk
    assert events[-1] == "[DONE]" and text_of(events) == answer["choices"][0]["message"]["content"]
    assert trailer == [b"X-Trailer-1: x\r\n", b"X-Trailer-2: x\r\n"]


def test_body_stall_on_a_stream_pauses_mid_stream():
    with FakeLLMServer(["body_stall:0.3"], latency=0) as srv:
        started = time.monotonic()
        _, events = streamed(srv, STREAM)
        took = time.monotonic() - started
        answer = plain(srv)
    assert took >= 0.3 and text_of(events) == answer["choices"][0]["message"]["content"]


def test_huge_body_on_a_stream_sends_64_kib_content_deltas():
    with FakeLLMServer(["huge_body:0.25"], latency=0) as srv:
        _, events = streamed(srv, WITH_USAGE)
    first, *content, finish, usage, done = events
    sizes = [len(e["choices"][0]["delta"]["content"]) for e in content]
    assert sizes == [64 * 1024] * 4 and first["choices"][0]["delta"]["role"] == "assistant"
    assert finish["choices"][0]["finish_reason"] == "stop" and done == "[DONE]"
    assert usage["usage"]["completion_tokens"] == 64 * 1024 and srv.billed_tokens == usage["usage"]["total_tokens"]


def test_a_client_leaving_mid_stream_logs_nothing(caplog, capfd):
    with FakeLLMServer(["huge_body:50"], latency=0) as srv:
        with raw_post(srv, STREAM) as wire:
            read_head(wire)
            read_chunk(wire)  # then hang up while the server writes 50 MiB
        deadline = time.monotonic() + 5
        while srv._httpd.open_sockets and time.monotonic() < deadline:  # until its handler has ended
            time.sleep(0.01)
        assert not srv._httpd.open_sockets
        after = plain(srv)
    assert after["object"] == "chat.completion"  # still serving
    assert not caplog.records and "Traceback" not in capfd.readouterr().err


@pytest.mark.parametrize(
    "spec, message",
    [
        ("stream_stall", "stream_stall needs a whole number of chunks >= 0"),
        ("stream_cut:-1", "stream_cut needs a whole number"),
        ("stream_garbage:1.5", "stream_garbage needs a whole number"),
        ("stream_slow_start", "stream_slow_start needs seconds >= 0"),
        ("stream_slow_start:-0.5", "stream_slow_start needs seconds >= 0"),
        ("stream_keepalive:1", "unknown fault"),
        ("stream_nope:1", "unknown fault"),
    ],
)
def test_fault_grammar_rejects_bad_stream_faults(spec, message):
    with pytest.raises(ValueError, match=message):
        Fault.parse(spec)


def test_fault_grammar_reads_stream_faults():
    assert (Fault.parse("stream_stall:3").name, Fault.parse("stream_stall:3").count) == ("stream_stall", 3)
    assert Fault.parse("stream_cut:0").count == 0 and Fault.parse("stream_garbage:12").count == 12
    assert Fault.parse("stream_slow_start:0.3").seconds == 0.3 and Fault.parse("stream_keepalive").streams_only
    assert not Fault.parse("slow:1").streams_only
    with pytest.raises(ValueError, match="stream_keepalive"):  # the grammar lists them
        Fault.parse("boom")


def test_chunk_interval_must_be_seconds(capsys):
    with pytest.raises(ValueError, match="chunk_interval_s"):
        FakeLLMServer(chunk_interval_s=-1)
    with pytest.raises(SystemExit) as exited:  # the command line hands --chunk-interval to the server
        fakeserver.main(["--port", "0", "--chunk-interval", "-1"])
    assert exited.value.code == 2 and "chunk_interval_s" in capsys.readouterr().err


# ------------------------------------------------------------------ embeddings


def embed(srv, headers=None, **body):
    return requests.post(f"{srv.url}/embeddings", json={"model": EMBED, **body}, headers=headers or {}, timeout=2)


def vectors(reply):
    return [d["embedding"] for d in reply["data"]]


def test_embeddings_reply_shape_usage_and_models_list():
    texts = ["hello", "a longer text of forty characters here!!"]
    with FakeLLMServer(latency=0) as srv:
        reply = embed(srv, input=texts).json()
        listed = [m["id"] for m in requests.get(f"{srv.url}/models", timeout=2).json()["data"]]
    assert reply["object"] == "list" and reply["model"] == EMBED
    assert [(d["object"], d["index"]) for d in reply["data"]] == [("embedding", 0), ("embedding", 1)]
    assert all(len(v) == DEFAULT_EMBEDDING_DIMENSIONS == 64 for v in vectors(reply))
    assert reply["usage"] == {"prompt_tokens": 2 + 10, "total_tokens": 12}  # ceil(len / 4) a text
    assert EMBEDDING_MODELS == ("fake-embed",) and set(EMBEDDING_MODELS) | {"fake-mini"} <= set(listed)
    assert srv.attempts[0].path == "/v1/embeddings" and srv.attempts[0].body["input"] == texts


def test_embeddings_are_deterministic_unit_vectors_whatever_seed_or_order():
    texts = ["alpha", "beta", "gamma"]
    with FakeLLMServer(latency=0, seed=1) as one, FakeLLMServer(latency=0, seed=2) as two:
        forward = vectors(embed(one, input=texts).json())
        backward = vectors(embed(two, input=texts[::-1]).json())[::-1]
        single = vectors(embed(two, input="beta").json())
        other_model = vectors(embed(two, model="other-embed", input="beta").json())
    assert forward == backward and single == [forward[1]]
    assert len({tuple(v) for v in forward}) == 3 and other_model != single
    for v in forward:
        assert abs(math.fsum(x * x for x in v) - 1) < 1e-9
    assert abs(sum(a * b for a, b in zip(forward[0], forward[1], strict=True))) < 0.5  # unrelated directions


def test_dimensions_shorten_the_vector_and_keep_it_unit():
    with FakeLLMServer(latency=0) as srv:
        short = vectors(embed(srv, input="text", dimensions=8).json())[0]
        full = vectors(embed(srv, input="text").json())[0]
        widest = vectors(embed(srv, input="text", dimensions=4096).json())[0]
    assert len(short) == 8 and len(widest) == 4096
    assert abs(math.fsum(x * x for x in short) - 1) < 1e-9 and abs(math.fsum(x * x for x in widest) - 1) < 1e-9
    scale = math.sqrt(math.fsum(x * x for x in full[:8]))  # the longer vector's start, renormalized
    assert short == pytest.approx([x / scale for x in full[:8]], abs=1e-12)


def test_base64_embeddings_are_little_endian_float32():
    with FakeLLMServer(latency=0) as srv:
        floats = vectors(embed(srv, input=["one", "two"], dimensions=16).json())
        encoded = vectors(embed(srv, input=["one", "two"], dimensions=16, encoding_format="base64").json())
    assert all(isinstance(e, str) for e in encoded)
    decoded = [list(struct.unpack("<16f", base64.b64decode(e))) for e in encoded]
    for got, want in zip(decoded, floats, strict=True):
        assert got == pytest.approx(want, abs=1e-7)


def test_bad_embeddings_requests_get_a_400_naming_the_problem():
    cases = [
        ({"input": "hi"}, "model", "'model' is required"),
        ({"model": EMBED}, "input", "non-empty string"),
        ({"model": EMBED, "input": ""}, "input", "empty string"),
        ({"model": EMBED, "input": []}, "input", "non-empty"),
        ({"model": EMBED, "input": [1, 2, 3]}, "input", "token arrays are not supported"),
        ({"model": EMBED, "input": ["ok", [1, 2]]}, "input", r"input\[1\]' is not a string"),
        ({"model": EMBED, "input": ["x"] * (MAX_EMBEDDING_INPUTS + 1)}, "input", "at most 2048"),
        ({"model": EMBED, "input": "x", "dimensions": 0}, "dimensions", "whole number from 1 to 4096"),
        ({"model": EMBED, "input": "x", "dimensions": 4097}, "dimensions", "got 4097"),
        ({"model": EMBED, "input": "x", "dimensions": 1.5}, "dimensions", "whole number"),
        ({"model": EMBED, "input": "x", "encoding_format": "int8"}, "encoding_format", "float, base64"),
    ]
    with FakeLLMServer(latency=0) as srv:
        for body, param, message in cases:
            r = requests.post(f"{srv.url}/embeddings", json=body, timeout=2)
            error = r.json()["error"]
            assert r.status_code == 400 and error["type"] == "invalid_request_error", body
            assert error["param"] == param and re.search(message, error["message"]), (message, error["message"])
    assert srv.billed_requests == 0 and {a.fault for a in srv.attempts} == {"bad_body"}


def test_embeddings_check_the_api_key_and_request_id():
    with FakeLLMServer(latency=0, api_key="sk-right", strict_request_id=True) as srv:
        no_key = embed(srv, input="x")
        bad_id = embed(srv, input="x", headers={"Authorization": "Bearer sk-right", "X-Request-ID": "r1"})
        good = embed(srv, input="x", headers={"Authorization": "Bearer sk-right"})
    assert (no_key.status_code, bad_id.status_code, good.status_code) == (401, 400, 200)
    assert [a.fault for a in srv.attempts] == ["auth", "bad_request_id", "ok"]


def test_embeddings_are_billed_and_replayed_by_idempotency_key():
    with FakeLLMServer(["drop"], latency=0) as srv:
        with pytest.raises(requests.ConnectionError):
            embed(srv, input=["abcdefgh", "x"], headers={"Idempotency-Key": "e1"})  # billed, then dropped
        assert (srv.billed_requests, srv.billed_tokens) == (1, 3)
        replay = embed(srv, input=["abcdefgh", "x"], headers={"Idempotency-Key": "e1"}).json()
        assert (srv.billed_requests, srv.billed_tokens) == (1, 3)
        embed(srv, input=["abcdefgh", "x"], headers={"Idempotency-Key": "e2"})
        chat = plain(srv, headers={"Idempotency-Key": "e1"})  # a chat call's key is its own
    assert replay["usage"]["total_tokens"] == 3 and chat["object"] == "chat.completion"
    assert srv.billed_requests == 3


def test_503_and_trickle_on_embeddings():
    with FakeLLMServer(["503:retry-after=2", "trickle:0.001", "ok"], latency=0) as srv:
        error = embed(srv, input="x", dimensions=2)
        started = time.monotonic()
        slow = embed(srv, input="x", dimensions=2)
        took = time.monotonic() - started
        fast = embed(srv, input="x", dimensions=2)
    assert error.status_code == 503 and error.headers["Retry-After"] == "2" and error.json()["error"]["code"] == 503
    assert slow.json() == fast.json() and took >= len(slow.content) * 0.001
    assert [a.fault for a in srv.attempts] == ["503:retry-after=2", "trickle:0.001", "ok"]


def test_other_faults_on_embeddings_use_the_embeddings_body():
    script = ["bad_usage:negative", "bad_usage:missing", "invalid_json", "empty", "stream_cut:0", "huge_body:0.25"]
    with FakeLLMServer(script, latency=0) as srv:
        negative, missing, invalid, empty, streamless, huge = (embed(srv, input="abcd") for _ in script)
        normal = embed(srv, input="abcd").json()
    assert negative.json()["usage"]["prompt_tokens"] == -5 and "usage" not in missing.json()
    assert invalid.content.startswith(b'{"object": "list", "data": [') and "data" not in empty.json()
    with pytest.raises(ValueError):
        invalid.json()
    assert streamless.json() == normal  # a stream fault on embeddings: a normal answer
    assert len(huge.content) == 2**18 and huge.json() == normal  # padded to 0.25 MiB, still the same JSON


def test_embeddings_faults_follow_model_faults():
    with FakeLLMServer(model_faults={EMBED: "500"}, latency=0) as srv:
        assert embed(srv, input="x").status_code == 500
        assert embed(srv, model="other-embed", input="x").status_code == 200
        assert plain(srv)["object"] == "chat.completion"


def test_paired_draws_go_by_the_embeddings_input():
    def run(order):
        with FakeLLMServer(mix={"ok": 0.5, "503": 0.5}, seed=7, paired=True, latency=0) as srv:
            for i in order:
                embed(srv, input=f"text {i}")
            return {a.body["input"]: a.fault for a in srv.attempts}

    forward = run(range(8))
    assert forward == run(reversed(range(8))) and set(forward.values()) == {"ok", "503"}


def test_tpm_charges_embeddings_by_their_input_tokens():
    with FakeLLMServer(tpm=600, latency=0) as srv:  # 10 tokens a second, a burst of 10
        first = embed(srv, input="x" * 36)  # 9 tokens
        second = embed(srv, input="y")  # 1 token: still within the burst
        third = embed(srv, input="z" * 40)  # 10 tokens: about a second away
    assert (first.status_code, second.status_code, third.status_code) == (200, 200, 429)
    assert third.headers["x-ratelimit-remaining-tokens"] == "0" and third.headers["Retry-After"] == "1"
    assert [a.fault for a in srv.attempts] == ["ok", "ok", "rate_limited"] and srv.billed_tokens == 10


# ------------------------------------------------------------------ the official openai package


@pytest.fixture(scope="module")
def openai_client():
    """``client(srv)``: the official SDK pointed at ``srv`` (one client for the module:
    building one costs about half a second)."""
    import openai  # in requirements-dev.txt, installed by make setup

    base = openai.OpenAI(base_url="http://127.0.0.1:9/v1", api_key="sk-test", max_retries=0, timeout=2)
    yield openai, lambda srv: base.with_options(base_url=srv.url)
    base.close()


def test_openai_streams_the_same_text_and_usage(openai_client):
    _, client = openai_client
    with FakeLLMServer(latency=0, chunk_interval_s=0.001) as srv:
        answer = plain(srv)
        stream = client(srv).chat.completions.create(
            model="fake-mini", messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
        chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == answer["choices"][0]["message"]["content"]
    assert chunks[-1].usage.total_tokens == answer["usage"]["total_tokens"] and not chunks[-1].choices
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


def test_openai_raises_on_a_cut_stream(openai_client):
    openai, client = openai_client
    with FakeLLMServer(["stream_cut:2"], latency=0) as srv:
        stream = client(srv).chat.completions.create(model="fake-mini", messages=HELLO, stream=True)
        received = []
        with pytest.raises(openai.APIConnectionError):
            for chunk in stream:
                received.append(chunk.choices[0].delta.content)
    assert len(received) == 3  # the role chunk and two words, then the cut


def test_openai_embeddings_decode_base64_to_the_float_vectors(openai_client):
    _, client = openai_client
    texts = ["first text", "second text"]
    with FakeLLMServer(latency=0) as srv:
        reply = client(srv).embeddings.create(model=EMBED, input=texts)  # asks for base64 by default
        floats = vectors(embed(srv, input=texts).json())
    assert srv.attempts[0].body["encoding_format"] == "base64" and "encoding_format" not in srv.attempts[1].body
    for got, want in zip([d.embedding for d in reply.data], floats, strict=True):
        assert got == pytest.approx(want, abs=1e-7)
    assert reply.usage.total_tokens == 6


@pytest.mark.parametrize("fault", ["stream_keepalive", "stream_stall:2", "stream_slow_start:5", "hang"])
def test_stop_returns_only_once_every_handler_thread_has_ended(fault):
    """Found by `make test`: a handler thread of a stopped server was still alive at the
    next check (the threads are daemons, which ``server_close`` does not join)."""
    before = set(threading.enumerate())
    srv = FakeLLMServer(default=fault, latency=0).start()
    body = json.dumps({"model": "fake-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True})
    connections = []
    for _ in range(8):
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
        conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
        connections.append(conn)
    while len(srv.attempts) < 8:
        time.sleep(0.01)
    srv.stop()
    left = [t.name for t in set(threading.enumerate()) - before]
    for conn in connections:
        conn.close()
    assert left == []
