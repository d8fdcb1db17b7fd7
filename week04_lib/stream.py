"""``ChatStream``: a streamed answer, handed over once its first token is in.

Taught in notebook 01, section 1.7, and notebook 05. ``LLMClient.stream`` runs the
whole chain (cache, breaker, retries, fallback models, limiter) up to the first token;
from then on the caller holds part of the answer, so nothing is retried or swapped:

    with client.stream(messages) as stream:
        for delta in stream:
            print(delta, end="")
    stream.result          # a ChatResult, once the stream has ended complete

A failure mid-stream raises ``StreamInterrupted`` (``partial_text`` is what came).
Only a complete stream is cached; a cache hit is replayed as a stream. The limiter's
permit is held until the stream ends, and the call's one ``final`` log record (with
``ttft_s``, the time to first token) is written then.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from . import errors
from .logs import records_of
from .transport import StreamReader

if TYPE_CHECKING:
    from .client import ChatResult, LLMClient, _Call

__all__ = ["ChatStream"]

_PIECES = re.compile(r"\s*\S+\s*|\s+")  # a replayed answer goes out a word at a time


class ChatStream:
    """Iterate for text deltas (``str``); ``result`` once exhausted; ``close()`` (or
    leaving the ``with`` block) ends it early and closes the connection."""

    def __init__(self, client: LLMClient, call: _Call, first: ChatResult | StreamReader) -> None:
        self._client, self._call = client, call
        self._reader = first if isinstance(first, StreamReader) else None
        self._replay = None if isinstance(first, StreamReader) else first
        self.ttft_s: float | None = self._reader.ttft_s if self._reader else client.clock() - call.started
        self.request_id = call.request_id
        self._result: ChatResult | None = None
        self._ended = False
        self._lock = threading.Lock()
        self._iterator = self._deltas()

    def __repr__(self) -> str:
        state = "complete" if self._result else "ended" if self._ended else "open"
        return f"ChatStream(request_id={self.request_id!r}, model={self._call.model!r}, {state})"

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        return next(self._iterator)

    def __enter__(self) -> ChatStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def result(self) -> ChatResult:
        """The whole answer; only once the stream has ended complete."""
        if self._result is None:
            if self._ended:
                raise errors.InvalidRequest(
                    "stream.result: the stream was interrupted or closed, so there is no complete answer "
                    "(the StreamInterrupted it raised carries partial_text)"
                )
            raise errors.InvalidRequest("stream.result: the stream has not been read to its end; iterate it first")
        return self._result

    @property
    def text(self) -> str:
        """The text so far (all of it once complete)."""
        if self._result is not None:
            return self._result.text
        return self._replay.text if self._replay else self._reader.assembler.text if self._reader else ""

    def close(self) -> None:
        """End the stream now; an unfinished one is logged as closed by the caller."""
        self._iterator.close()
        if not self._ended:  # never iterated: the generator's own cleanup did not run
            if self._reader is not None:
                self._reader.close()
            self._finish(error=self._closed_early())

    def __del__(self) -> None:  # forgotten unread: still free the connection and the permit
        if not getattr(self, "_ended", True):
            with contextlib.suppress(Exception):
                self.close()

    # -- the work
    def _deltas(self) -> Iterator[str]:
        try:
            if self._replay is not None:
                yield from _PIECES.findall(self._replay.text)
                return self._finish(result=self._replay)
            assert self._reader is not None
            yield from self._reader
            self._finish(result=self._client._result(self._call, self._reader.completion()))
        except errors.LLMError as exc:
            self._finish(error=exc)
            raise
        except GeneratorExit:  # the caller stopped early
            self._finish(error=self._closed_early())
            raise
        except Exception as exc:  # a bug: typed, logged, the permit released
            failure = errors.LLMError(f"unexpected {type(exc).__name__} inside the stream: {exc}")
            self._finish(error=failure)
            raise failure from exc
        finally:
            if self._reader is not None:
                self._reader.close()

    def _closed_early(self) -> errors.StreamInterrupted:
        return errors.StreamInterrupted(
            "the caller closed the stream before its end",
            partial_text=self.text,
            request_id=self.request_id,
            model=self._call.model,
        )

    def _finish(self, *, result: ChatResult | None = None, error: BaseException | None = None) -> None:
        """Once: store a complete answer, settle the permit, write the final record."""
        with self._lock:
            if self._ended:
                return
            self._ended = True
        client, call = self._client, self._call
        permit, call.held = call.held, None
        if permit is not None:
            if result is not None and result.usage.known:
                permit.reconcile(result.usage.total_tokens)
            permit.release()
        if result is not None:
            self._result = result
            if not result.cached and not result.stale:
                client._store(call, result)
        with records_of(client):
            client._log_final(call, result=result, error=error, ttft_s=self.ttft_s)
