"""Graceful degradation: degrade instead of crashing.

Taught in notebook 03, sections 3.5 to 3.7, after the course's three moves:

- the primary model fails -> a fallback model answers (``first_success``);
- a non-critical call -> an earlier answer, marked stale (``stale_answer``; any store
  with ``get(key)`` will do: a dict here, part 04's caches later);
- a batch workload -> queued on disk for later (``DurableQueue``), then replayed with
  the same request id, so a provider that honours idempotency keys bills it once.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from . import errors

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


def stale_answer(store: Store | None, key: str) -> Any | None:
    """An earlier answer for ``key``, or None. The caller marks it stale. A store with
    ``get_stale`` (part 04's caches) is asked for entries past their TTL too."""
    if store is None:
        return None
    return getattr(store, "get_stale", store.get)(key)


@dataclass(frozen=True)
class QueuedRequest:
    request_id: str
    request: dict[str, Any]
    enqueued_at: float
    tries: int = 0
    last_error: str | None = None


@dataclass
class DrainReport:
    sent: list[str] = field(default_factory=list)  # request ids answered and marked done
    failed: dict[str, str] = field(default_factory=dict)  # request id -> error, still queued
    results: dict[str, Any] = field(default_factory=dict)  # request id -> what send returned


class DurableQueue:
    """Requests kept on disk (SQLite, fsynced on every commit) until a drain sends them.

    ``enqueue`` returns only once the request is durable, so nothing queued is lost if the
    process dies afterwards. Enqueueing the same request id twice keeps one copy. Safe
    from several threads and processes (one short-lived connection per operation).
    """

    def __init__(self, path: str | Path, *, timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self.timeout_s = timeout_s
        with self._connect() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS queue (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                "request_id TEXT UNIQUE NOT NULL, request TEXT NOT NULL, enqueued_at REAL NOT NULL, "
                "tries INTEGER NOT NULL DEFAULT 0, last_error TEXT, done_at REAL)"
            )

    def __repr__(self) -> str:
        return f"DurableQueue({str(self.path)!r}, pending={len(self)})"

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=self.timeout_s)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # a commit is on disk before it returns
            with db:  # one transaction: commit, or roll back on error
                yield db
        finally:
            db.close()

    def enqueue(self, request_id: str, request: Mapping[str, Any]) -> bool:
        """Keep ``request`` for later. False if this request id is already queued or done."""
        body = json.dumps(request)  # not JSON-serialisable: TypeError now, not at drain time
        with self._connect() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO queue (request_id, request, enqueued_at) VALUES (?, ?, ?)",
                (request_id, body, time.time()),
            )
            added = cursor.rowcount == 1
        if added:
            log.info("queued %s", request_id, extra={"event": "queued", "request_id": request_id})
        return added

    def pending(self) -> list[QueuedRequest]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT request_id, request, enqueued_at, tries, last_error FROM queue "
                "WHERE done_at IS NULL ORDER BY seq"
            ).fetchall()
        return [QueuedRequest(rid, json.loads(body), at, tries, err) for rid, body, at, tries, err in rows]

    def __len__(self) -> int:
        with self._connect() as db:
            return db.execute("SELECT COUNT(*) FROM queue WHERE done_at IS NULL").fetchone()[0]

    def drain(self, send: Callable[[str, dict[str, Any]], Any]) -> DrainReport:
        """Call ``send(request_id, request)`` for every pending request, oldest first, and
        mark each done once it returns. An ``LLMError`` leaves the request queued for the
        next drain. If the process dies between a send and its mark, the next drain sends
        it again with the same request id: the idempotency key makes that a replay."""
        report = DrainReport()
        for item in self.pending():
            try:
                report.results[item.request_id] = send(item.request_id, item.request)
            except errors.LLMError as exc:
                report.failed[item.request_id] = f"{type(exc).__name__}: {exc}"
                self._mark(item.request_id, error=report.failed[item.request_id])
                continue
            self._mark(item.request_id, error=None)
            report.sent.append(item.request_id)
        return report

    def _mark(self, request_id: str, *, error: str | None) -> None:
        with self._connect() as db:
            if error is None:
                db.execute(
                    "UPDATE queue SET done_at = ?, tries = tries + 1 WHERE request_id = ?", (time.time(), request_id)
                )
            else:
                db.execute(
                    "UPDATE queue SET tries = tries + 1, last_error = ? WHERE request_id = ?", (error, request_id)
                )
