"""``LLMClient``: every reliability layer of the course around one chat call.

Taught in notebook 05. The flow of one call (DESIGN.md):

    validate -> request id -> deadline ->
      for each model in [primary, *fallbacks]:
        cache hit? -> return it            (checked first: it costs nothing, even when
        breaker open? -> next model          the model's breaker is open)
        retries with backoff (tenacity), each attempt: rate limiter -> transport
        success -> breaker, cache store, return
        permanent error -> raise at once; transient after retries -> next model
      all failed -> stale answer? -> queue for later? -> AllModelsFailed
    exactly one ``final`` log record per call

One client is safe to share between threads.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar
from urllib.parse import urlsplit

from . import errors
from .answer_times import AnswerTimes
from .cache import cache_key, cacheable, open_cache, storable
from .circuit import CircuitBreakers
from .config import ClientConfig, Timeouts
from .cost import cost_usd
from .degrade import DrainReport, DurableQueue, first_success, stale_answer
from .embed import EmbeddingResult, embed_texts, text_tokens
from .flight import SingleFlight
from .logs import attempt_record, final_record, log_to, records_of, stop_logging
from .ratelimit import Permit, RateLimiter, estimate_tokens
from .request import CallOptions, call_options, check_request_id, validate
from .retry import RetryBudget, RetryPolicy, new_request_id, wait_backoff
from .shared import SharedState, namespace_of
from .shared.breaker import SharedCircuitBreakers
from .shared.limiter import SharedRateLimiter
from .stream import ChatStream
from .throttle import AdaptiveThrottle, AdaptiveThrottles
from .transport import Completion, StreamReader, Transport, Usage, completion_from_json

__all__ = ["ChatResult", "ChatStream", "EmbeddingResult", "LLMClient"]

log = logging.getLogger("week04_lib.client")
T = TypeVar("T")


@dataclass(frozen=True)
class ChatResult:
    """One answer. ``cached``: from the cache, no request sent; ``stale``: an earlier
    answer served because every model failed; ``attempts``: HTTP attempts made."""

    text: str
    model: str
    request_id: str
    cached: bool
    stale: bool
    attempts: int
    latency_s: float
    usage: Usage
    cost_usd: float | None
    finish_reason: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # the first choice's
    choices: list[dict[str, Any]] = field(default_factory=list, repr=False)  # all of them (n > 1)


@dataclass
class _Call:
    """What one logical call has done so far (for its result and its final log line).
    ``send`` is the transport's method for its kind (chat, open_stream, embeddings)."""

    request_id: str
    messages: list[dict[str, Any]]
    params: dict[str, Any]
    deadline: float
    started: float
    options: CallOptions
    send: Callable[..., Any]
    tokens: int  # the limiter's estimate
    prompt_len: int
    attempts: int = 0
    model: str = ""
    server_said: dict[str, errors.LLMError] = field(default_factory=dict)  # model -> its last error
    held: Permit | None = None  # a stream's limiter permit, released when the stream ends

    def idempotency_key(self, model: str) -> str:
        """One key per (logical call, model): the same on every retry and drain, but a
        fallback model's request (another body) never reuses the primary's key."""
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"week04:{self.request_id}/{model}"))


