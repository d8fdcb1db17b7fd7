"""The error taxonomy: every failure of an LLM call, caught by kind.

Taught in notebook 01, section 1.5. Transient errors are worth retrying (part 02);
permanent ones never are. Every error carries what a log line needs: the request id,
the model, the attempt number, the HTTP status (if any) and a short ``error_type``.
Messages never contain the API key.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every secret replaced by ``***``: as written, and as JSON or a
    Python repr would escape it (a server may echo the key in either form)."""
    for secret in secrets:
        if secret:
            for form in {secret, json.dumps(secret)[1:-1], repr(secret)[1:-1]}:
                text = text.replace(form, "***")
    return text


class LLMError(Exception):
    """Base class of every error the package raises about a call."""

    error_type = "llm_error"

    def __init__(
        self,
        message: str,
        *,
        request_id: str | None = None,
        model: str | None = None,
        attempt: int | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.request_id = request_id
        self.model = model
        self.attempt = attempt
        self.status_code = status_code
        # The server's x-should-retry header (True/False), which overrides the class's
        # verdict as it does in the official SDKs; None when the server did not say.
        self.should_retry: bool | None = None

    def __str__(self) -> str:
        context = [
            f"{name}={value}"
            for name, value in (
                ("model", self.model),
                ("status", self.status_code),
                ("attempt", self.attempt),
                ("request_id", self.request_id),
            )
            if value is not None
        ]
        return f"{self.message} ({', '.join(context)})" if context else self.message


class TransientError(LLMError):
    """May succeed if tried again later: retried with backoff.

    ``retry_after``: the server's Retry-After hint in seconds (429 and 5xx), or None.
    """

    error_type = "transient"

    def __init__(self, message: str, *, retry_after: float | None = None, **context: Any) -> None:
        super().__init__(message, **context)
        self.retry_after = retry_after


class LLMTimeout(TransientError):
    """The call took too long (connect, read, or the total deadline)."""

    error_type = "timeout"


class ConnectTimeout(LLMTimeout):
    """No TCP connection within the connect timeout."""

    error_type = "connect_timeout"


class ReadTimeout(LLMTimeout):
    """The server sent nothing for longer than the read timeout."""

    error_type = "read_timeout"


class DeadlineExceeded(LLMTimeout):
    """The total time budget of the call ran out (even if bytes kept trickling in)."""

    error_type = "deadline"


class FirstTokenTimeout(LLMTimeout):
    """A stream sent no token within ``Timeouts.first_token`` (keep-alive comments and
    an empty first chunk do not count). Nothing reached the caller: it is retried."""

    error_type = "first_token_timeout"


class ConnectionFailed(TransientError):
    """Refused, reset, or dropped before a complete answer arrived."""

    error_type = "connection"


class RateLimited(TransientError):
    """HTTP 429. ``retry_after`` is the server's hint in seconds, or None."""

    error_type = "rate_limited"


class ClientRateLimited(RateLimited):
    """Our own rate limiter would have to wait past the deadline: nothing was sent.

    Taught in notebook 03, section 3.3.
    """

    error_type = "client_rate_limited"


class ServerError(TransientError):
    """HTTP 5xx (500, 502, 503, 504, 529 overloaded) or 408/409."""

    error_type = "server_error"


class InvalidResponse(TransientError):
    """The body is not JSON, or not the shape of a chat completion."""

    error_type = "invalid_response"


class StreamInterrupted(TransientError):
    """A stream broke after its first token: cut, malformed, or an error event.
    ``partial_text`` is what arrived; the answer is not complete and never cached.
    Raised to the caller, not retried: the caller already holds part of the answer."""

    error_type = "stream_interrupted"

    def __init__(self, message: str, *, partial_text: str = "", **context: Any) -> None:
        super().__init__(message, **context)
        self.partial_text = partial_text


class StreamTimeout(StreamInterrupted, LLMTimeout):
    """A stream went silent for longer than ``Timeouts.idle``, or the total deadline
    passed mid-stream: both a ``StreamInterrupted`` and an ``LLMTimeout``."""

    error_type = "stream_timeout"


class RetryBudgetExhausted(TransientError):
    """A transient failure not retried because the client's retry budget is spent.

    The failure itself is ``__cause__``. Taught in notebook 02, section 2.7.
    """

    error_type = "retry_budget"


class PermanentError(LLMError):
    """Retrying cannot help: fix the request, the key or the model name."""

    error_type = "permanent"


class QuotaExceeded(PermanentError):
    """HTTP 429 with ``insufficient_quota``: the account is out of credit, not rate limited."""

    error_type = "quota"


class Redirected(PermanentError):
    """The server answered with a redirect (3xx), which a POST never follows:
    ``location`` is where it pointed (set ``base_url`` there if you trust it)."""

    error_type = "redirect"

    def __init__(self, message: str, *, location: str | None = None, **context: Any) -> None:
        super().__init__(message, **context)
        self.location = location


class CertificateError(PermanentError):
    """The server's TLS certificate is not trusted: retrying will not change it."""

    error_type = "tls_certificate"


class AuthError(PermanentError):
    """HTTP 401 or 403: the API key is missing, wrong, or lacks permission."""

    error_type = "auth"


class NotFound(PermanentError):
    """HTTP 404: usually a wrong model name or base URL."""

    error_type = "not_found"


class BadRequest(PermanentError):
    """HTTP 400 or 422 (or another 4xx, or 501 Not Implemented): the request itself is wrong."""

    error_type = "bad_request"


class CircuitOpen(LLMError):
    """Failed fast: the model's circuit breaker is open, no request was sent."""

    error_type = "circuit_open"


class AllModelsFailed(LLMError):
    """Every model in the chain failed; ``errors`` has one error per model tried."""

    error_type = "all_models_failed"

    def __init__(self, message: str, *, errors: Sequence[LLMError] = (), **context) -> None:
        super().__init__(message, **context)
        self.errors = list(errors)


class QueuedForLater(AllModelsFailed):
    """Every model failed now, and the request is saved on disk to be sent later
    (``LLMClient.drain_queue()``) with the same request id. Taught in notebook 05."""

    error_type = "queued"


class InvalidRequest(ValueError):
    """Bad input to the client, raised before anything is sent.

    A ``ValueError`` (not an ``LLMError``): it is the caller's bug, not the service's.
    """

    error_type = "invalid_request"
