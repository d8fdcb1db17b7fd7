"""The durable queue: a batch workload kept on disk until a drain sends it.

Taught in notebook 03, section 3.7 (the third move of graceful degradation; ``degrade``
re-exports these names). Requests are replayed with the request id they were queued
with, so a provider that honours idempotency keys bills each one once.

Several processes may drain one queue at once: each item is *claimed* before it is sent
(a lease, so the item of a claimer that dies is claimed again once its lease runs out).
An item that fails for good goes to a dead-letter state, kept on disk with its error and
never sent again; one bad item never stops the rest.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import errors
from .config import check_file_path

__all__ = ["DrainReport", "DurableQueue", "QueuedRequest"]

log = logging.getLogger("week04_lib.queue")

# Columns added after the first release: a queue file written by older code gains them
# when it is opened (ALTER TABLE), so nothing a user queued is lost.
_COLUMNS = {
    "tries": "INTEGER NOT NULL DEFAULT 0",
    "last_error": "TEXT",
    "done_at": "REAL",
    "dead_at": "REAL",  # dead-lettered: kept with its error, never sent again
    "claimed_by": "TEXT",  # the drain sending it now ...
    "lease_until": "REAL",  # ... until this wall-clock time; after it, anyone may claim it
}
_ITEM = "SELECT seq, request_id, request, enqueued_at, tries, last_error FROM queue"
_WAITING = "done_at IS NULL AND dead_at IS NULL"


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
    dead: dict[str, str] = field(default_factory=dict)  # request id -> error, dead-lettered by this drain


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class DurableQueue:
    """Requests kept on disk (SQLite, fsynced on every commit) until a drain sends them.

    ``enqueue`` returns only once the request is durable, so nothing queued is lost if the
    process dies afterwards. Enqueueing the same request id twice keeps one copy. Safe
    from several threads and processes (one short-lived connection per operation).

    ``lease_s``: how long a drain holds an item it is sending. Make it longer than the
    longest send (a client's total timeout): a lease that runs out mid-send lets another
    drain send the item again (a replay under the same idempotency key, not a new bill).
    ``clock``: wall-clock seconds, shared by every process that drains the file.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        timeout_s: float = 30.0,
        lease_s: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not lease_s > 0:
            raise errors.InvalidRequest(f"lease_s must be a number of seconds > 0, got {lease_s!r}")
        self.path = check_file_path(path, "queue path")
        self.timeout_s = timeout_s
        self.lease_s = lease_s
        self.clock = clock
        with self._transaction() as db:  # one writer at a time: two processes never add a column twice
            db.execute(
                "CREATE TABLE IF NOT EXISTS queue (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                "request_id TEXT UNIQUE NOT NULL, request TEXT NOT NULL, enqueued_at REAL NOT NULL)"
            )
            have = {row[1] for row in db.execute("PRAGMA table_info(queue)")}
            for name, declaration in _COLUMNS.items():
                if name not in have:
                    db.execute(f"ALTER TABLE queue ADD COLUMN {name} {declaration}")

    def __repr__(self) -> str:
        return f"DurableQueue({str(self.path)!r}, pending={len(self)})"

    @contextmanager
    def _transaction(self, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        """One transaction; a write one takes the write lock at once (BEGIN IMMEDIATE), so
        what it reads cannot change under it before it writes."""
        db = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # a commit is on disk before it returns
            db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield db
            except BaseException:
                db.rollback()
                raise
            db.commit()
        finally:
            db.close()

    def enqueue(self, request_id: str, request: Mapping[str, Any]) -> bool:
        """Keep ``request`` for later. False if this request id is already queued, done or dead."""
        body = json.dumps(request)  # not JSON-serialisable: TypeError now, not at drain time
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO queue (request_id, request, enqueued_at) VALUES (?, ?, ?)",
                (request_id, body, self.clock()),
            )
            added = cursor.rowcount == 1
        if added:
            log.info("queued %s", request_id, extra={"event": "queued", "request_id": request_id})
        return added

    def _items(self, where: str) -> list[QueuedRequest]:
        with self._transaction(write=False) as db:
            rows = db.execute(f"{_ITEM} WHERE {where} ORDER BY seq").fetchall()
        return [QueuedRequest(rid, json.loads(body), at, tries, err) for _, rid, body, at, tries, err in rows]

    def pending(self) -> list[QueuedRequest]:
        """Every request not yet sent, oldest first (including any a drain is sending now)."""
        return self._items(_WAITING)

    def dead(self) -> list[QueuedRequest]:
        """The dead letters, oldest first: ``last_error`` says why; no drain sends them."""
        return self._items("done_at IS NULL AND dead_at IS NOT NULL")

    def __len__(self) -> int:
        with self._transaction(write=False) as db:
            return db.execute(f"SELECT COUNT(*) FROM queue WHERE {_WAITING}").fetchone()[0]

    def drain(self, send: Callable[[str, dict[str, Any]], Any], *, max_tries: int | None = None) -> DrainReport:
        """Call ``send(request_id, request)`` for each pending request, oldest first, each
        claimed first so that drains running at once in other processes never send it too.

        - ``send`` returns: the request is done (``report.sent``, ``report.results``).
        - ``PermanentError`` or ``InvalidRequest`` (a bad request, key or model): the
          request is dead-lettered (``report.dead``, ``dead()``) and never sent again.
        - any other exception, a transient ``LLMError`` most often: the request stays
          queued for a later drain (``report.failed``), with its try counted; after
          ``max_tries`` tries (if given) it is dead-lettered instead.

        If the process dies between a send and its mark, the item's lease runs out and a
        later drain sends it again with the same request id: the idempotency key makes that
        a replay. Items that come free during this drain (an expired lease behind it, a
        try it gave back) wait for the next one, so a drain always ends.
        """
        report = DrainReport()
        claimer = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"  # this drain, in this process
        seq = 0
        while (claimed := self._claim(claimer, after=seq)) is not None:
            seq, item = claimed
            rid = item.request_id
            try:
                report.results[rid] = send(rid, item.request)
            except (errors.PermanentError, errors.InvalidRequest) as exc:  # sending again cannot help
                report.dead[rid] = self._give_back(seq, rid, claimer, _describe(exc), dead=True)
            except Exception as exc:
                # A transient LLMError (or an open circuit, or every model down) may pass
                # later. So may any other exception: it says nothing about the request (most
                # often a bug or a local fault in ``send``, cured by a fix or a later drain),
                # and dead-lettering it would shelve work that would go through. ``max_tries``
                # bounds the tries of an item that never passes.
                tries = item.tries + 1
                if max_tries is not None and tries >= max_tries:
                    error = f"{_describe(exc)} (gave up after {tries} tries)"
                    report.dead[rid] = self._give_back(seq, rid, claimer, error, dead=True)
                else:
                    report.failed[rid] = self._give_back(seq, rid, claimer, _describe(exc), dead=False)
            except BaseException as exc:  # Ctrl-C and the like: hand the item back now, not at lease end
                self._give_back(seq, rid, claimer, _describe(exc), dead=False)
                raise
            else:
                self._mark_done(seq)
                report.sent.append(rid)
        return report

    def _claim(self, claimer: str, *, after: int) -> tuple[int, QueuedRequest] | None:
        """The oldest waiting item past sequence number ``after`` that no live lease holds,
        now leased to ``claimer``; None when there is none. Atomic across processes (BEGIN
        IMMEDIATE: no other drain can claim between this read and this write)."""
        now = self.clock()
        with self._transaction() as db:
            row = db.execute(
                f"{_ITEM} WHERE seq > ? AND {_WAITING} AND (lease_until IS NULL OR lease_until <= ?) "
                "ORDER BY seq LIMIT 1",
                (after, now),
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE queue SET claimed_by = ?, lease_until = ? WHERE seq = ?", (claimer, now + self.lease_s, row[0])
            )
        seq, rid, body, at, tries, err = row
        return seq, QueuedRequest(rid, json.loads(body), at, tries, err)

    def _mark_done(self, seq: int) -> None:
        # Answered is final, whoever holds the claim now (a drain that took over an expired
        # lease sends a replay, and its own mark then finds the row done).
        with self._transaction() as db:
            db.execute(
                "UPDATE queue SET done_at = ?, dead_at = NULL, tries = tries + 1, claimed_by = NULL, "
                "lease_until = NULL WHERE seq = ? AND done_at IS NULL",
                (self.clock(), seq),
            )

    def _give_back(self, seq: int, request_id: str, claimer: str, error: str, *, dead: bool) -> str:
        """Release the claim, pending again or dead-lettered; returns ``error``. A claim
        lost meanwhile (the lease ran out, another drain took the item) changes nothing."""
        with self._transaction() as db:
            db.execute(
                "UPDATE queue SET tries = tries + 1, last_error = ?, dead_at = ?, claimed_by = NULL, "
                "lease_until = NULL WHERE seq = ? AND claimed_by = ? AND done_at IS NULL",
                (error, self.clock() if dead else None, seq, claimer),
            )
        if dead:
            log.warning("dead-lettered %s: %s", request_id, error, extra={"request_id": request_id})
        return error
