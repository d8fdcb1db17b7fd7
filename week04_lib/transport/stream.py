"""One streamed attempt: opened until its first token, then read chunk by chunk, each
wait bounded.

Taught in notebook 01, section 1.7. A stream has three limits: ``first_token`` (the
wait for the first token since the request went; keep-alive comments do not count),
``idle`` (the longest gap between two chunks) and ``total`` (the whole call). One
watchdog guard holds the nearest of them and is moved after every chunk, so a server
that sends nothing, stalls half way, or trickles comments forever is cut on time.

Everything before the first token is an ordinary, retryable error (``open_stream``
raises it inside the retry loop); after it, the caller holds part of the answer, so a
failure is a ``StreamInterrupted`` carrying that part, never a shorter "complete" answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import requests
import urllib3

from .. import errors
from ..config import Timeouts
from .replies import Completion, Usage, completion_from_json, error_for_status, parse_completion, parse_json
from .sse import DONE, Assembler, sse_data
from .watchdog import Guard

if TYPE_CHECKING:
    from .http import Transport

__all__ = ["StreamReader", "open_stream"]

EVENT_STREAM = "text/event-stream"


def open_stream(
    transport: Transport, body: bytes, headers: dict[str, str], timeouts: Timeouts, deadline: float, context: dict
) -> StreamReader:
    """Send a streaming request and read up to its first token; raise what went wrong."""
    clock = transport.clock
    start = clock()
    remaining = deadline - start
    if remaining <= 0:
        raise errors.DeadlineExceeded("no time left for another attempt", **context)
    first_wait = remaining if timeouts.first_token is None else min(remaining, timeouts.first_token)
    budget = urllib3.Timeout(connect=min(timeouts.connect, remaining), read=min(timeouts.read, remaining))
    guard = transport._watchdog.guard(first_wait)
    try:
        with guard.watching():
            response = transport._send(body, headers, budget, "/chat/completions")
    except requests.exceptions.RequestException as exc:
        guard.disarm()
        if guard.fired and clock() < deadline - 1e-3:
            raise _no_first_token(timeouts, context) from exc
        raise transport._before_reply(exc, guard, timeouts, deadline, context) from exc
    reader = StreamReader(transport, response, guard, timeouts, deadline, start, context)
    try:
        reader.wait_for_first_token()
    except BaseException:
        reader.close()
        raise
    return reader


def _no_first_token(timeouts: Timeouts, context: dict) -> errors.FirstTokenTimeout:
    return errors.FirstTokenTimeout(f"first-token timeout: no token within {timeouts.first_token:g}s", **context)


class StreamReader:
    """An open stream: ``wait_for_first_token()``, then iterate for the text deltas;
    ``completion()`` once it has ended. ``close()`` ends it early (idempotent)."""

    def __init__(
        self,
        transport: Transport,
        response: requests.Response,
        guard: Guard,
        timeouts: Timeouts,
        deadline: float,
        start: float,
        context: dict[str, Any],
    ) -> None:
        self._transport, self._response, self._guard = transport, response, guard
        self.timeouts, self.deadline, self.start = timeouts, deadline, start
        self.context = {**context, "status_code": response.status_code}
        self.clock: Callable[[], float] = transport.clock
        self.assembler = Assembler()
        self.ttft_s: float | None = None  # seconds from the request to its first token
        self.done = False  # [DONE], or the connection ended after a finish reason
        self._whole: Completion | None = None  # a server that answered without streaming
        self._pending: list[str] = []
        self._first_phase = True
        self._received = 0  # bytes of event data so far
        self._events: Iterator[str] = iter(())

    # -- what an attempt's log record and the limiter read
    @property
    def status_code(self) -> int:
        return self._response.status_code

    @property
    def headers(self) -> dict[str, str]:
        return dict(self._response.headers)

    @property
    def usage(self) -> Usage:
        """Not known before the end: the limiter keeps its estimate until then."""
        return Usage(known=False)

    # -- opening
    def wait_for_first_token(self) -> None:
        response = self._response
        if not 200 <= response.status_code < 300:
            raw = self._transport._read_body(response, self._guard, self.timeouts, self.deadline, self.context)
            raise error_for_status(response.status_code, response.headers, raw, secrets=self._secrets, **self.context)
        if EVENT_STREAM not in response.headers.get("Content-Type", ""):
            return self._answered_whole()
        self._events = sse_data(
            lambda n: response.raw.read1(n, decode_content=False),
            response.headers.get("Content-Encoding", "").strip().lower(),
            self._transport.max_response_bytes,
        )
        while not self.assembler.started and not self.done:
            if delta := self._next_delta():
                self._pending.append(delta)
        self._first_token_in()

    def _answered_whole(self) -> None:
        """The server ignored ``stream`` and sent one completion: one delta, complete."""
        raw = self._transport._read_body(self._response, self._guard, self.timeouts, self.deadline, self.context)
        latency = self.clock() - self.start
        status, headers = self._response.status_code, self._response.headers
        self._whole = parse_completion(raw, status, headers, latency, secrets=self._secrets, **self.context)
        self._pending = [self._whole.text] if self._whole.text else []
        self.done = True
        self._first_token_in()

    def _first_token_in(self) -> None:
        self.ttft_s = self.clock() - self.start
        self._first_phase = False
        self._arm_idle()

    # -- reading
    def __iter__(self) -> Iterator[str]:
        try:
            while self._pending:
                yield self._pending.pop(0)
            while not self.done:
                delta = self._next_delta()
                self._arm_idle()
                if delta:
                    yield delta
        finally:
            self.close()

    def _arm_idle(self) -> None:
        """After a chunk: the next must come within ``idle`` (or the deadline, if none)."""
        if not self.done:
            left = self.deadline - self.clock()
            idle = self.timeouts.idle
            self._transport._watchdog.rearm(self._guard, left if idle is None else min(left, idle))

    def _next_delta(self) -> str:
        """The next event's new text ("" for a chunk without any), or raise."""
        try:
            data = next(self._events)
        except StopIteration:
            return self._ended()
        except (TimeoutError, urllib3.exceptions.ReadTimeoutError) as exc:
            raise self._timed_out(socket_read=not self._guard.fired) from exc
        except (urllib3.exceptions.HTTPError, requests.exceptions.RequestException, OSError) as exc:
            if self._guard.fired:
                raise self._timed_out() from exc
            raise self._broken(errors.ConnectionFailed, f"the connection dropped mid-stream: {exc}") from exc
        except ValueError as exc:
            raise self._broken(errors.InvalidResponse, f"the stream cannot be read: {exc}") from exc
        if data == DONE:
            self.done = True
            return ""
        self._received += len(data)
        if self._received > self._transport.max_response_bytes:  # what the caller keeps in memory is capped too
            limit = self._transport.max_response_bytes
            raise self._broken(errors.InvalidResponse, f"the stream is larger than max_response_bytes={limit}")
        try:
            chunk = parse_json(data.encode())
        except ValueError:
            raise self._broken(errors.InvalidResponse, f"a stream chunk is not valid JSON: {data[:80]!r}") from None
        if isinstance(chunk, dict) and chunk.get("error"):
            said = error_for_status(500, {}, data, secrets=self._secrets).message.removeprefix("HTTP 500: ")
            raise self._broken(errors.ServerError, f"the stream carried an error: {said}")
        try:
            return self.assembler.add(chunk)
        except ValueError as exc:
            raise self._broken(errors.InvalidResponse, f"a stream chunk has the wrong shape: {exc}") from None

    def _ended(self) -> str:
        """The connection ended: complete only if the answer said it was finished."""
        if self._guard.fired:
            raise self._timed_out()
        if self.assembler.finished:
            self.done = True
            return ""
        raise self._broken(errors.ConnectionFailed, "the stream ended before its finish_reason and [DONE]")

    # -- what went wrong
    def _timed_out(self, socket_read: bool = False) -> errors.LLMError:
        if self.clock() >= self.deadline - 1e-3:
            if self._first_phase:
                return errors.DeadlineExceeded("total deadline exceeded before the first token", **self.context)
            return self._interrupted(errors.StreamTimeout, "total deadline exceeded mid-stream")
        if socket_read:
            what = "waiting for the first token" if self._first_phase else "mid-stream"
            if self._first_phase:
                return errors.ReadTimeout(
                    f"read timeout: nothing received for {self.timeouts.read:g}s {what}", **self.context
                )
            return self._interrupted(errors.StreamTimeout, f"read timeout: nothing for {self.timeouts.read:g}s {what}")
        if self._first_phase:
            return _no_first_token(self.timeouts, self.context)
        return self._interrupted(errors.StreamTimeout, f"the stream stalled: no chunk for {self.timeouts.idle:g}s")

    def _broken(self, before: type[errors.LLMError], message: str) -> errors.LLMError:
        """``before`` the first token (retryable); a StreamInterrupted after it."""
        if self._first_phase:
            return before(message, **self.context)
        return self._interrupted(errors.StreamInterrupted, message)

    def _interrupted(self, cls: type[errors.StreamInterrupted], message: str) -> errors.StreamInterrupted:
        text = self.assembler.text
        return cls(f"{message}, after {len(text)} characters", partial_text=text, **self.context)

    @property
    def _secrets(self) -> list[str | None]:
        return [self._transport._api_key]

    # -- the end
    def completion(self) -> Completion:
        """The whole answer, once the stream has ended with its finish reason."""
        if self._whole is not None:
            return self._whole
        if not self.done:
            raise errors.StreamInterrupted(
                "the stream was closed before its end", partial_text=self.assembler.text, **self.context
            )
        latency = self.clock() - self.start
        headers = dict(self._response.headers)
        return completion_from_json(self.assembler.completion_json(), 200, headers, latency, **self.context)

    def close(self) -> None:
        """End the stream and its connection (idempotent). A stream's connection is
        never pooled: what is left unread on it is not worth reading."""
        self._guard.disarm()
        self._response.close()

    @property
    def closed(self) -> bool:
        return self._guard.done
