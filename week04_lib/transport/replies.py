"""What a reply means: a chat completion, or an error of the taxonomy.

Taught in notebook 01, section 1.5 (errors) and notebook 02, section 2.4 (Retry-After).
Nothing from the server is trusted: deep or broken JSON, absurd token counts and
unknown error shapes all end as a typed error or an explicit "unknown".
"""

from __future__ import annotations

import email.utils
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import errors

__all__ = [
    "MAX_RETRY_AFTER_S",
    "MAX_TOKENS_PER_CALL",
    "Completion",
    "Usage",
    "completion_from_json",
    "error_for_status",
    "parse_completion",
    "parse_json",
    "parse_retry_after",
]

# The official openai package obeys a Retry-After of at most 60 s and ignores a longer
# one (it falls back to its own backoff); so does every part of this package.
MAX_RETRY_AFTER_S = 60.0
# No model reads or writes more than this in one call: a larger count is a broken server.
MAX_TOKENS_PER_CALL = 100_000_000


@dataclass(frozen=True)
class Usage:
    """Tokens of one call. ``known`` is False when the server sent no usable counts
    (missing, negative, not whole numbers, absurd): then the cost is unknown too."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    known: bool = True

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @classmethod
    def from_json(cls, block: Any) -> Usage:
        if not isinstance(block, Mapping):
            return cls(known=False)
        counts = [block.get("prompt_tokens", 0), block.get("completion_tokens", 0)]
        if not all(_plausible_count(c) for c in counts):
            return cls(known=False)
        return cls(int(counts[0]), int(counts[1]))


def _plausible_count(value: Any) -> bool:
    whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    return not isinstance(value, bool) and whole and 0 <= value <= MAX_TOKENS_PER_CALL


@dataclass(frozen=True)
class Completion:
    """A successful, complete chat completion."""

    text: str
    model: str
    usage: Usage
    finish_reason: str | None
    status_code: int
    latency_s: float
    headers: dict[str, str] = field(repr=False)
    raw: dict[str, Any] = field(repr=False)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # the first choice's
    choices: list[dict[str, Any]] = field(default_factory=list, repr=False)  # every choice (n > 1)


# ------------------------------------------------------------------ Retry-After


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date).

    Malformed, negative or longer than ``MAX_RETRY_AFTER_S`` (as the official SDK
    does): None, so the caller's own backoff decides. Never raises. Taught in notebook
    02, section 2.4.
    """
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    candidates = []
    if "retry-after-ms" in lowered:
        candidates.append((lowered["retry-after-ms"], 1000.0))
    if "retry-after" in lowered:
        candidates.append((lowered["retry-after"], 1.0))
    for raw, divisor in candidates:
        seconds = _retry_after_value(raw.strip(), divisor, now)
        if seconds is not None:
            return seconds if seconds <= MAX_RETRY_AFTER_S else None
    return None


def _retry_after_value(raw: str, divisor: float, now: float | None) -> float | None:
    try:
        seconds = float(raw) / divisor
    except (ValueError, OverflowError):
        if divisor != 1.0:
            return None
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when is None or when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
        seconds = max(0.0, seconds)  # a date in the past means "now"
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


# ----------------------------------------------------------------------- errors


def parse_json(raw: bytes) -> Any:
    """``json.loads`` that raises only ValueError (deep nesting is a RecursionError)."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError("JSON nested too deep") from None


def _said(body: bytes, secrets: Sequence[str | None]) -> tuple[str, str]:
    """(what the server said, its error type or code) from any error body shape:
    ``{"error": {"message", "type", "code"}}``, ``{"error": "...", "message": "..."}``,
    ``{"detail": "..."}``, or text that is not JSON at all."""
    text = errors.redact(body.decode("utf-8", "replace").strip(), secrets)
    try:
        data = parse_json(text.encode())
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return (" ".join(text.split())[:200] if text else "empty body"), ""
    error = data.get("error")
    kind = ""
    parts = []
    if isinstance(error, dict):
        parts.append(error.get("message"))
        kind = str(error.get("code") or error.get("type") or "")
    else:
        parts.append(error)
    parts += [data.get("message"), data.get("detail")]
    words = [str(p).strip().rstrip(".") for p in parts if p not in (None, "", [], {})]
    return ": ".join(dict.fromkeys(words))[:300], kind


_ADVICE = {
    401: "check the API key (WEEK04_API_KEY or OPENAI_API_KEY)",
    403: "the key is valid but not allowed to do this; check its project and model access",
    404: "check the model name and base_url (it usually ends in /v1)",
    400: "the request is wrong; fix it, retrying will not help",
    422: "the request is wrong; fix it, retrying will not help",
    501: "the server does not implement this request; check base_url and the parameters it supports",
}
_TRANSIENT_4XX = (408, 409, 429)  # as the official SDKs: the rest of 4xx is the request's fault
_PERMANENT_5XX = (501,)  # Not Implemented: asking again will not implement it


def error_for_status(
    status: int, headers: Mapping[str, str], body: bytes | str, *, secrets: Sequence[str | None] = (), **context: Any
) -> errors.LLMError:
    """Map a non-2xx HTTP reply to the taxonomy (408, 409, 429 and 5xx but 501 are
    transient; a 429 for ``insufficient_quota`` is not: the account is out of credit).
    ``secrets`` are blanked out of the body before any of it is quoted."""
    raw = body.encode() if isinstance(body, str) else body
    said, kind = _said(raw, secrets)
    detail = f": {said}" if said else ""
    context = {**context, "status_code": status}
    if 300 <= status < 400:
        error: errors.LLMError = _redirect(status, headers, context)
    elif status == 429 and kind == "insufficient_quota":
        error = errors.QuotaExceeded(
            f"HTTP 429 insufficient_quota{detail}; the account is out of credit: check the plan and billing",
            **context,
        )
    elif status in _TRANSIENT_4XX or (status >= 500 and status not in _PERMANENT_5XX):
        error = _transient(status, headers, detail, context)
    else:
        cls = {401: errors.AuthError, 403: errors.AuthError, 404: errors.NotFound}.get(status, errors.BadRequest)
        advice = f"; {_ADVICE[status]}" if status in _ADVICE else ""
        error = cls(f"HTTP {status}{detail}{advice}", **context)
    error.should_retry = _should_retry(headers)
    return error


def _transient(status: int, headers: Mapping[str, str], detail: str, context: dict[str, Any]) -> errors.LLMError:
    """Keep the server's Retry-After hint (HTTP allows it on 429 and 503)."""
    cls = {408: errors.LLMTimeout, 429: errors.RateLimited}.get(status, errors.ServerError)
    retry_after = parse_retry_after(headers)
    hint = f"; retry after {retry_after:g}s" if retry_after is not None else ""
    name = "rate limited (HTTP 429)" if status == 429 else f"HTTP {status}"
    return cls(f"{name}{detail}{hint}", retry_after=retry_after, **context)


