"""The workshop: your own ``llm_client.py`` (notebook 05, section 5.4).

The course's deliverable: an LLM client with configurable timeouts, retries with
exponential backoff, error handling (429 backed off, typed errors), a cache and
structured logs. You compose it from ``week04_lib``'s parts, one TODO at a time:

    TODO 1  build_parts   Transport, RetryPolicy (wait_backoff), open_cache, log_to
    TODO 2  key_for       cache_key, or None when the answer may not be reused
    TODO 3  attempt       one Transport.chat within the call's deadline, one log line
    TODO 4  chat          request id, deadline, cache check, retries, cache store, final log line

Each TODO raises ``NotImplementedError`` until you write it. Save the file and re-run the
grading cell of section 5.4: it loads this file again and runs the forced-failure
checklist against ``make_client``, next to ``LLMClient``. While ``chat`` still raises
``NotImplementedError``, the notebook grades the reference
(``notebooks/solutions/llm_client.py``) instead and says so.

Read first: ``week04_lib/transport/http.py`` (``Transport.chat``), ``week04_lib/retry.py``
(``RetryPolicy.call``), ``week04_lib/cache.py`` (``cache_key``, ``cacheable``,
``storable``, ``open_cache``), ``week04_lib/logs.py`` (``log_to``, ``FIELDS``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from week04_lib import errors  # noqa: F401  (the typed errors your client raises)
from week04_lib.cache import cache_key, cacheable, open_cache, storable  # noqa: F401
from week04_lib.config import Timeouts
from week04_lib.logs import log_to, stop_logging  # noqa: F401
from week04_lib.retry import RetryPolicy, new_request_id, wait_backoff  # noqa: F401
from week04_lib.transport import Completion, Transport, completion_from_json  # noqa: F401

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
        self.transport: Transport | None = None  # built by build_parts (closed by close)
        self.log_handler: logging.Handler | None = None
        self.build_parts(api_key, max_attempts, backoff_base, backoff_cap, cache, log_path)

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
        # TODO 1: set four attributes.
        #   self.transport   = Transport(base_url, api_key)
        #   self.retry       = RetryPolicy(max_attempts, wait=wait_backoff("full", base, cap))
        #   self.cache       = open_cache(cache)          ("memory", "sqlite:PATH" or None)
        #   self.log_handler = log_to(log_path, secrets=[api_key]) if there is a log_path, else None
        #                      (secrets: the key is replaced by *** in every line)
        raise NotImplementedError("TODO 1: build_parts")

    def key_for(self, payload: Mapping[str, Any]) -> str | None:
        """The cache key of this request (model, messages, every parameter, the endpoint),
        or None when there is no cache or the answer may not be reused (sampled)."""
        # TODO 2: None without a cache, or when cacheable(payload) says no (its [0]);
        #         else cache_key(payload, self.base_url).
        raise NotImplementedError("TODO 2: key_for")

    def attempt(self, payload: Mapping[str, Any], request_id: str, deadline: float, attempt: int) -> Completion:
        """One HTTP attempt within the call's deadline, with the call's request id (the
        same on every attempt: it is also the Idempotency-Key); one ``attempt`` log line."""
        # TODO 3: return self.transport.chat(payload, timeouts=..., deadline=..., request_id=...,
        #         attempt=...); it raises a typed errors.LLMError on any failure. Whatever happens,
        #         log one line: log.info("attempt", extra=record("attempt", request_id, self.model,
        #         started, error, attempt=attempt)), error being the LLMError or None.
        raise NotImplementedError("TODO 3: attempt")

    def chat(self, messages: Sequence[Mapping[str, Any]], **params: Any) -> Answer:
        """The call: a request id and a total deadline, then the cache, then retries of
        ``attempt``; a whole answer is stored. Exactly one ``final`` log line, answered or not.
        Raises an ``errors.LLMError`` (the last attempt's, typed) when it gives up."""
        # TODO 4:
        #   request_id = new_request_id(); deadline = now + self.timeouts.total (time.monotonic)
        #   payload = {"model": self.model, "messages": [...], **params}
        #   key = self.key_for(payload); a fresh entry in self.cache.get(key)? answer from it
        #         (completion_from_json(entry["completion"])), cached=True, no request sent
        #   else: done = self.retry.call(lambda n: self.attempt(payload, request_id, deadline, n),
        #         deadline=deadline, request_id=request_id, model=self.model)
        #         and if storable(done.raw): self.cache.put(key, {"completion": done.raw})
        #   return Answer(text, model, request_id, cached, attempts, latency_s)
        #   whatever happens: log.info("final", extra=record("final", ..., attempt=attempts))
        raise NotImplementedError("TODO 4: chat")

    def close(self) -> None:
        if self.transport is not None:
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