class LLMClient:
    """The reusable client. ``clock`` and ``sleep`` are injectable (virtual-time tests)."""

    def __init__(
        self,
        config: ClientConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config = config if config is not None else ClientConfig.from_env()
        self.clock = clock
        self.transport = Transport(
            config.base_url, config.api_key, clock=clock, max_response_bytes=config.max_response_bytes
        )
        budget = RetryBudget(config.retry_budget, clock=clock) if config.retry_budget is not None else None
        self.retry = RetryPolicy(
            config.max_attempts,
            wait=wait_backoff("full", config.backoff_base, config.backoff_cap),
            budget=budget,
            clock=clock,
            sleep=sleep,
        )
        namespace = namespace_of(config.base_url, config.api_key)  # one account's state, never its key
        self.shared = SharedState(config.shared, namespace) if config.shared else None
        on_redis = {"shared": self.shared} if self.shared else {}
        limited = config.rpm or config.tpm or config.max_concurrency
        limiter = partial(SharedRateLimiter, self.shared) if self.shared else RateLimiter
        self.limiter = (
            limiter(config.rpm, config.tpm, config.max_concurrency, clock=clock, sleep=sleep) if limited else None
        )
        same_redis = self.shared if config.cache == config.shared else None
        self.cache = open_cache(config.cache, config.cache_ttl_s, namespace, same_redis)
        self.flights = SingleFlight(self.shared, clock=clock, sleep=sleep)  # identical calls in flight: one request
        self.breakers = (SharedCircuitBreakers if self.shared else CircuitBreakers)(
            failures=config.breaker_failures,
            failure_rate=config.breaker_failure_rate,
            reset_s=config.breaker_reset_s,
            clock=clock,
            **on_redis,
        )
        self.throttles = AdaptiveThrottles(k=config.throttle_k, clock=clock) if config.throttle_k else None
        self.answer_times = AnswerTimes()  # how long a request needs, per model
        # a claim outlives any one send (else another drain would send it too)
        lease_s = max(60.0, 2 * config.timeouts.total)
        self.queue = DurableQueue(config.queue_path, lease_s=lease_s) if config.queue_path else None
        self._log_handler: logging.Handler | None = None
        if config.log_path:
            passwords = [urlsplit(url).password for url in (config.shared, config.cache) if url]
            secrets = [s for s in (config.api_key, *passwords) if s]
            self._log_handler = log_to(config.log_path, secrets=secrets, owner=self)  # this client's records only

    def __repr__(self) -> str:
        return f"LLMClient({self.config!r})"

    def close(self) -> None:
        """Close the connections (the provider's and Redis's) and this client's log file."""
        self.transport.close()
        if self.cache is not None:
            self.cache.close()
        if self.shared is not None:
            self.shared.close()
        handler, self._log_handler = self._log_handler, None
        if handler is not None:
            stop_logging(handler)

    def __enter__(self) -> LLMClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ the call

    def chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        model: str | None = None,
        request_id: str | None = None,
        timeout: float | Timeouts | None = None,
        max_attempts: int | None = None,
        cache: bool = True,
        extra_headers: Mapping[str, str] | None = None,
        **params: Any,
    ) -> ChatResult:
        """Send ``messages`` (with OpenAI parameters such as temperature, max_tokens) and
        return a ``ChatResult``, or raise an ``LLMError`` (or ``InvalidRequest``).

        Per-call options, never sent in the body: ``timeout`` (seconds for the whole call,
        or a ``Timeouts``), ``max_attempts``, ``cache=False`` (neither read nor write it),
        ``extra_headers``. ``model`` asks for that model only (no fallbacks)."""
        call = self._new_call(messages, params, request_id, timeout, max_attempts, cache, extra_headers)
        models = [model] if model else [self.config.model, *self.config.fallback_models]
        return self._call(call, lambda: self._first_answer(call, models, model))

    def stream(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        model: str | None = None,
        request_id: str | None = None,
        timeout: float | Timeouts | None = None,
        max_attempts: int | None = None,
        cache: bool = True,
        extra_headers: Mapping[str, str] | None = None,
        **params: Any,
    ) -> ChatStream:
        """Like ``chat``, streamed: returns a ``ChatStream`` once the first token is in
        (retries, fallbacks and the breaker apply until then); iterate it for the text,
        then read ``.result``. Use it in a ``with`` block: leaving it closes the stream.
        ``Timeouts.first_token`` and ``idle`` bound the waits; a failure after the first
        token is a ``StreamInterrupted`` carrying the text so far."""
        call = self._new_call(
            messages, params, request_id, timeout, max_attempts, cache, extra_headers, send=self.transport.open_stream
        )
        models = [model] if model else [self.config.model, *self.config.fallback_models]
        return self._call(call, lambda: ChatStream(self, call, self._first_answer(call, models, model)))

    def embed(
        self,
        texts: str | Sequence[str],
        model: str | None = None,
        *,
        timeout: float | Timeouts | None = None,
        max_attempts: int | None = None,
        cache: bool = True,
        extra_headers: Mapping[str, str] | None = None,
        max_batch: int = 256,
        concurrency: int = 4,
        **params: Any,
    ) -> EmbeddingResult:
        """Vectors for one text or a list, in input order, through every layer. Texts
        already in the cache (same model, text and ``dimensions``) are not sent; the rest
        go in batches of ``max_batch``, ``concurrency`` at a time, each batch one request
        with the ``embedding`` timeout preset unless ``timeout`` says otherwise."""
        return embed_texts(
            self, texts, model or self.config.embedding_model, params,
            timeout=timeout, max_attempts=max_attempts, cache=cache, extra_headers=extra_headers,
            max_batch=max_batch, concurrency=concurrency,
        )  # fmt: skip

    def _new_call(
        self,
        messages: Any,
        params: dict[str, Any],
        request_id: str | None,
        timeout: float | Timeouts | None,
        max_attempts: int | None,
        cache: bool,
        extra_headers: Mapping[str, str] | None,
        send: Callable[..., Any] | None = None,
    ) -> _Call:
        validate(messages, params)
        options = call_options(self.config, timeout, max_attempts, cache, extra_headers)
        if request_id is not None:
            check_request_id(request_id)
        started = self.clock()
        messages = [dict(m) for m in messages]
        return _Call(
            request_id or new_request_id(), messages, params, started + options.timeouts.total, started, options,
            send=send or self.transport.chat,
            tokens=estimate_tokens(messages, params.get("max_tokens")),
            prompt_len=sum(len(str(m.get("content") or "")) for m in messages),
        )  # fmt: skip

    def _new_embed_call(self, request_id: str, model: str, texts: list[str], options: CallOptions) -> _Call:
        started = self.clock()
        return _Call(
            request_id, [], {}, started + options.timeouts.total, started, options,
            send=self.transport.embeddings, tokens=sum(map(text_tokens, texts)),
            prompt_len=sum(map(len, texts)), model=model,
        )  # fmt: skip

    def _call(self, call: _Call, work: Callable[[], T]) -> T:
        """Run one logical call's ``work``: every failure typed, one final record (a
        stream writes its own, when it ends)."""
        with records_of(self):  # this client's log file takes them
            return self._logged_call(call, work)

    def _logged_call(self, call: _Call, work: Callable[[], T]) -> T:
        result: Any = None
        failure: BaseException | None = None
        try:
            result = work()
            return result
        except errors.LLMError as exc:
            failure = exc
            raise
        except Exception as exc:  # a bug, not the service: still typed, still logged
            failure = errors.LLMError(
                errors.redact(f"unexpected {type(exc).__name__} inside the client: {exc}", [self.config.api_key]),
                request_id=call.request_id,
                model=call.model or None,
            )
            raise failure from exc
        except BaseException as exc:  # KeyboardInterrupt and the like: logged, not wrapped
            failure = exc
            raise
        finally:  # exactly one final record per call, however it ended
            if not isinstance(result, ChatStream):
                self._log_final(call, result=result, error=failure)

    def _first_answer(self, call: _Call, models: list[str], explicit_model: str | None) -> ChatResult | StreamReader:
        try:
            return first_success(models, lambda m: self._from_model(call, m), request_id=call.request_id)[1]
        except errors.AllModelsFailed as exc:
            return self._degrade(call, models, exc, explicit_model)

    def _payload(self, call: _Call, model: str) -> dict[str, Any]:
        return {"model": model, "messages": call.messages, **call.params}

    def _from_model(self, call: _Call, model: str) -> ChatResult | StreamReader:
        call.model = model
        payload = self._payload(call, model)
        use_cache = call.options.use_cache and cacheable(payload, allow_sampled=self.config.cache_sampled)[0]
        cache = self.cache if use_cache else None
        key = cache_key(payload, self.config.base_url) if cache is not None else ""
        if cache is not None and (hit := self._cached(call, model, key)) is not None:
            return hit
        if cache is not None and call.send == self.transport.chat:  # a stream or an embedding goes alone
            answered = partial(self._cached, call, model, key)
            stored = partial(cache.holds, key, wait_s=call.deadline - self.clock())
            return self.flights.run(key, call.deadline, lambda: self._sent(call, model, payload), answered, stored)
        return self._sent(call, model, payload)

    def _cached(self, call: _Call, model: str, key: str) -> ChatResult | None:
        assert self.cache is not None
        hit = self.cache.get(key, wait_s=call.deadline - self.clock())
        if hit is None:
            return None
        log.info(
            "cache hit",
            extra={
                "event": "cache_hit",
                "request_id": call.request_id,
                "model": model,
                "cache_hit": True,
                "prompt_len": call.prompt_len,
            },
        )
        return self._result(call, completion_from_json(hit["completion"]), cached=True)

    def _sent(self, call: _Call, model: str, payload: dict[str, Any]) -> ChatResult | StreamReader:
        done = self._through_breaker(call, model, payload)
        if isinstance(done, StreamReader):
            return done  # its ChatStream stores it when (and only if) it ends complete
        result = self._result(call, done)
        self._store(call, result)
        return result

    def _store(self, call: _Call, result: ChatResult) -> None:
        """Keep a complete answer, if this call may use the cache."""
        payload = self._payload(call, call.model)
        if not (call.options.use_cache and cacheable(payload, allow_sampled=self.config.cache_sampled)[0]):
            return
        if self.cache is not None and storable(result.raw):
            value = {"completion": result.raw, "cost_usd": result.cost_usd or 0.0}
            self.cache.put(cache_key(payload, self.config.base_url), value, wait_s=call.deadline - self.clock())

    def _through_breaker(self, call: _Call, model: str, payload: dict[str, Any]) -> Any:
        """Retries under the model's breaker, which hears only what the server did: its
        last error in this call, or no news at all if nothing it said failed the call (a
        request never sent, our own limiter or throttle, our own deadline). Released
        whatever escapes."""
        breaker = self.breakers[model]
        try:
            ticket = breaker.allow()
        except errors.CircuitOpen as exc:
            raise _with_context(exc, call, model) from None
        try:
            done = self.retry.call(
                lambda n: self._attempt(call, payload, n),
                deadline=call.deadline,
                request_id=call.request_id,
                model=model,
                max_attempts=call.options.max_attempts,
                budget=self._retry_gate(model),
            )
        except errors.LLMError:
            said = call.server_said.get(model)
            if said is None:
                breaker.abandon(ticket)
            else:
                breaker.record_failure(said, ticket)
            raise
        except BaseException:
            breaker.abandon(ticket)
            raise
        breaker.record_success(ticket)
        return done

    def _retry_gate(self, model: str) -> AdaptiveThrottle | None:
        """The model's adaptive throttle lets retries go only while they pay; a fixed
        ``retry_budget``, if configured, is used instead (the policy's own)."""
        if self.throttles is None or self.retry.budget is not None:
            return None
        return self.throttles[model]

    def _permit(self, call: _Call, model: str) -> Permit:
        """The limiter's permit, refused if it would let the request go with less time left
        than a slow answer of this model takes (it could not finish)."""
        assert self.limiter is not None
        last_moment = call.deadline - self.answer_times.needed(model, call.options.timeouts)
        return self.limiter.acquire(call.tokens, last_moment)

    def _attempt(self, call: _Call, payload: dict[str, Any], attempt: int) -> Any:
        if call.deadline - self.clock() <= 0:  # not an attempt: nothing would be sent
            raise errors.DeadlineExceeded(
                "no time left for another attempt", request_id=call.request_id, model=payload["model"], attempt=attempt
            )
        model = payload["model"]
        throttle = self.throttles[model] if self.throttles else None
        try:
            permit = self._permit(call, model) if self.limiter else None
        except errors.LLMError as exc:  # our own limiter: say which call it stopped
            raise _with_context(exc, call, model, attempt) from None
        try:
            call.attempts += 1  # counted once a request is really about to go
            started = self.clock()
            try:
                done = call.send(
                    payload,
                    timeouts=call.options.timeouts,
                    deadline=call.deadline,
                    request_id=call.request_id,
                    attempt=attempt,
                    idempotency_key=call.idempotency_key(model),
                    extra_headers=call.options.extra_headers,
                )
            except errors.LLMError as exc:
                if self.limiter and isinstance(exc, errors.RateLimited):
                    self.limiter.pause(exc.retry_after if exc.retry_after is not None else 1.0)
                if isinstance(exc, (errors.ReadTimeout, errors.DeadlineExceeded)):
                    self.answer_times.cut_short(model, call.options.timeouts)
                if not isinstance(exc, errors.DeadlineExceeded):  # ours ran out: no news of the server
                    call.server_said[model] = exc
                    if throttle is not None:  # a 400 is the service answering; a 5xx or 429 is not
                        throttle.record(accepted=isinstance(exc, errors.PermanentError))
                self._log_attempt(call, model, attempt, started, error=exc)
                raise
            if throttle is not None:
                throttle.record(accepted=True)
            if isinstance(done, StreamReader):
                call.held, permit = permit, None  # a stream holds its permit until it ends
            else:
                self.answer_times.record(model, done.latency_s)
            if permit is not None and self.limiter and done.usage.known:
                permit.reconcile(done.usage.total_tokens)
                self.limiter.observe_headers(done.headers)
            self._log_attempt(call, model, attempt, started, done=done)
        finally:
            if permit is not None:
                permit.release()
        return done

    def _result(self, call: _Call, done: Completion, *, cached: bool = False, stale: bool = False) -> ChatResult:
        free = cached or stale
        return ChatResult(
            text=done.text,
            model=done.model or call.model,
            request_id=call.request_id,
            cached=cached,
            stale=stale,
            attempts=call.attempts,
            latency_s=self.clock() - call.started,
            usage=done.usage,
            cost_usd=0.0 if free else cost_usd(done.model or call.model, done.usage),
            finish_reason=done.finish_reason,
            raw=done.raw,
            tool_calls=done.tool_calls,
            choices=done.choices,
        )

    def _degrade(
        self, call: _Call, models: list[str], failure: errors.AllModelsFailed, explicit_model: str | None
    ) -> ChatResult:
        """Every model failed: an earlier answer if allowed, else the queue if set, else raise."""
        if self.config.serve_stale and self.cache is not None and call.options.use_cache:
            for model in models:
                key = cache_key(self._payload(call, model), self.config.base_url)
                found = stale_answer(self.cache, key, wait_s=call.deadline - self.clock())
                if found is not None:
                    call.model = model
                    return self._result(call, completion_from_json(found["completion"]), stale=True)
        if self.queue is not None and call.send == self.transport.chat:  # a stream cannot be sent later
            # the model only if the caller chose one: a drain may use the whole chain
            request = {"messages": call.messages, "params": call.params, "model": explicit_model}
            self.queue.enqueue(call.request_id, request)
            raise errors.QueuedForLater(
                f"{failure.message}; queued as {call.request_id}, send it later with drain_queue()",
                errors=failure.errors,
                request_id=call.request_id,
            ) from failure
        if len(failure.errors) == 1:  # no chain to report: the one model's own error says more
            raise failure.errors[0]
        raise failure

    def drain_queue(self) -> DrainReport:
        """Send every queued request again, with its original request id (so a provider
        that honours idempotency keys does not bill it twice)."""
        if self.queue is None:
            raise errors.InvalidRequest("no queue: set ClientConfig(queue_path=...)")
        return self.queue.drain(
            lambda rid, req: self.chat(req["messages"], model=req.get("model"), request_id=rid, **req["params"])
        )

    # ------------------------------------------------------------------ logging

    def _log_attempt(
        self,
        call: _Call,
        model: str,
        attempt: int,
        started: float,
        *,
        done: Completion | None = None,
        error: errors.LLMError | None = None,
    ) -> None:
        if log.isEnabledFor(logging.INFO):  # nobody listens: skip building the record
            fields = attempt_record(
                call.request_id, model, attempt, self.clock() - started, call.prompt_len,
                self.breakers[model].state, done=done, error=error,
            )  # fmt: skip
            log.info("attempt %s %s", attempt, "ok" if error is None else type(error).__name__, extra=fields)

    def _log_final(
        self, call: _Call, *, result: Any = None, error: BaseException | None = None, ttft_s: float | None = None
    ) -> None:
        if log.isEnabledFor(logging.INFO):
            fields = final_record(
                call.request_id, call.model, call.attempts, self.clock() - call.started, call.prompt_len,
                self.breakers[call.model].state if call.model else None, result=result, error=error, ttft_s=ttft_s,
            )  # fmt: skip
            log.info("call %s", "ok" if result is not None else f"failed: {type(error).__name__}", extra=fields)


def _with_context(exc: errors.LLMError, call: _Call, model: str, attempt: int | None = None) -> errors.LLMError:
    """Fill in what an error raised outside the transport (breaker, limiter) lacks."""
    exc.request_id = exc.request_id or call.request_id
    exc.model = exc.model or model
    exc.attempt = exc.attempt if exc.attempt is not None else attempt
    return exc