def _redirect(status: int, headers: Mapping[str, str], context: dict[str, Any]) -> errors.LLMError:
    """Never followed: a POST carries the prompt, which must not go to a host (or over
    plain http) the caller did not choose; 301/302/303 would even turn it into a GET."""
    location = next((str(v) for k, v in headers.items() if str(k).lower() == "location"), None)
    where = f" to {location[:200]}" if location else ""
    return errors.Redirected(
        f"HTTP {status} redirect{where} not followed (a POST is never redirected); "
        "if you trust the new address, set base_url to it",
        location=location,
        **context,
    )


def _should_retry(headers: Mapping[str, str]) -> bool | None:
    value = next((str(v).strip().lower() for k, v in headers.items() if str(k).lower() == "x-should-retry"), None)
    return {"true": True, "false": False}.get(value or "")


# ------------------------------------------------------------------ completions


def _describe_body(raw: bytes, content_type: str, status: int, secrets: Sequence[str | None]) -> str:
    start = errors.redact(raw[:4096].decode("utf-8", "replace"), secrets)[:80]
    return f"status {status}, content-type {content_type or 'none'}, {len(raw)} bytes starting {start!r}"


def parse_completion(
    raw: bytes,
    status: int,
    headers: Mapping[str, str],
    latency_s: float,
    *,
    secrets: Sequence[str | None] = (),
    **context: Any,
) -> Completion:
    """Parse and check a 200 body; anything but a chat completion is InvalidResponse
    (quoting the start of the body, ``secrets`` blanked out)."""
    context = {**context, "status_code": status}
    try:
        data = parse_json(raw)
    except ValueError as exc:
        described = _describe_body(raw, headers.get("Content-Type", ""), status, secrets)
        raise errors.InvalidResponse(f"the response is not valid JSON ({exc}; {described})", **context) from None
    return completion_from_json(data, status, headers, latency_s, **context)


def _shape(data: Any) -> str:
    if isinstance(data, dict):
        return f"an object with keys {', '.join(sorted(map(str, data)))[:120] or 'none'}"
    return "JSON null" if data is None else f"a JSON {type(data).__name__}"


def completion_from_json(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None, latency_s: float = 0.0, **context: Any
) -> Completion:
    """Check the shape of a chat completion's JSON (from the wire or from a cache)."""
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise errors.InvalidResponse(f"the response has no 'choices': it is {_shape(data)}", **context)
    message = choices[0].get("message") or {}
    # a chat message's content, or a legacy completion's ``text``
    text = message.get("content") if isinstance(message, dict) else choices[0].get("text")
    if text is None and "text" in choices[0]:
        text = choices[0]["text"]
    if text is not None and not isinstance(text, str):
        raise errors.InvalidResponse(f"choices[0].message.content is {type(text).__name__}, not text", **context)
    tool_calls = message.get("tool_calls") if isinstance(message, dict) else None
    assert isinstance(data, dict)
    finish = choices[0].get("finish_reason")
    return Completion(
        text=text or "",
        model=str(data.get("model") or context.get("model") or ""),
        usage=Usage.from_json(data.get("usage")),
        finish_reason=finish if isinstance(finish, str) else None,
        status_code=status,
        latency_s=latency_s,
        headers=dict(headers or {}),
        raw=data,
        tool_calls=[c for c in tool_calls if isinstance(c, dict)] if isinstance(tool_calls, list) else [],
        choices=[c for c in choices if isinstance(c, dict)],
    )
