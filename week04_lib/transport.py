"""One HTTP attempt against an OpenAI-compatible endpoint, every outcome typed.

Taught in notebook 01, sections 1.3 to 1.5. ``requests`` bounds the connect and each
socket read, never the whole response: a server that trickles one byte a second keeps
``requests.post(..., timeout=(3, 2))`` alive as long as it likes. ``Transport.chat``
enforces the total deadline itself: the headers wait under urllib3's ``total`` timeout,
then the body is read with ``read1`` (whatever has arrived) while each socket read is
given only the time left, and the connection is closed if time runs out.
"""

from __future__ import annotations

import email.utils
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter

from . import errors
from .config import Timeouts

__all__ = [
    "Completion",
    "Transport",
    "Usage",
    "completion_from_json",
    "error_for_status",
    "parse_completion",
    "parse_retry_after",
]

MAX_RETRY_AFTER_S = 600.0  # a hint longer than this is treated as absurd and clamped


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


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


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date).

    Malformed or negative values are ignored (None); absurd ones are clamped to
    ``MAX_RETRY_AFTER_S``. Never raises. Taught in notebook 02, section 2.4.
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
            return seconds
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
    return min(seconds, MAX_RETRY_AFTER_S)


def _provider_message(body: str) -> str:
    try:
        error = json.loads(body).get("error")
        message = error.get("message") if isinstance(error, dict) else error
        return str(message) if message else ""
    except (ValueError, AttributeError):
        return ""


_ADVICE = {
    401: "check the API key (WEEK04_API_KEY or OPENAI_API_KEY)",
    403: "the key is valid but not allowed to do this; check its project and model access",
    404: "check the model name and base_url (it usually ends in /v1)",
    400: "the request is wrong; fix it, retrying will not help",
    422: "the request is wrong; fix it, retrying will not help",
}


def error_for_status(status: int, headers: Mapping[str, str], body: str, **context: Any) -> errors.LLMError:
    """Map a non-2xx HTTP reply to the taxonomy (408, 409, 429 and 5xx are transient)."""
    said = _provider_message(body)
    detail = f": {said.rstrip('.')}" if said else ""
    if status in (401, 403):
        cls: type = errors.AuthError
    elif status == 404:
        cls = errors.NotFound
    elif status < 500 and status not in (408, 409, 429):
        cls = errors.BadRequest
    else:  # transient: keep the server's Retry-After hint (HTTP allows it on 429 and 503)
        cls = {408: errors.LLMTimeout, 429: errors.RateLimited}.get(status, errors.ServerError)
        retry_after = parse_retry_after(headers)
        hint = f"; retry after {retry_after:g}s" if retry_after is not None else ""
        name = "rate limited (HTTP 429)" if status == 429 else f"HTTP {status}"
        return cls(f"{name}{detail}{hint}", retry_after=retry_after, status_code=status, **context)
    advice = f"; {_ADVICE[status]}" if status in _ADVICE else ""
    return cls(f"HTTP {status}{detail}{advice}", status_code=status, **context)


def _describe_body(raw: bytes, content_type: str, status: int) -> str:
    start = raw[:80].decode("utf-8", "replace")
    return f"status {status}, content-type {content_type or 'none'}, {len(raw)} bytes starting {start!r}"


def parse_completion(
    raw: bytes, status: int, headers: Mapping[str, str], latency_s: float, **context: Any
) -> Completion:
    """Parse and check a 200 body; anything but a chat completion is InvalidResponse."""
    try:
        data = json.loads(raw)
    except ValueError:
        described = _describe_body(raw, headers.get("Content-Type", ""), status)
        raise errors.InvalidResponse(f"the response is not valid JSON ({described})", **context) from None
    return completion_from_json(data, status, headers, latency_s, **context)


def completion_from_json(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None, latency_s: float = 0.0, **context: Any
) -> Completion:
    """Check the shape of a chat completion's JSON (from the wire or from a cache)."""
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        keys = ", ".join(sorted(data)) if isinstance(data, dict) else type(data).__name__
        raise errors.InvalidResponse(
            f"the response has no 'choices' (status {status}, JSON keys: {keys or 'none'})", **context
        )
    message = choices[0].get("message") or {}
    text = message.get("content") if isinstance(message, dict) else None
    if text is not None and not isinstance(text, str):
        raise errors.InvalidResponse(f"choices[0].message.content is {type(text).__name__}, not text", **context)
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    try:
        counted = Usage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
    except (TypeError, ValueError):
        raise errors.InvalidResponse(f"the usage block is not token counts: {usage!r}"[:200], **context) from None
    return Completion(
        text=text or "",
        model=str(data.get("model") or context.get("model") or ""),
        usage=counted,
        finish_reason=choices[0].get("finish_reason"),
        status_code=status,
        latency_s=latency_s,
        headers=dict(headers or {}),
        raw=data,
    )


