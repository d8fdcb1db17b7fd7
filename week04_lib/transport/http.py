"""One HTTP attempt against an OpenAI-compatible endpoint, every outcome typed.

Taught in notebook 01, sections 1.3 to 1.5. ``requests`` bounds the connect and each
socket read, never the whole response: a server that trickles one byte a second (or
one header line) keeps ``requests.post(..., timeout=(3, 2))`` alive as long as it
likes. ``Transport.chat`` holds the total deadline over the whole exchange (the
``Watchdog`` closes the socket when it passes), reads at most ``max_response_bytes``,
decodes gzip and deflate itself, never follows a redirect, and turns every failure
into an ``LLMError`` (or an ``InvalidRequest`` for the caller's own mistakes).
"""

from __future__ import annotations

import contextlib
import json
import ssl
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import requests
import urllib3

from .. import errors
from ..config import Timeouts, check_base_url, check_header_value
from .body import ACCEPT_ENCODING, DEFAULT_MAX_RESPONSE_BYTES, BodyReader, too_large
from .embeddings import EmbeddingReply, parse_embeddings
from .replies import Completion, error_for_status, parse_completion
from .stream import StreamReader, open_stream
from .watchdog import DeadlineAdapter, Guard, Watchdog

__all__ = ["Transport", "encode_json"]


