"""Chaos: 560 logical calls (chats, streams and embeddings) from 8 threads through one
LLMClient against a server that misbehaves in every way the fake server knows,
compressing what it sends. Nothing hangs, nothing is lost, no partial answer passes for
a whole one, nothing bad is cached, nothing is billed twice, and the log tells the truth."""

import math
import random
import threading
import time
import uuid

from week04_lib import ChatResult, ClientConfig, EmbeddingResult, LLMClient, Timeouts, errors
from week04_lib.cache import storable
from week04_lib.fakeserver import FakeLLMServer
from week04_lib.fakeserver.replies import reply_text
from week04_lib.logs import read_logs

KEY = "sk-chaos-0123456789abcdefghij"
SEED = 11
BUDGET = Timeouts(connect=0.5, read=0.3, total=0.8, first_token=0.4, idle=0.3)
SLACK_S = 0.25
THREADS, CALLS_PER_THREAD = 8, 70
MIX = {
    "ok": 0.40,
    "slow:0.1": 0.05,
    "hang": 0.03,
    "trickle:0.05": 0.03,
    "reset": 0.05,
    "drop": 0.05,
    "429:retry-after-ms=20": 0.05,
    "429": 0.04,
    "500": 0.05,
    "503": 0.05,
    "529": 0.04,
    "invalid_json": 0.05,
    "html": 0.04,
    "empty": 0.04,
    "503:retry-after=1": 0.03,
    # the wire's tricks (issue 10)
    "header_trickle:0.1": 0.02,
    "chunked_stall": 0.02,
    "huge_body:0.5": 0.01,
    "deep_json": 0.01,
    "deep_json:503": 0.01,
    "bad_usage:big": 0.01,
    "bad_usage:inf": 0.01,
    "redirect:http://127.0.0.1:9/v1/chat/completions": 0.005,
    "insufficient_quota": 0.005,
    "501": 0.005,
    "503:x-should-retry=false": 0.01,
    # streams (issue 14): a chat or an embedding meeting one gets a normal answer
    "stream_stall:2": 0.02,
    "stream_cut:2": 0.02,
    "stream_garbage:2": 0.02,
    "stream_cut:0": 0.01,
    "stream_slow_start:0.6": 0.02,
    "stream_keepalive": 0.02,
}
BILLED = (
    "ok",
    "slow:0.1",
    "drop",
    "trickle:0.05",
    "header_trickle:0.1",
    "chunked_stall",
    "bad_usage:big",
    "bad_usage:inf",
    "stream_stall:2",
    "stream_cut:2",
    "stream_garbage:2",
    "stream_cut:0",
)
NEVER_BILLED_ON_A_STREAM = ("stream_keepalive",)
MAYBE_BILLED_ON_A_STREAM = ("stream_slow_start:0.6",)  # billed once its silence is over, if the server still runs


def one_call(client: LLMClient, kind: str, prompt: str, rid: str) -> object:
    messages = [{"role": "user", "content": prompt}]
    if kind == "chat":
        return client.chat(messages, temperature=0, request_id=rid)
    if kind == "stream":
        with client.stream(messages, temperature=0, request_id=rid) as stream:
            text = "".join(stream)
        assert text == stream.result.text
        return stream.result
    return client.embed([prompt, f"{prompt} (again)"], timeout=BUDGET)  # not the 13 s embedding preset


def server_would_say(result: ChatResult, prompt: str) -> str:
    return reply_text(SEED, {"model": result.model, "messages": [{"role": "user", "content": prompt}]}, "")[0]


def is_billed(attempt) -> bool:
    streamed = isinstance(attempt.body, dict) and attempt.body.get("stream")
    if attempt.fault.startswith("huge_body"):
        return attempt.path.endswith("/embeddings")  # a huge chat answer is never replayed: counted apart
    if streamed and attempt.fault in NEVER_BILLED_ON_A_STREAM + MAYBE_BILLED_ON_A_STREAM:
        return False
    return attempt.fault in BILLED or attempt.fault in NEVER_BILLED_ON_A_STREAM + MAYBE_BILLED_ON_A_STREAM