class Transport:
    """Makes one attempt per ``chat`` call; shares one connection pool across threads."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.monotonic,
        pool_size: int = 32,
        idempotency_keys: bool = True,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.clock = clock
        self.idempotency_keys = idempotency_keys
        if session is None:
            session = requests.Session()
            # requests reads proxies and CA settings from the environment on every request
            # (a third of a local call's time); read them once, with requests' own rules
            found = session.merge_environment_settings(self.base_url, {}, None, None, None)
            session.proxies.update(found["proxies"])
            session.verify = found["verify"]
            session.trust_env = False
        self.session = session
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def __repr__(self) -> str:
        return f"Transport(base_url={self.base_url!r})"

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _headers(self, request_id: str | None) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "User-Agent": "week04_lib"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        if request_id:
            headers["X-Request-ID"] = request_id
            if self.idempotency_keys:  # the provider may replay instead of redoing (and rebilling)
                headers["Idempotency-Key"] = request_id
        return headers

    def _scrub(self, exc: errors.LLMError) -> errors.LLMError:
        """A provider may echo the key in an error message: never pass it on."""
        if self._api_key and self._api_key in exc.message:
            exc.message = exc.message.replace(self._api_key, "***")
            exc.args = (exc.message,)
        return exc

    def chat(
        self,
        payload: Mapping[str, Any],
        *,
        timeouts: Timeouts | None = None,
        deadline: float | None = None,
        request_id: str | None = None,
        attempt: int | None = None,
    ) -> Completion:
        """POST ``payload`` to ``/chat/completions``; return a Completion or raise an LLMError.

        ``deadline`` is a ``clock()`` time the attempt must end by (default: now +
        ``timeouts.total``). Past it, the connection is closed and DeadlineExceeded raised.
        """
        timeouts = timeouts or Timeouts()
        start = self.clock()
        if deadline is None:
            deadline = start + timeouts.total
        context = {"request_id": request_id, "model": payload.get("model"), "attempt": attempt}
        try:
            return self._attempt(payload, timeouts, deadline, start, context)
        except errors.LLMError as exc:
            raise self._scrub(exc) from exc.__cause__

    def _attempt(
        self, payload: Mapping[str, Any], timeouts: Timeouts, deadline: float, start: float, context: dict[str, Any]
    ) -> Completion:
        remaining = deadline - start
        if remaining <= 0:
            raise errors.DeadlineExceeded("no time left for another attempt", **context)
        budget = urllib3.Timeout(
            connect=min(timeouts.connect, remaining), read=min(timeouts.read, remaining), total=remaining
        )
        try:
            response = self.session.post(
                f"{self.base_url}/chat/completions",
                data=json.dumps(payload),
                headers=self._headers(context["request_id"]),
                timeout=budget,
                stream=True,
            )
        except requests.exceptions.ConnectTimeout as exc:
            raise self._timeout(errors.ConnectTimeout, "while connecting", timeouts.connect, deadline, context) from exc
        except requests.exceptions.ReadTimeout as exc:
            raise self._timeout(
                errors.ReadTimeout, "while waiting for the reply", timeouts.read, deadline, context
            ) from exc
        except requests.exceptions.RequestException as exc:
            raise errors.ConnectionFailed(f"connection failed before a reply: {_reason(exc)}", **context) from exc
        try:
            body = self._read_body(response, timeouts, deadline, context)
        except BaseException:
            response.close()  # never return a half-read connection to the pool
            raise
        response.raw.release_conn()
        latency = self.clock() - start
        if not 200 <= response.status_code < 300:
            raise error_for_status(response.status_code, response.headers, body.decode("utf-8", "replace"), **context)
        return parse_completion(body, response.status_code, response.headers, latency, **context)

    def _read_body(
        self, response: requests.Response, timeouts: Timeouts, deadline: float, context: dict[str, Any]
    ) -> bytes:
        """Read what has arrived, chunk by chunk, never waiting past the deadline."""
        raw = response.raw
        sock = getattr(raw.connection, "sock", None) if raw.connection is not None else None
        chunks = []
        while True:
            remaining = deadline - self.clock()
            if remaining <= 0:
                raise self._timeout(
                    errors.DeadlineExceeded, "while the body was arriving", timeouts.total, deadline, context
                )
            if sock is not None:
                sock.settimeout(min(timeouts.read, remaining))
            try:
                chunk = raw.read1(65536)
            except (TimeoutError, urllib3.exceptions.ReadTimeoutError) as exc:
                raise self._timeout(
                    errors.ReadTimeout, "while the body was arriving", timeouts.read, deadline, context
                ) from exc
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                raise errors.ConnectionFailed(f"connection dropped mid-reply: {_reason(exc)}", **context) from exc
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)

    def _timeout(
        self, cls: type, phase: str, limit: float, deadline: float, context: dict[str, Any]
    ) -> errors.LLMError:
        """A timeout that happened at or past the deadline is the deadline's doing."""
        if cls is errors.DeadlineExceeded or self.clock() >= deadline - 1e-3:
            return errors.DeadlineExceeded(f"total deadline exceeded {phase}", **context)
        if cls is errors.ConnectTimeout:
            return cls(f"connect timeout: no connection within {limit:g}s", **context)
        return cls(f"read timeout: nothing received for {limit:g}s {phase}", **context)


def _reason(exc: BaseException) -> str:
    """The innermost cause's words: 'Connection refused', 'Connection reset by peer'..."""
    seen = exc
    while seen.__context__ is not None and seen.__context__ is not seen:
        seen = seen.__context__
    text = str(seen) or type(seen).__name__
    return text[:200]
