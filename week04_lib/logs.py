"""Structured logs: one JSON object a line, on the standard ``logging`` module.

Taught in notebook 04, sections 4.6 and 4.7 and its appendix. Every module logs to a child of the
``week04_lib`` logger with its fields in ``extra``; ``JsonFormatter`` writes them as one
JSON line with a fixed set of columns, so ``read_logs`` (pandas) can answer the
incident question: what happened, when, and how long did it take?

Events: ``attempt`` (one per HTTP attempt), ``retry``, ``cache_hit``, ``fallback``,
``breaker`` (a state change), ``queued``, and ``final`` (exactly one per logical call).
The API key never appears in a line: formatters scrub any secret they are given.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import InvalidRequest

__all__ = [
    "FIELDS",
    "JsonFormatter",
    "attempt_record",
    "final_record",
    "format_summary",
    "log_to",
    "read_logs",
    "records_of",
    "stop_logging",
    "summarize",
]

FIELDS = (
    "ts",
    "event",
    "request_id",
    "model",
    "attempt",
    "latency_s",
    "success",
    "status_code",
    "error_type",
    "prompt_len",
    "tokens_in",
    "tokens_out",
    "cost_usd",
    "cache_hit",
    "breaker_state",
    "retry_sleep_s",
)
OPTIONAL_FIELDS = ("ttft_s",)  # written only by the records that have them (a stream's final)
ROOT = "week04_lib"
_lock = threading.Lock()


class JsonFormatter(logging.Formatter):
    """One JSON object a line: the FIELDS (None when a record lacks one), then level,
    logger and message. ``secrets`` are replaced by ``***`` wherever they appear."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = {s for s in secrets if s}

    def format(self, record: logging.LogRecord) -> str:
        ts = getattr(record, "ts", None)  # a simulation may stamp its own (virtual) time
        when = datetime.fromtimestamp(ts if ts is not None else record.created, timezone.utc)
        entry: dict[str, Any] = {"ts": when.isoformat(timespec="milliseconds").replace("+00:00", "Z")}
        for name in FIELDS[1:]:
            entry[name] = getattr(record, name, None)
        entry.update((name, getattr(record, name)) for name in OPTIONAL_FIELDS if hasattr(record, name))
        entry["event"] = entry["event"] or "log"
        entry.update(level=record.levelname, logger=record.name, message=record.getMessage())
        line = json.dumps(entry, default=str)
        for secret in self.secrets:  # as written, and as JSON would escape it
            line = line.replace(secret, "***").replace(json.dumps(secret)[1:-1], "***")
        return line


# The client whose call is running in this thread (or task): a client's handler keeps
# only its own records, so two clients with two log files never write into each other's.
_calling: ContextVar[object | None] = ContextVar("week04_lib_calling", default=None)


@contextmanager
def records_of(owner: object) -> Iterator[None]:
    """Mark the records logged inside this block as ``owner``'s (LLMClient does, per call)."""
    token = _calling.set(owner)
    try:
        yield
    finally:
        _calling.reset(token)


class _OwnerFilter(logging.Filter):
    def __init__(self, owner: object) -> None:
        super().__init__()
        self.owner = owner

    def filter(self, record: logging.LogRecord) -> bool:
        return _calling.get() is self.owner


def log_to(
    path: str | Path, *, level: int = logging.INFO, secrets: Iterable[str] = (), owner: object | None = None
) -> logging.Handler:
    """Append the package's records (only ``owner``'s, if given) to ``path`` as JSON
    lines. Give the handler back with ``stop_logging``."""
    logger = logging.getLogger(ROOT)
    try:
        handler: logging.Handler = _QuietFileHandler(str(Path(path).resolve()), encoding="utf-8")
    except OSError as exc:
        raise InvalidRequest(f"cannot write the log file {path}: {exc.strerror or exc}") from None
    handler.setFormatter(JsonFormatter(secrets))
    if owner is not None:
        handler.addFilter(_OwnerFilter(owner))
    with _lock:
        if not _ours(logger):  # the first of ours: remember the level to give back
            logger.week04_level_before = logger.level  # type: ignore[attr-defined]
        logger.addHandler(handler)
        if logger.level == logging.NOTSET or logger.level > level:
            logger.setLevel(level)
    return handler


