"""Regenerate data/incident_logs.jsonl: one simulated hour of an LLM-backed service.

    .venv/bin/python data/make_incident_logs.py        # seeded: the same file every time

A discrete-event simulation in virtual time (no sleeping, no network) that drives the
package's own pieces: the circuit breakers (with the virtual clock), the backoff
schedules, the fake server's latency model, the pricing table and the JSON-lines
formatter. Each logical call checks the cache, then tries gpt-4o-mini and falls back to
gpt-4o, retrying transient errors with full-jitter backoff and honouring Retry-After,
within a 35 s deadline; each model's breaker hears one outcome per call, after the
retries (a 429 is not a failure to it). Two incidents are hidden in it, for notebook 04:

- a provider outage: gpt-4o-mini answers 503 (and some timeouts) for about 11 minutes;
- a rate-limit storm: a batch job quadruples the traffic and the provider answers 429s.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
from datetime import datetime, timezone
from pathlib import Path

from week04_lib.backoff import delay
from week04_lib.circuit import CircuitBreakers
from week04_lib.cost import cost_usd
from week04_lib.errors import CircuitOpen, RateLimited, ServerError
from week04_lib.fakeserver import LatencyModel
from week04_lib.logs import JsonFormatter

SEED = 4
START = datetime(2026, 11, 2, 14, 0, tzinfo=timezone.utc).timestamp()
HOUR = 3600.0
OUTAGE = (START + 21 * 60 + 30, START + 32 * 60 + 50)
STORM = (START + 44 * 60, START + 49 * 60 + 20)
MODELS = ("gpt-4o-mini", "gpt-4o")
LATENCY = {"gpt-4o-mini": LatencyModel((0.9, 6.0)), "gpt-4o": LatencyModel((1.7, 9.0))}
READ_TIMEOUT, DEADLINE, MAX_ATTEMPTS = 15.0, 35.0, 3
FAQ = [f"How do I reset my password? (variant {n})" for n in range(40)]  # asked again and again
OUT = Path(__file__).with_name("incident_logs.jsonl")


class Call:
    def __init__(self, request_id: str, start: float, prompt: str, rng: random.Random) -> None:
        self.request_id, self.start, self.prompt = request_id, start, prompt
        self.prompt_len = len(prompt)
        self.tokens_in = 20 + len(prompt) // 4
        self.model_index, self.attempt, self.previous_sleep = 0, 0, 0.1
        self.ticket: int | None = None  # the breaker's ticket for this model
        self.attempts_total = 0
        self.rng = rng

    @property
    def model(self) -> str:
        return MODELS[self.model_index]


def outcome(model: str, t: float, rng: random.Random) -> tuple[str, float, int | None, float | None]:
    """(error_type or 'ok', seconds taken, status, retry_after) for one attempt at time t."""
    if model == "gpt-4o-mini" and OUTAGE[0] <= t < OUTAGE[1]:
        if rng.random() < 0.2:
            return "read_timeout", READ_TIMEOUT, None, None
        return "server_error", rng.uniform(0.05, 0.3), 503, None
    if STORM[0] <= t < STORM[1] and rng.random() < 0.55:
        return "rate_limited", rng.uniform(0.02, 0.08), 429, float(rng.randint(2, 6))
    roll = rng.random()
    if roll < 0.004:
        return "server_error", rng.uniform(0.1, 0.5), 500, None
    if roll < 0.006:
        return "invalid_response", rng.uniform(0.3, 2.0), 200, None
    return "ok", min(LATENCY[model].sample(rng), READ_TIMEOUT), 200, None


def main(out: Path = OUT) -> None:
    rng = random.Random(SEED)
    formatter = JsonFormatter()
    lines: list[str] = []
    clock = [START]
    breakers = CircuitBreakers(failures=5, reset_s=30, clock=lambda: clock[0])
    breaker_log = logging.getLogger("week04_lib.circuit")
    breaker_log.addHandler(handler := _Collect(lines, formatter, clock))
    breaker_log.setLevel(logging.INFO)
    breaker_log.propagate = False

    def log(t: float, event: str, message: str, **fields: object) -> None:
        record = logging.makeLogRecord(
            {
                "name": "week04_lib.client",
                "levelno": 20,
                "levelname": "INFO",
                "msg": message,
                "ts": t,
                "event": event,
                **fields,
            }
        )
        lines.append(formatter.format(record))

    seen: set[str] = set()
    events: list[tuple[float, int, str, Call]] = []
    order = itertools.count()
    t = START
    while t < START + HOUR:  # arrivals: Poisson, four times as dense during the storm
        rate = 3.2 if STORM[0] <= t < STORM[1] else 0.7
        t += rng.expovariate(rate)
        prompt = rng.choice(FAQ) if rng.random() < 0.2 else f"Summarise support ticket #{next(order)}"
        call = Call(f"req_{next(order):05d}", t, prompt, random.Random(rng.random()))
        heapq.heappush(events, (t, next(order), "begin", call))

    def final(
        call: Call, t: float, success: bool, error_type: str | None = None, tokens_out: int = 0, cache_hit: bool = False
    ) -> None:
        cost = (
            cost_usd(call.model, {"prompt_tokens": call.tokens_in, "completion_tokens": tokens_out})
            if (success and not cache_hit)
            else 0.0
        )
        log(
            t,
            "final",
            "call done" if success else "call failed",
            request_id=call.request_id,
            model=call.model,
            attempt=call.attempts_total,
            latency_s=round(t - call.start, 4),
            success=success,
            error_type=error_type,
            prompt_len=call.prompt_len,
            tokens_in=call.tokens_in if success else 0,
            tokens_out=tokens_out,
            cost_usd=round(cost, 8),
            cache_hit=cache_hit,
            breaker_state=breakers[call.model].state,
        )

    while events:
        now, _, kind, call = heapq.heappop(events)
        clock[0] = now
        if kind == "begin":
            if call.prompt in seen and rng.random() < 0.8:  # a repeated prompt, still in the cache
                log(
                    now,
                    "cache_hit",
                    "served from cache",
                    request_id=call.request_id,
                    model=call.model,
                    cache_hit=True,
                    prompt_len=call.prompt_len,
                )
                final(call, now + 0.002, True, tokens_out=60, cache_hit=True)
                continue
            kind = "try"
        if kind == "try":
            breaker = breakers[call.model]
            try:
                if call.attempt == 0:  # the breaker is asked once per model, before its retries
                    call.ticket = breaker.allow()
            except CircuitOpen:
                kind = "next_model"
            else:
                call.attempt += 1
                call.attempts_total += 1
                error, seconds, status, retry_after = outcome(call.model, now, call.rng)
                call.pending = (error, status, retry_after, now)
                heapq.heappush(events, (now + seconds, next(order), "done", call))
                continue
        if kind == "done":
            error, status, retry_after, began = call.pending
            breaker = breakers[call.model]
            ok = error == "ok"
            tokens_out = call.rng.randint(30, 220) if ok else 0
            log(
                now,
                "attempt",
                "attempt",
                request_id=call.request_id,
                model=call.model,
                attempt=call.attempt,
                latency_s=round(now - began, 4),
                success=ok,
                status_code=status,
                error_type=None if ok else error,
                prompt_len=call.prompt_len,
                tokens_in=call.tokens_in if ok else None,
                tokens_out=tokens_out if ok else None,
            )
            if ok:
                breaker.record_success(call.ticket)
                seen.add(call.prompt)
                final(call, now, True, tokens_out=tokens_out)
                continue
            sleep = delay("full", call.attempt, previous=call.previous_sleep, base=0.5, cap=8.0, rng=call.rng)
            sleep = max(sleep, retry_after or 0.0)
            if call.attempt < MAX_ATTEMPTS and now + sleep - call.start < DEADLINE:
                call.previous_sleep = sleep
                log(
                    now,
                    "retry",
                    "retry",
                    request_id=call.request_id,
                    model=call.model,
                    attempt=call.attempt,
                    error_type=error,
                    status_code=status,
                    retry_sleep_s=round(sleep, 4),
                )
                heapq.heappush(events, (now + sleep, next(order), "try", call))
                continue
            # as LLMClient does: one breaker outcome per call and model, after its retries
            breaker.record_failure(RateLimited(error) if status == 429 else ServerError(error), call.ticket)
            call.last_error = error
            kind = "next_model"
        if kind == "next_model":
            if call.model_index + 1 < len(MODELS):
                log(
                    now,
                    "fallback",
                    "fallback",
                    request_id=call.request_id,
                    model=call.model,
                    error_type=getattr(call, "last_error", "circuit_open"),
                )
                call.model_index += 1
                call.attempt = 0
                heapq.heappush(events, (now, next(order), "try", call))
            else:
                final(call, now, False, error_type="all_models_failed")
    breaker_log.removeHandler(handler)
    breaker_log.propagate, breaker_log.level = True, logging.NOTSET
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {len(lines)} records to {out}")


class _Collect(logging.Handler):
    """The breakers' own state-change records, stamped with the virtual time."""

    def __init__(self, lines: list[str], formatter: JsonFormatter, clock: list[float]) -> None:
        super().__init__()
        self.lines, self.json, self.clock = lines, formatter, clock

    def emit(self, record: logging.LogRecord) -> None:
        record.ts = self.clock[0]
        self.lines.append(self.json.format(record))


if __name__ == "__main__":
    main()