def test_chaos(tmp_path, no_leaks):
    log_path = tmp_path / "chaos.jsonl"
    outcomes: dict[str, object] = {}
    prompts: dict[str, tuple[str, str]] = {}
    slowest: list = []
    durations: list[float] = []
    lock = threading.Lock()
    with FakeLLMServer(mix=MIX, seed=SEED, latency=(0.002, 0.02), api_key=KEY, compress="gzip") as srv:
        config = ClientConfig(
            base_url=srv.url,
            api_key=KEY,
            model="fake-mini",
            fallback_models=["fake-large"],
            embedding_model="fake-embed",
            timeouts=BUDGET,
            max_attempts=3,
            backoff_base=0.01,
            backoff_cap=0.1,
            cache="memory",
            breaker_failures=50,
            log_path=str(log_path),
            max_response_bytes=256 * 1024,
        )
        with LLMClient(config) as client:

            def worker(n: int) -> None:
                rng = random.Random(n)
                for i in range(CALLS_PER_THREAD):
                    prompt = f"question {rng.randrange(150)}"  # repeats: the cache gets hits
                    rid = str(uuid.UUID(int=n * 1000 + i))
                    kind = rng.choices(("chat", "stream", "embed"), weights=(5, 3, 2))[0]
                    start = time.monotonic()
                    try:
                        outcome: object = one_call(client, kind, prompt, rid)
                        if kind == "embed":
                            rid = outcome.request_id
                    except errors.LLMError as exc:
                        if kind == "embed":
                            rid = exc.request_id or rid
                        outcome = exc
                    except BaseException as exc:  # anything else escaping is a bug
                        outcome = ("escaped", exc)
                    elapsed = time.monotonic() - start
                    with lock:
                        outcomes[rid] = outcome
                        prompts[rid] = (kind, prompt)
                        durations.append(elapsed)
                        slowest.append((round(elapsed, 2), kind, type(outcome).__name__))

            threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=120)
            cached = [client.cache.get_stale(k) for k in list(client.cache._entries)]
    attempts = srv.attempts

    total = THREADS * CALLS_PER_THREAD
    results = [o for o in outcomes.values() if isinstance(o, (ChatResult, EmbeddingResult))]
    failures = [o for o in outcomes.values() if isinstance(o, errors.LLMError)]

    # every call ended, as a result or a typed error, within its deadline
    assert len(outcomes) == total == len(results) + len(failures)
    assert max(durations) <= BUDGET.total + SLACK_S, sorted(slowest)[-8:]
    assert results and failures  # the mix really did both
    kinds = {kind for kind, _ in prompts.values()}
    assert kinds == {"chat", "stream", "embed"}
    assert any(isinstance(o, errors.StreamInterrupted) for o in failures)

    # no partial answer passes for a whole one: every answer is the server's whole answer
    for rid, outcome in outcomes.items():
        kind, prompt = prompts[rid]
        if isinstance(outcome, ChatResult):
            assert outcome.text == server_would_say(outcome, prompt), (kind, outcome)
            assert outcome.finish_reason == "stop"
        elif isinstance(outcome, EmbeddingResult):
            norms = [math.hypot(*v) for v in outcome.vectors]
            assert len(norms) == 2 and all(math.isclose(n, 1, rel_tol=1e-6) for n in norms)

    # nothing but complete answers in the cache
    chats = [value for value in cached if "completion" in value]
    assert chats and all(storable(value["completion"]) for value in chats)
    assert all(value["completion"]["choices"][0]["message"]["content"] for value in chats)
    assert all(value["vector"] for value in cached if "vector" in value)

    # with idempotency keys, no logical call was billed twice (a huge body is never
    # stored by the server, so it cannot be replayed: billed each time)
    billed = {a.headers["Idempotency-Key"] for a in attempts if is_billed(a)}
    maybe = {a.headers["Idempotency-Key"] for a in attempts if a.fault in MAYBE_BILLED_ON_A_STREAM}
    huge = sum(a.fault.startswith("huge_body") and a.path.endswith("/completions") for a in attempts)
    assert len(billed) <= srv.billed_requests - huge <= len(billed | maybe)

    # the log: one final record per call, true to the outcome, and never the key
    frame = read_logs(log_path)
    finals = frame[frame["event"] == "final"]
    assert sorted(finals["request_id"]) == sorted(outcomes)
    by_id = dict(zip(finals["request_id"], finals["success"], strict=True))
    assert all(bool(by_id[rid]) == (not isinstance(o, errors.LLMError)) for rid, o in outcomes.items())
    assert KEY not in log_path.read_text()
    seen = set(frame["error_type"].dropna())
    assert {"first_token_timeout", "stream_interrupted"} <= seen, seen  # the stream faults were met
    assert int((frame["event"] == "attempt").sum()) == len(attempts)
