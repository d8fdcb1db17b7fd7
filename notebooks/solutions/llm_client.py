"""The workshop's ``llm_client.py``, complete: the reference for ``notebooks/workshop/llm_client.py``.

A small LLM client composed from ``week04_lib``'s parts, as the course's deliverable asks:
configurable timeouts, retries with exponential backoff, typed errors (429 backed off,
``Retry-After`` honoured), a cache and structured logs. Notebook 05 (section 5.7) grades it
with the forced-failure checklist, row by row, next to ``LLMClient``.

Try the workshop first: the notebook uses this file only while yours still raises
``NotImplementedError``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from week04_lib import errors
from week04_lib.cache import cache_key, cacheable, open_cache, storable
from week04_lib.config import Timeouts
from week04_lib.logs import log_to, stop_logging
from week04_lib.retry import RetryPolicy, new_request_id, wait_backoff
from week04_lib.transport import Completion, Transport, completion_from_json

log = logging.getLogger("week04_lib.workshop")  # a child of the package's logger: log_to writes it


@dataclass(frozen=True)
class Answer:
    """One answer: ``cached`` when no request was sent, ``attempts`` HTTP requests made."""

    text: str
    model: str
    request_id: str
    cached: bool
    attempts: int
    latency_s: float


class WorkshopClient:
    """``chat(messages, **params)``: one logical call through the cache, the retry policy
    and the transport, within one total deadline, logged as one ``final`` line."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        model: str = "fake-mini",
        timeouts: Timeouts | None = None,
        max_attempts: int = 4,
        backoff_base: float = 0.5,
        backoff_cap: float = 8.0,
        cache: str | None = None,
        log_path: str | None = None,
    ) -> None:
        self.base_url, self.model = base_url, model
        self.timeouts = timeouts or Timeouts.preset("standard")
        self.build_parts(api_key, max_attempts, backoff_base, backoff_cap, cache, log_path)

    # the scaffold's TODO 1
    def build_parts(
        self,
        api_key: str | None,
        max_attempts: int,
        backoff_base: float,
        backoff_cap: float,
        cache: str | None,
        log_path: str | None,
    ) -> None:
        """The parts: a transport (one attempt, typed errors), a retry policy (full-jitter
        backoff), a cache (or None) and, with ``log_path``, a JSON-lines log without the key."""
        self.transport = Transport(self.base_url, api_key)
        self.retry = RetryPolicy(max_attempts, wait=wait_backoff("full", backoff_base, backoff_cap))
        self.cache = open_cache(cache)
        secrets = [api_key] if api_key else []
        self.log_handler = log_to(log_path, secrets=secrets) if log_path else None

    # the scaffold's TODO 2
    def key_for(self, payload: Mapping[str, Any]) -> str | None:
        """The cache key of this request (model, messages, every parameter, the endpoint),
        or None when there is no cache or the answer may not be reused (sampled)."""
        if self.cache is None or not cacheable(payload)[0]:
            return None
        return cache_key(payload, self.base_url)

    # the scaffold's TODO 3
    def attempt(self, payload: Mapping[str, Any], request_id: str, deadline: float, attempt: int) -> Completion:
        """One HTTP attempt within the call's deadline, with the call's request id (the
        same on every attempt: it is also the Idempotency-Key); one ``attempt`` log line."""
        started = time.monotonic()
        error: errors.LLMError | None = None
        try:
            return self.transport.chat(
                payload, timeouts=self.timeouts, deadline=deadline, request_id=request_id, attempt=attempt
            )
        except errors.LLMError as exc:
            error = exc
            raise
        finally:
            log.info(
                "attempt %s", attempt, extra=record("attempt", request_id, self.model, started, error, attempt=attempt)
            )

    # the scaffold's TODO 4
    def chat(self, messages: Sequence[Mapping[str, Any]], **params: Any) -> Answer:
        """The call: a request id and a total deadline, then the cache, then retries of
        ``attempt``; a whole answer is stored. Exactly one ``final`` log line, answered or not.
        Raises an ``errors.LLMError`` (the last attempt's, typed) when it gives up."""
        request_id, started = new_request_id(), time.monotonic()
        deadline = started + self.timeouts.total
        payload = {"model": self.model, "messages": [dict(m) for m in messages], **params}
        attempts = 0

        def one(n: int) -> Completion:
            nonlocal attempts
            attempts = n
            return self.attempt(payload, request_id, deadline, n)

        error: BaseException | None = None
        try:
            key = self.key_for(payload)
            hit = self.cache.get(key) if self.cache is not None and key else None
            if hit is not None:
                done, cached = completion_from_json(hit["completion"]), True
            else:
                done, cached = self.retry.call(one, deadline=deadline, request_id=request_id, model=self.model), False
                if self.cache is not None and key and storable(done.raw):
                    self.cache.put(key, {"completion": done.raw})
            return Answer(done.text, done.model or self.model, request_id, cached, attempts, time.monotonic() - started)
        except BaseException as exc:  # typed LLMErrors, and anything else: logged as a failure
            error = exc
            raise
        finally:
            log.info("final", extra=record("final", request_id, self.model, started, error, attempt=attempts))

    def close(self) -> None:
        self.transport.close()
        if self.log_handler is not None:
            stop_logging(self.log_handler)
            self.log_handler = None

    def __enter__(self) -> WorkshopClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def record(
    event: str, request_id: str, model: str, started: float, error: BaseException | None, **more: Any
) -> dict[str, Any]:
    """The fields of one structured log line (``logs.FIELDS`` names)."""
    return {
        "event": event,
        "request_id": request_id,
        "model": model,
        "latency_s": round(time.monotonic() - started, 6),
        "success": error is None,
        "status_code": getattr(error, "status_code", None),
        "error_type": getattr(error, "error_type", None if error is None else type(error).__name__),
        **more,
    }


def make_client(base_url: str, **settings: Any) -> WorkshopClient:
    """What the checklist calls: ``make_client(base_url, timeouts=..., max_attempts=..., cache=...)``."""
    return WorkshopClient(base_url, **settings)
