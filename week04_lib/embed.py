"""``LLMClient.embed``: vectors for many texts, each text cached, the rest batched.

Taught in notebook 04, section 4.8. Embedding a corpus again after editing ten lines
should send ten lines, not the corpus: the cache holds one entry per (model, text,
dimensions), so only texts it has not seen are sent. Those go in batches of at most
``max_batch`` texts (a request may carry 2,048), ``concurrency`` batches at a time,
each batch one request through every layer (limiter, breaker, retries, log); vectors
come back in input order whatever order the batches finish in.

There are no fallback models: another model's vectors live in another space.
"""

from __future__ import annotations

import contextvars
import math
import threading
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import errors
from .cache import cache_key
from .config import Timeouts
from .cost import cost_usd
from .request import CallOptions, call_options
from .retry import new_request_id
from .transport import EmbeddingReply, Usage

if TYPE_CHECKING:
    from .client import LLMClient, _Call

__all__ = ["MAX_INPUTS", "EmbeddingResult", "embed_texts"]

MAX_INPUTS = 2048  # the most texts one embeddings request may carry (OpenAI's limit)
PARAMS = ("dimensions", "user")  # what embed sends besides model and input


@dataclass(frozen=True)
class EmbeddingResult:
    """Vectors in input order. ``cached[i]``: ``vectors[i]`` came from the cache; ``usage``
    and ``cost_usd`` count only what was sent; ``attempts``: HTTP attempts made."""

    vectors: list[list[float]]
    model: str
    usage: Usage
    cost_usd: float | None
    cached: list[bool]
    request_id: str
    attempts: int
    latency_s: float


def embed_texts(
    client: LLMClient,
    texts: str | Sequence[str],
    model: str,
    params: Mapping[str, Any],
    *,
    timeout: float | Timeouts | None,
    max_attempts: int | None,
    cache: bool,
    extra_headers: Mapping[str, str] | None,
    max_batch: int,
    concurrency: int,
) -> EmbeddingResult:
    """``LLMClient.embed``'s work (see there)."""
    items = _check(texts, model, params, max_batch, concurrency)
    timeout = Timeouts.preset("embedding") if timeout is None else timeout
    options = call_options(client.config, timeout, max_attempts, cache, extra_headers)
    summary = client._new_embed_call(new_request_id(), model, items, options)
    work = _Embedding(client, summary, dict(params), items, max_batch, concurrency)
    return client._call(summary, work.run)


def _check(texts: Any, model: Any, params: Mapping[str, Any], max_batch: Any, concurrency: Any) -> list[str]:
    items = [texts] if isinstance(texts, str) else texts
    if not isinstance(items, (list, tuple)) or not items:
        raise errors.InvalidRequest("texts must be a string or a non-empty list of strings")
    for i, text in enumerate(items):
        if not isinstance(text, str) or not text.strip():
            raise errors.InvalidRequest(f"texts[{i}] must be a non-empty string, got {text!r}")
    if not isinstance(model, str) or not model.strip():
        raise errors.InvalidRequest(f"model must be a non-empty string, got {model!r}")
    unknown = set(params) - set(PARAMS)
    if unknown:
        raise errors.InvalidRequest(f"embed takes {', '.join(PARAMS)} besides texts and model, not {sorted(unknown)}")
    dimensions = params.get("dimensions")
    if dimensions is not None and (not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions < 1):
        raise errors.InvalidRequest(f"dimensions must be a positive whole number, got {dimensions!r}")
    for name, value, high in (("max_batch", max_batch, MAX_INPUTS), ("concurrency", concurrency, 32)):
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= high:
            raise errors.InvalidRequest(f"{name} must be a whole number from 1 to {high}, got {value!r}")
    return list(items)


def text_tokens(text: str) -> int:
    """The limiter's estimate for one text: about four characters a token."""
    return max(1, math.ceil(len(text) / 4))