def encode_json(payload: Any, what: str = "the request") -> bytes:
    """The body to send; a value JSON cannot carry (an object, a set, bytes, NaN) is the
    caller's mistake, named before anything is sent."""
    try:
        return json.dumps(payload, allow_nan=False).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        raise errors.InvalidRequest(f"{what} cannot be sent as JSON: {exc}") from None


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
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        self.base_url = check_base_url(base_url)
        if api_key is not None:
            check_header_value("api_key", api_key)
        self._api_key = api_key
        self.clock = clock
        self.idempotency_keys = idempotency_keys
        self.max_response_bytes = max_response_bytes
        if session is None:
            session = requests.Session()
            # requests reads proxies and CA settings from the environment on every request
            # (a third of a local call's time); read them once, with requests' own rules
            found = session.merge_environment_settings(self.base_url, {}, None, None, None)
            session.proxies.update(found["proxies"])
            session.verify = found["verify"]
            session.trust_env = False
        self.session = session
        adapter = DeadlineAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self._watchdog = Watchdog()

    def __repr__(self) -> str:
        return f"Transport(base_url={self.base_url!r})"

    def close(self) -> None:
        self.session.close()
        self._watchdog.close()

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _headers(
        self, request_id: str | None, idempotency_key: str | None, extra: Mapping[str, str] | None
    ) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Accept-Encoding": ACCEPT_ENCODING,
            "User-Agent": "week04_lib",
        }
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        if request_id:
            check_header_value("request_id", request_id)
            headers["X-Request-ID"] = request_id
        key = idempotency_key or request_id
        if key and self.idempotency_keys:  # the provider may replay instead of redoing (and rebilling)
            check_header_value("idempotency_key", key)
            headers["Idempotency-Key"] = key
        return {**headers, **(extra or {})}

    def _scrub(self, exc: errors.LLMError) -> errors.LLMError:
        """A provider may echo the key in an error message: never pass it on."""
        cleaned = errors.redact(exc.message, [self._api_key])
        if cleaned != exc.message:
            exc.message = cleaned
            exc.args = (cleaned,)
        return exc

    def chat(
        self,
        payload: Mapping[str, Any],
        *,
        timeouts: Timeouts | None = None,
        deadline: float | None = None,
        request_id: str | None = None,
        attempt: int | None = None,
        idempotency_key: str | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> Completion:
        """POST ``payload`` to ``/chat/completions``; return a Completion or raise an LLMError.

        ``idempotency_key`` defaults to ``request_id``; ``extra_headers`` are added last.

        ``deadline`` is a ``clock()`` time the attempt must end by (default: now +
        ``timeouts.total``). Past it, the connection is closed and DeadlineExceeded raised.
        """
        timeouts = timeouts or Timeouts()
        start, deadline, context = self._limits(payload, timeouts, deadline, request_id, attempt)
        body = encode_json(payload)
        headers = self._headers(request_id, idempotency_key, extra_headers)
        with self._scrubbed():
            return self._attempt(body, headers, timeouts, deadline, start, context)

    def open_stream(
        self,
        payload: Mapping[str, Any],
        *,
        timeouts: Timeouts | None = None,
        deadline: float | None = None,
        request_id: str | None = None,
        attempt: int | None = None,
        idempotency_key: str | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> StreamReader:
        """POST ``payload`` as a stream (``stream_options.include_usage`` on) and return
        once its first token is in (iterate the reader for the rest), or raise an
        LLMError: ``FirstTokenTimeout`` past ``timeouts.first_token``."""
        timeouts = timeouts or Timeouts()
        _, deadline, context = self._limits(payload, timeouts, deadline, request_id, attempt)
        body = encode_json({**payload, "stream": True, "stream_options": {"include_usage": True}})
        headers = {**self._headers(request_id, idempotency_key, extra_headers), "Accept": "text/event-stream"}
        with self._scrubbed():
            return open_stream(self, body, headers, timeouts, deadline, context)

    def embeddings(
        self,
        payload: Mapping[str, Any],
        *,
        timeouts: Timeouts | None = None,
        deadline: float | None = None,
        request_id: str | None = None,
        attempt: int | None = None,
        idempotency_key: str | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> EmbeddingReply:
        """POST ``payload`` to ``/embeddings``: an EmbeddingReply (vectors in input order)
        or an LLMError, under the same deadline rules as ``chat``."""
        timeouts = timeouts or Timeouts.preset("embedding")
        start, deadline, context = self._limits(payload, timeouts, deadline, request_id, attempt)
        body = encode_json(payload)
        headers = self._headers(request_id, idempotency_key, extra_headers)
        count = len(payload["input"]) if isinstance(payload.get("input"), list) else 1
        with self._scrubbed():
            return self._attempt(
                body, headers, timeouts, deadline, start, context, "/embeddings",
                lambda *reply, **more: parse_embeddings(*reply, count=count, **more),
            )  # fmt: skip

    def _limits(
        self, payload: Mapping[str, Any], timeouts: Timeouts, deadline: float | None, request_id: str | None,
        attempt: int | None,
    ) -> tuple[float, float, dict[str, Any]]:  # fmt: skip
        """(start, deadline, the context every error carries) of one attempt."""
        start = self.clock()
        deadline = start + timeouts.total if deadline is None else deadline
        return start, deadline, {"request_id": request_id, "model": payload.get("model"), "attempt": attempt}

    @contextlib.contextmanager
    def _scrubbed(self) -> Iterator[None]:
        try:
            yield
        except errors.LLMError as exc:
            raise self._scrub(exc) from exc.__cause__

    def _attempt(
        self,
        body: bytes,
        headers: dict[str, str],
        timeouts: Timeouts,
        deadline: float,
        start: float,
        context: dict[str, Any],
        path: str = "/chat/completions",
        parse: Callable[..., Any] = parse_completion,
    ) -> Any:
        remaining = deadline - start
        if remaining <= 0:
            raise errors.DeadlineExceeded("no time left for another attempt", **context)
        budget = urllib3.Timeout(connect=min(timeouts.connect, remaining), read=min(timeouts.read, remaining))
        with self._watchdog.guard(remaining) as guard:
            try:
                response = self._send(body, headers, budget, path)
            except requests.exceptions.RequestException as exc:
                raise self._before_reply(exc, guard, timeouts, deadline, context) from exc
            try:
                raw = self._read_body(response, guard, timeouts, deadline, context)
            except BaseException:
                response.close()  # never return a half-read connection to the pool
                raise
        if guard.fired:  # the whole body was in, but the socket was cut: do not pool it
            response.close()
        else:
            response.raw.release_conn()
        latency = self.clock() - start
        if not 200 <= response.status_code < 300:
            raise error_for_status(response.status_code, response.headers, raw, secrets=[self._api_key], **context)
        return parse(raw, response.status_code, response.headers, latency, secrets=[self._api_key], **context)

    def _send(self, body: bytes, headers: dict[str, str], budget: urllib3.Timeout, path: str) -> requests.Response:
        """Straight to the adapter: ``Session.send`` reads a redirect's whole body (with
        no size cap) even when it does not follow it, and redirects are never followed
        here (see ``replies._redirect``)."""
        request = requests.Request("POST", f"{self.base_url}{path}", data=body, headers=headers)
        prepared = self.session.prepare_request(request)
        return self.session.get_adapter(prepared.url or "").send(
            prepared,
            stream=True,
            timeout=budget,
            verify=self.session.verify,
            cert=self.session.cert,
            proxies=self.session.proxies,
        )

    def _before_reply(
        self,
        exc: requests.exceptions.RequestException,
        guard: Guard,
        timeouts: Timeouts,
        deadline: float,
        context: dict[str, Any],
    ) -> errors.LLMError | errors.InvalidRequest:
        if guard.fired:
            return errors.DeadlineExceeded("total deadline exceeded before the reply was complete", **context)
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            return self._timeout(errors.ConnectTimeout, "while connecting", timeouts.connect, deadline, context)
        if isinstance(exc, requests.exceptions.ReadTimeout):
            return self._timeout(errors.ReadTimeout, "while waiting for the reply", timeouts.read, deadline, context)
        if _caused_by(exc, ssl.SSLCertVerificationError):
            return errors.CertificateError(
                f"the server's TLS certificate is not trusted ({_reason(exc)}); check base_url, or point "
                "REQUESTS_CA_BUNDLE at your CA bundle",
                **context,
            )
        if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema)):
            return errors.InvalidRequest(f"base_url cannot be used: {_reason(exc)}")
        return errors.ConnectionFailed(f"connection failed before a reply: {_reason(exc)}", **context)

    def _read_body(
        self, response: requests.Response, guard: Guard, timeouts: Timeouts, deadline: float, context: dict
    ) -> bytes:
        """The whole body, decoded, capped, within the deadline (the watchdog's job)."""
        context = {**context, "status_code": response.status_code}
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.max_response_bytes:
            raise too_large(self.max_response_bytes, **context)
        reader = BodyReader(
            lambda n: response.raw.read1(n, decode_content=False),
            response.headers.get("Content-Encoding", ""),
            self.max_response_bytes,
            context,
        )
        try:
            body = reader.read()
        except (TimeoutError, urllib3.exceptions.ReadTimeoutError) as exc:
            if guard.fired:
                raise errors.DeadlineExceeded("total deadline exceeded while the body was arriving", **context) from exc
            raise self._timeout(
                errors.ReadTimeout, "while the body was arriving", timeouts.read, deadline, context
            ) from exc
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            if guard.fired:
                raise errors.DeadlineExceeded("total deadline exceeded while the body was arriving", **context) from exc
            raise errors.ConnectionFailed(f"connection dropped mid-reply: {_reason(exc)}", **context) from exc
        if guard.fired:  # the cut socket ended the read (an endless chunked trailer, say)
            raise errors.DeadlineExceeded("total deadline exceeded before the reply was complete", **context)
        return body

    def _timeout(
        self, cls: type, phase: str, limit: float, deadline: float, context: dict[str, Any]
    ) -> errors.LLMError:
        """A timeout that happened at or past the deadline is the deadline's doing."""
        if self.clock() >= deadline - 1e-3:
            return errors.DeadlineExceeded(f"total deadline exceeded {phase}", **context)
        if cls is errors.ConnectTimeout:
            return cls(f"connect timeout: no connection within {limit:g}s", **context)
        return cls(f"read timeout: nothing received for {limit:g}s {phase}", **context)


def _caused_by(exc: BaseException, kind: type) -> bool:
    seen: BaseException | None = exc
    for _ in range(20):
        if seen is None:
            return False
        if isinstance(seen, kind) or any(isinstance(a, kind) for a in getattr(seen, "args", ())):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _reason(exc: BaseException) -> str:
    """The innermost cause's words: 'Connection refused', 'Connection reset by peer'..."""
    seen = exc
    while seen.__context__ is not None and seen.__context__ is not seen:
        seen = seen.__context__
    text = str(seen) or type(seen).__name__
    return text[:200]
