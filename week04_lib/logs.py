"""Structured logs: one JSON object a line, on the standard ``logging`` module.

Taught in notebook 04, sections 4.4 and 4.5. Every module logs to a child of the
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
import threading
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__all__ = ["FIELDS", "JsonFormatter", "format_summary", "log_to", "read_logs", "stop_logging", "summarize"]

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
        entry["event"] = entry["event"] or "log"
        entry.update(level=record.levelname, logger=record.name, message=record.getMessage())
        line = json.dumps(entry, default=str)
        for secret in self.secrets:  # as written, and as JSON would escape it
            line = line.replace(secret, "***").replace(json.dumps(secret)[1:-1], "***")
        return line


_users: dict[logging.Handler, int] = {}  # handler -> how many log_to calls hold it


def log_to(path: str | Path, *, level: int = logging.INFO, secrets: Iterable[str] = ()) -> logging.Handler:
    """Append the package's records to ``path`` as JSON lines (once per path; later calls
    add their secrets to the same handler). Give the handler back with ``stop_logging``."""
    logger = logging.getLogger(ROOT)
    target = str(Path(path).resolve())
    with _lock:
        for handler in logger.handlers:
            if isinstance(handler, logging.FileHandler) and handler.baseFilename == target:
                if isinstance(handler.formatter, JsonFormatter):
                    handler.formatter.secrets.update(s for s in secrets if s)
                _users[handler] = _users.get(handler, 0) + 1
                return handler
        handler = logging.FileHandler(target, encoding="utf-8")
        handler.setFormatter(JsonFormatter(secrets))
        logger.addHandler(handler)
        _users[handler] = 1
        if logger.level == logging.NOTSET or logger.level > level:
            logger.setLevel(level)
        return handler


def stop_logging(handler: logging.Handler) -> None:
    """Undo one ``log_to``: the file is closed when its last user stops."""
    with _lock:
        left = _users.get(handler, 1) - 1
        if left > 0:
            _users[handler] = left
            return
        _users.pop(handler, None)
        logging.getLogger(ROOT).removeHandler(handler)
    handler.close()


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
    for model, group in finals.groupby(finals["model"].fillna("(none)")):
        group_ok = group["success"].fillna(False).astype(bool)
        by_model[model] = {
            "calls": len(group),
            "error_rate": round(1 - group_ok.mean(), 4),
            "p95_latency_s": round(float(group["latency_s"].astype(float).quantile(0.95)), 3),
            "cost_usd": round(float(group["cost_usd"].fillna(0).astype(float).sum()), 6),
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
        "cost_usd": round(float(finals["cost_usd"].fillna(0).astype(float).sum()), 6),
    }


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as a few readable lines (for the command line)."""
    if not summary.get("calls"):
        return "no calls in this log"
    lines = [
        f"{summary['calls']} calls from {summary['from']} to {summary['to']}",
        f"success {summary['success_rate']:.1%}, error {summary['error_rate']:.1%}, "
        f"{summary['attempts_per_call']} attempts per call, cache hits {summary['cache_hit_rate']:.1%}",
        f"latency p50 {summary['latency_p50_s']}s  p95 {summary['latency_p95_s']}s  p99 {summary['latency_p99_s']}s",
        f"tokens in {summary['tokens_in']}, out {summary['tokens_out']}, cost ${summary['cost_usd']:.4f}",
        "errors by type: " + (", ".join(f"{k} {v}" for k, v in summary["errors_by_type"].items()) or "none"),
    ]
    for model, row in summary["by_model"].items():
        lines.append(
            f"  {model}: {row['calls']} calls, error {row['error_rate']:.1%}, "
            f"p95 {row['p95_latency_s']}s, ${row['cost_usd']:.4f}"
        )
    return "\n".join(lines)