class _Embedding:
    """One ``embed`` call: cache lookups, batches, results in input order."""

    def __init__(
        self, client: LLMClient, summary: _Call, params: dict[str, Any], items: list[str], max_batch: int, workers: int
    ) -> None:
        self.client, self.summary, self.params, self.items = client, summary, params, items
        self.model = summary.model
        self.max_batch, self.workers = max_batch, workers
        self.options: CallOptions = summary.options
        self._lock = threading.Lock()  # batches finish in several threads
        self._failed = threading.Event()  # one batch failed: send no more
        self.cache = client.cache if self.options.use_cache else None
        self.endpoint = f"{client.config.base_url}/embeddings"
        self.vectors: dict[str, list[float]] = {}  # text -> vector
        self.usage = Usage()
        self.sent_cost: float | None = 0.0

    def _key(self, text: str) -> str:
        return cache_key({"model": self.model, "input": text, **self.params}, self.endpoint)

    def run(self) -> EmbeddingResult:
        todo = list(dict.fromkeys(t for t in self.items if not self._from_cache(t)))  # each text once
        cached = [t in self.vectors for t in self.items]
        batches = [todo[i : i + self.max_batch] for i in range(0, len(todo), self.max_batch)]
        if len(batches) <= 1:
            for i, batch in enumerate(batches):
                self._send(i, batch)
        else:
            self._send_concurrently(batches)
        return EmbeddingResult(
            vectors=[self.vectors[t] for t in self.items],
            model=self.model,
            usage=self.usage,
            cost_usd=self.sent_cost if self.usage.known else None,
            cached=cached,
            request_id=self.summary.request_id,
            attempts=self.summary.attempts,
            latency_s=self.client.clock() - self.summary.started,
        )

    def _from_cache(self, text: str) -> bool:
        if self.cache is None or text in self.vectors:
            return text in self.vectors
        hit = self.cache.get(self._key(text), wait_s=self.options.timeouts.total)
        if hit is not None and isinstance(hit.get("vector"), list):
            self.vectors[text] = hit["vector"]
            return True
        return False

    def _send_concurrently(self, batches: list[list[str]]) -> None:
        with ThreadPoolExecutor(min(self.workers, len(batches)), thread_name_prefix="week04-embed") as pool:
            # each batch in a copy of this context: its log records stay this client's
            futures = [pool.submit(contextvars.copy_context().run, self._send, i, b) for i, b in enumerate(batches)]
            try:
                for future in futures:
                    future.result()
            except BaseException:
                for future in futures:
                    future.cancel()  # not started yet: not sent; the finished ones are cached
                raise

    def _send(self, index: int, batch: list[str]) -> None:
        if self._failed.is_set():
            return
        client = self.client
        first = self.summary.request_id
        rid = first if index == 0 else str(uuid.uuid5(uuid.NAMESPACE_URL, f"week04:{first}/batch/{index}"))
        call = client._new_embed_call(rid, self.model, batch, self.options)
        payload = {"model": self.model, "input": batch, **self.params}
        try:
            reply: EmbeddingReply = client._through_breaker(call, self.model, payload)
        except BaseException:
            self._failed.set()
            raise
        finally:
            with self._lock:
                self.summary.attempts += call.attempts
        self._keep(batch, reply)

    def _keep(self, batch: list[str], reply: EmbeddingReply) -> None:
        cost = cost_usd(self.model, reply.usage)
        for text, vector in zip(batch, reply.vectors, strict=True):
            if self.cache is not None:  # what a later call saves by finding it
                share = cost_usd(self.model, Usage(text_tokens(text), 0)) or 0.0
                value = {"vector": vector, "cost_usd": share}
                self.cache.put(self._key(text), value, wait_s=self.options.timeouts.total)
        with self._lock:
            self.vectors.update(zip(batch, reply.vectors, strict=True))
            known = self.usage.known and reply.usage.known
            self.usage = Usage(self.usage.prompt_tokens + reply.usage.prompt_tokens, 0, known=known)
            self.sent_cost = None if cost is None or self.sent_cost is None else self.sent_cost + cost
