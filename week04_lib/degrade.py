"""Graceful degradation: degrade instead of crashing.

Taught in notebook 03, sections 3.5 to 3.7, after the course's three moves:

- the primary model fails -> a fallback model answers (``first_success``);
- a non-critical call -> an earlier answer, marked stale (``stale_answer``; any store
  with ``get(key)`` will do: a dict here, part 04's caches later);
- a batch workload -> queued on disk for later (``DurableQueue``), then replayed with
  the same request id, so a provider that honours idempotency keys bills it once. The
  queue lives in ``week04_lib.queue``; its names stay importable from here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from . import errors
from .queue import DrainReport, DurableQueue, QueuedRequest

__all__ = ["DrainReport", "DurableQueue", "QueuedRequest", "first_success", "stale_answer"]

log = logging.getLogger("week04_lib.degrade")
T = TypeVar("T")


def first_success(models: Sequence[str], call: Callable[[str], T], *, request_id: str | None = None) -> tuple[str, T]:
    """Try ``call(model)`` for each model in order; return ``(model, answer)`` of the first
    that answers. A permanent error stops the chain at once (another model will not fix
    a bad request or key); a transient error or an open circuit moves on to the next
    model. When every model fails: ``AllModelsFailed`` with one error per model."""
    if not models:
        raise errors.InvalidRequest("no models to try")
    failures: list[errors.LLMError] = []
    for i, model in enumerate(models):
        try:
            return model, call(model)
        except (errors.TransientError, errors.CircuitOpen) as exc:
            failures.append(exc)
            if i + 1 < len(models):
                log.info(
                    "fallback from %s to %s after %s",
                    model,
                    models[i + 1],
                    type(exc).__name__,
                    extra={
                        "event": "fallback",
                        "request_id": request_id,
                        "model": model,
                        "error_type": exc.error_type,
                        "status_code": exc.status_code,
                    },
                )
    summary = "; ".join(f"{m}: {type(e).__name__}" for m, e in zip(models, failures, strict=True))
    raise errors.AllModelsFailed(
        f"all {len(models)} model(s) failed ({summary})", errors=failures, request_id=request_id
    ) from failures[-1]


class Store(Protocol):
    def get(self, key: str) -> Any: ...


def stale_answer(store: Store | None, key: str, **options: Any) -> Any | None:
    """An earlier answer for ``key``, or None. The caller marks it stale. A store with
    ``get_stale`` (part 04's caches) is asked for entries past their TTL too; ``options``
    (such as ``wait_s``) are passed on to it."""
    if store is None:
        return None
    return getattr(store, "get_stale", store.get)(key, **options)