class _QuietFileHandler(logging.FileHandler):
    """A log that cannot be written (disk full, file gone) never fails a call and never
    prints a traceback: one warning, then the records are dropped."""

    warned = False

    def handleError(self, record: logging.LogRecord) -> None:
        if not self.warned:
            self.warned = True
            problem = sys.exc_info()[1]
            warnings.warn(f"cannot write the log {self.baseFilename} ({problem}); going on without it", stacklevel=2)


def _ours(logger: logging.Logger) -> list[logging.Handler]:
    return [h for h in logger.handlers if isinstance(h.formatter, JsonFormatter)]


def stop_logging(handler: logging.Handler) -> None:
    """Undo one ``log_to``: close its file; the last one gives back the logger's level."""
    logger = logging.getLogger(ROOT)
    with _lock:
        logger.removeHandler(handler)
        if not _ours(logger):
            logger.setLevel(getattr(logger, "week04_level_before", logging.NOTSET))
    handler.close()


def _tokens(usage: Any) -> tuple[int | None, int | None]:
    """(in, out), or (None, None) when the server sent no usable counts."""
    if usage is None or not getattr(usage, "known", True):
        return None, None
    return usage.prompt_tokens, usage.completion_tokens


def attempt_record(
    request_id: str, model: str, attempt: int, latency_s: float, prompt_len: int, breaker_state: str | None,
    *, done: Any = None, error: Any = None,
) -> dict[str, Any]:  # fmt: skip
    """The fields of one ``attempt`` record (one HTTP attempt: ``done`` or ``error``)."""
    tokens_in, tokens_out = _tokens(done.usage if done is not None else None)
    return {
        "event": "attempt",
        "request_id": request_id,
        "model": model,
        "attempt": attempt,
        "latency_s": round(latency_s, 6),
        "success": error is None,
        "status_code": done.status_code if done is not None else getattr(error, "status_code", None),
        "error_type": None if error is None else error.error_type,
        "prompt_len": prompt_len,
        "tokens_in": tokens_in,
        "tokens_out": tokens_out,
        "breaker_state": breaker_state,
    }


def final_record(
    request_id: str, model: str, attempts: int, latency_s: float, prompt_len: int, breaker_state: str | None,
    *, result: Any = None, error: Any = None, ttft_s: float | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The fields of the one ``final`` record of a logical call (a ``result`` or an
    ``error``); a stream's also has ``ttft_s``, its time to first token."""
    fields: dict[str, Any] = {
        "event": "final",
        "request_id": request_id,
        "model": model,
        "attempt": attempts,
        "latency_s": round(latency_s, 6),
        "prompt_len": prompt_len,
        "breaker_state": breaker_state,
    }
    if ttft_s is not None:
        fields["ttft_s"] = round(ttft_s, 6)
    if result is not None:
        tokens_in, tokens_out = _tokens(result.usage)
        fields.update(
            model=result.model,
            success=True,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            cost_usd=result.cost_usd,
            cache_hit=_from_cache(result),
        )
    else:
        fields.update(
            success=False,
            status_code=getattr(error, "status_code", None),
            error_type=getattr(error, "error_type", type(error).__name__),
            tokens_in=0,
            tokens_out=0,
            cost_usd=0.0,
            cache_hit=False,
        )
    return fields


def _from_cache(result: Any) -> bool:
    """A chat answer from the cache (fresh or stale); embeddings: every vector was."""
    cached = result.cached
    return all(cached) if isinstance(cached, list) else bool(cached or getattr(result, "stale", False))


def read_logs(path: str | Path) -> Any:
    """The log as a pandas DataFrame, ``ts`` parsed as UTC datetimes."""
    import pandas as pd

    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return pd.DataFrame(columns=list(FIELDS))
    frame = pd.read_json(path, lines=True, dtype=False)
    for name in FIELDS:
        if name not in frame.columns:
            frame[name] = None
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True, format="ISO8601")
    return frame


