"""Chaos: 560 logical calls from 8 threads through one LLMClient against a server that
misbehaves in every way the fake server knows, compressing what it sends. Nothing hangs,
nothing is lost, nothing bad is cached, nothing is billed twice, and the log tells the
truth."""

import random
import threading
import time
import uuid

from week04_lib import ChatResult, ClientConfig, LLMClient, Timeouts, errors
from week04_lib.cache import storable
from week04_lib.fakeserver import FakeLLMServer
from week04_lib.logs import read_logs

KEY = "sk-chaos-0123456789abcdefghij"
BUDGET = Timeouts(connect=0.5, read=0.3, total=0.8)
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
)


def test_chaos(tmp_path, no_leaks):
    log_path = tmp_path / "chaos.jsonl"
    outcomes: dict[str, object] = {}
    durations: list[float] = []
    lock = threading.Lock()
    with FakeLLMServer(mix=MIX, seed=11, latency=(0.002, 0.02), api_key=KEY, compress="gzip") as srv:
        config = ClientConfig(
            base_url=srv.url,
            api_key=KEY,
            model="fake-mini",
            fallback_models=["fake-large"],
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
                    start = time.monotonic()
                    try:
                        outcome: object = client.chat(
                            [{"role": "user", "content": prompt}], temperature=0, request_id=rid
                        )
                    except errors.LLMError as exc:
                        outcome = exc
                    except BaseException as exc:  # anything else escaping is a bug
                        outcome = ("escaped", exc)
                    elapsed = time.monotonic() - start
                    with lock:
                        outcomes[rid] = outcome
                        durations.append(elapsed)

            threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=120)
            cached = [client.cache.get_stale(k) for k in list(client.cache._entries)]
    attempts = srv.attempts

    total = THREADS * CALLS_PER_THREAD
    results = [o for o in outcomes.values() if isinstance(o, ChatResult)]
    failures = [o for o in outcomes.values() if isinstance(o, errors.LLMError)]

    # every call ended, as a result or a typed error, within its deadline
    assert len(outcomes) == total == len(results) + len(failures)
    assert max(durations) <= BUDGET.total + SLACK_S, sorted(durations)[-5:]
    assert results and failures  # the mix really did both

    # nothing but complete answers in the cache
    assert cached and all(storable(value["completion"]) for value in cached)
    assert all(value["completion"]["choices"][0]["message"]["content"] for value in cached)

    # with idempotency keys, no logical call was billed twice (a huge body is never
    # stored by the server, so it cannot be replayed: billed each time)
    billed = [a.headers["Idempotency-Key"] for a in attempts if a.fault in BILLED]
    huge = sum(a.fault.startswith("huge_body") for a in attempts)
    assert srv.billed_requests - huge == len(set(billed)) <= total

    # the log: one final record per call, true to the outcome, and never the key
    frame = read_logs(log_path)
    finals = frame[frame["event"] == "final"]
    assert sorted(finals["request_id"]) == sorted(outcomes)
    by_id = dict(zip(finals["request_id"], finals["success"], strict=True))
    assert all(bool(by_id[rid]) == isinstance(o, ChatResult) for rid, o in outcomes.items())
    assert KEY not in log_path.read_text()
    assert int((frame["event"] == "attempt").sum()) == sum(1 for a in attempts if a.path.endswith("/completions"))