def summarize(frame: Any) -> dict[str, Any]:
    """Calls, latency percentiles, error rate by type and by model, tokens and cost, from
    the ``final`` records (one per logical call). A call's model is the one that answered,
    or the last one tried: with fallbacks, the ``attempt`` records tell each model's share."""
    finals = frame[frame["event"] == "final"]
    calls = len(finals)
    if calls == 0:
        return {"calls": 0}
    ok = finals["success"].fillna(False).astype(bool)
    latency = finals["latency_s"].astype(float)
    attempts = int((frame["event"] == "attempt").sum())
    by_model = {}
    models = finals["model"].map(lambda m: "(none)" if m is None or m != m else str(m))  # any JSON value
    for model, group in finals.groupby(models):
        group_ok = group["success"].fillna(False).astype(bool)
        by_model[model] = {
            "calls": len(group),
            "error_rate": round(1 - group_ok.mean(), 4),
            "p95_latency_s": round(float(group["latency_s"].astype(float).quantile(0.95)), 3),
            **_costs(group),
        }
    return {
        "calls": calls,
        "from": str(finals["ts"].min()),
        "to": str(finals["ts"].max()),
        "success_rate": round(float(ok.mean()), 4),
        "error_rate": round(1 - float(ok.mean()), 4),
        "latency_p50_s": round(float(latency.quantile(0.50)), 3),
        "latency_p95_s": round(float(latency.quantile(0.95)), 3),
        "latency_p99_s": round(float(latency.quantile(0.99)), 3),
        "errors_by_type": {k: int(v) for k, v in finals.loc[~ok, "error_type"].value_counts().items()},
        "by_model": by_model,
        "attempts_per_call": round(attempts / calls, 3),
        "cache_hit_rate": round(float(finals["cache_hit"].fillna(False).astype(bool).mean()), 4),
        "tokens_in": int(finals["tokens_in"].fillna(0).sum()),
        "tokens_out": int(finals["tokens_out"].fillna(0).sum()),
        **_costs(finals),
    }


def _costs(finals: Any) -> dict[str, Any]:
    """The known cost, and how many answered calls have none (an unpriced model, or no
    usable usage from the server): those are unknown, never counted as $0."""
    ok = finals["success"].fillna(False).astype(bool)
    unknown = int((ok & finals["cost_usd"].isna()).sum())
    return {"cost_usd": round(float(finals["cost_usd"].dropna().astype(float).sum()), 6), "unknown_cost_calls": unknown}


def _cost_text(row: dict[str, Any]) -> str:
    known, unknown = row["cost_usd"], row.get("unknown_cost_calls", 0)
    if not unknown:
        return f"${known:.4f}"
    return f"${known:.4f} + unknown ({unknown} calls)" if known else f"unknown ({unknown} calls)"


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as a few readable lines (for the command line)."""
    if not summary.get("calls"):
        return "no calls in this log"
    lines = [
        f"{summary['calls']} calls from {summary['from']} to {summary['to']}",
        f"success {summary['success_rate']:.1%}, error {summary['error_rate']:.1%}, "
        f"{summary['attempts_per_call']} attempts per call, cache hits {summary['cache_hit_rate']:.1%}",
        f"latency p50 {summary['latency_p50_s']}s  p95 {summary['latency_p95_s']}s  p99 {summary['latency_p99_s']}s",
        f"tokens in {summary['tokens_in']}, out {summary['tokens_out']}, cost {_cost_text(summary)}",
        "errors by type: " + (", ".join(f"{k} {v}" for k, v in summary["errors_by_type"].items()) or "none"),
    ]
    for model, row in summary["by_model"].items():
        lines.append(
            f"  {model}: {row['calls']} calls, error {row['error_rate']:.1%}, "
            f"p95 {row['p95_latency_s']}s, {_cost_text(row)}"
        )
    return "\n".join(lines)
