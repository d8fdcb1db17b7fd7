"""What goes on the wire for one request: the routes, the server's own checks (request
id, API key, rate limit), then the request's fault, down to the byte and its timing.

Three kinds of POST: a chat completion, a streamed one (``"stream": true``, server-sent
events) and embeddings. The server's state and decisions live in ``server.py``; the
bodies in ``replies.py``, ``streams.py`` and ``embeddings.py``; the writing in ``wire.py``.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..ratelimit import estimate_tokens
from . import embeddings, encoding, replies, streams
from .faults import Fault
from .replies import BadRequest
from .wire import JSON, Wire
from .wire import MAX_FILLER_HEADERS as MAX_FILLER_HEADERS  # bench/run.py reads them here
from .wire import TRAILER_EVERY_S as TRAILER_EVERY_S

BROKEN = {  # 200s whose body is not what a client expects
    "invalid_json": (JSON, replies.INVALID_JSON),
    "html": ("text/html", replies.HTML_PAGE),
    "empty": (JSON, replies.EMPTY),
}
BROKEN_EMBEDDINGS = {**BROKEN, "invalid_json": (JSON, embeddings.INVALID_JSON), "empty": (JSON, embeddings.EMPTY)}
SLOW = ("trickle", "header_trickle", "body_stall", "chunked_stall")  # the whole answer, sent slowly


@dataclass(frozen=True)
class Call:
    """One POST, checked: its kind and what the server's decisions need from it."""

    kind: str  # chat, stream or embeddings
    body: dict[str, Any]
    tokens: int  # what the server's own tpm is charged
    prompt: Any  # what paired draws go by: the messages, or the embeddings' input
    embedding: embeddings.EmbeddingRequest | None = None

    @classmethod
    def of(cls, route: str, body: Any) -> Call:
        """The call ``body`` makes on ``route``; :class:`BadRequest` says what is wrong."""
        if route.endswith("/embeddings"):
            request = embeddings.parse(body)
            return cls("embeddings", body, request.tokens, body["input"], request)
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            raise BadRequest("the body must be JSON with a 'messages' list")
        kind = "stream" if body.get("stream") is True else "chat"
        return cls(kind, body, estimate_tokens(body["messages"], body.get("max_tokens")), body["messages"])


class Handler(Wire):
    """Each request's route, checks and fault; ``Wire`` writes the bytes."""

    def _read_body(self) -> tuple[bytes, Any | None]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return raw, json.loads(raw) if raw else None
        except ValueError:
            return raw, None

    def _arrive(self) -> None:
        self.arrived = time.monotonic()
        self.coding = encoding.negotiate(self.server.fake.compress, self.headers.get("Accept-Encoding"))

    def _bad_request_id(self, body: Any | None) -> bool:
        """With ``strict_request_id``, answer 400 (empty body) to a non-UUID X-Request-ID."""
        value = self.headers.get("X-Request-ID")
        if not self.server.fake.strict_request_id or value is None:
            return False
        try:
            uuid.UUID(value)
            return False
        except ValueError:
            self.server.fake._record(self, body, "bad_request_id")
            self._send(400, b"", content_type=None)
            return True

    # -- routes
    def do_GET(self) -> None:
        self._arrive()
        fake = self.server.fake
        if self._bad_request_id(None):
            return
        fake._record(self, None, "ok")
        if self.path.rstrip("/").endswith("/models"):
            self._send(200, replies.models_body(list(dict.fromkeys([*fake.models, *embeddings.EMBEDDING_MODELS]))))
        else:
            self._send(404, replies.error_body(404, f"no route {self.path}"))

    def do_POST(self) -> None:
        self._arrive()
        fake = self.server.fake
        _, body = self._read_body()
        if self._bad_request_id(body):
            return
        route = self.path.rstrip("/")
        if not route.endswith(("/chat/completions", "/embeddings")):
            fake._record(self, body, "no_route")
            return self._send(404, replies.error_body(404, f"no route {self.path}"))
        if fake.api_key is not None and self.headers.get("Authorization") != f"Bearer {fake.api_key}":
            fake._record(self, body, "auth")
            return self._send(401, replies.error_body(401))
        try:
            call = Call.of(route, body)
        except BadRequest as exc:
            fake._record(self, body, "bad_body")
            return self._send(400, replies.error_body(400, str(exc), exc.param))
        with fake._lock:
            retry_after, limit_headers = fake._admit(call.tokens)
            if retry_after is None:
                spec, fault = fake._next_fault(call.body.get("model"), call.prompt)
        if retry_after is not None:
            fake._record(self, body, "rate_limited")
            headers = dict(limit_headers)
            headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
            headers["retry-after-ms"] = str(math.ceil(retry_after * 1000))
            return self._send(429, replies.error_body(429), headers=headers)
        fake._record(self, body, spec)
        try:
            self._apply(fault, call, limit_headers)
        except OSError:  # the client went away mid-answer, or stop() shut the socket
            self.close_connection = True

    def _apply(self, fault: Fault, call: Call, headers: dict[str, str]) -> None:
        fake = self.server.fake
        name = "ok" if fault.streams_only and call.kind != "stream" else fault.name
        if self._refuse(fault, name, call, headers):
            return
        if call.kind == "stream":
            return self._apply_stream(fault, name, call.body, headers)
        # the rest: the model does the work (and the provider bills it)
        delay = fault.seconds if name == "slow" else fake._sample_latency()
        if fake._stopping.wait(delay):
            return self._close_abruptly(reset=False)
        if name == "huge_body":
            return self._chunked(self._huge(call, round(fault.megabytes * replies.MEGABYTE)), headers)
        payload = self._answer(call)
        if name == "drop":
            return self._close_abruptly(reset=False)
        if name == "bad_usage":
            assert fault.usage is not None
            payload = replies.bad_usage_body(payload, fault.usage)
        if name in SLOW:
            return self._slowly(name, fault.seconds, payload, headers)
        self._send(200, payload, headers=headers)

    def _refuse(self, fault: Fault, name: str, call: Call, headers: dict[str, str]) -> bool:
        """Answer the faults that come before the model does any work; False for the others."""
        if name == "status":
            extra = dict(headers)
            for header, value in (
                ("Retry-After", fault.retry_after),
                ("retry-after-ms", fault.retry_after_ms),
                ("x-should-retry", fault.should_retry),
            ):
                if value is not None:
                    extra[header] = value
            self._send(fault.status, replies.error_body(fault.status), headers=extra)
        elif name == "insufficient_quota":
            self._send(429, replies.insufficient_quota_body(), headers=headers)
        elif name == "redirect":
            assert fault.url is not None
            location = {**headers, "Location": fault.url}
            self._send(307, replies.redirect_body(fault.url), "text/plain; charset=utf-8", location)
        elif name == "deep_json":
            key = "data" if call.kind == "embeddings" else "choices"
            self._send(fault.status, replies.deep_json_body(fault.status, key), headers=headers)
        elif name == "hang":
            self.server.fake._stopping.wait()
            self._close_abruptly(reset=False)
        elif name == "reset":
            self._close_abruptly(reset=True)
        elif name in BROKEN:
            content_type, page = (BROKEN_EMBEDDINGS if call.kind == "embeddings" else BROKEN)[name]
            self._send(200, page, content_type, headers)
        else:
            return False
        return True

    def _apply_stream(self, fault: Fault, name: str, body: dict[str, Any], headers: dict[str, str]) -> None:
        """The rest of a streamed answer: the events, paced, and the stream faults."""
        fake = self.server.fake
        self.coding = None  # providers never compress an event stream
        headers = {**headers, "Cache-Control": "no-cache"}
        if name == "stream_keepalive":
            return self._keepalive(headers)
        started = name == "stream_slow_start"  # the headers at once, then the silence
        if started:
            self._start_stream(headers)
        delay = fault.seconds if name in ("slow", "stream_slow_start") else fake._sample_latency()
        if fake._stopping.wait(delay):
            return self._close_abruptly(reset=False)
        usage = streams.include_usage(body)
        if name == "huge_body":
            n_bytes = round(fault.megabytes * replies.MEGABYTE)
            return self._stream(streams.huge_stream(fake._bill_huge(body, n_bytes), n_bytes, usage), headers)
        reply = json.loads(fake._answer(body, self.headers.get("Idempotency-Key")))
        if name == "drop":
            return self._close_abruptly(reset=False)
        chat = streams.chat_stream(reply, usage, fault.usage if name == "bad_usage" else None)
        if name in SLOW:
            return self._slowly(name, fault.seconds, chat.events(), headers)
        if name in ("stream_stall", "stream_cut"):
            return self._stream(chat.first(fault.count), headers, end=name.removeprefix("stream_"))
        events = chat.garbled(fault.count) if name == "stream_garbage" else chat.events()
        self._stream(events, None if started else headers)

    # -- the model's work (billed by the server)
    def _answer(self, call: Call) -> bytes:
        key = self.headers.get("Idempotency-Key")
        if call.embedding is not None:
            return self.server.fake._answer_embeddings(call.embedding, key)
        return self.server.fake._answer(call.body, key)

    def _huge(self, call: Call, n_bytes: int) -> Iterator[bytes]:
        """``huge_body``: a completion whose content is ``n_bytes`` long (never replayed),
        or the embeddings answer padded with spaces to ``n_bytes``."""
        if call.embedding is not None:
            return embeddings.padded(self._answer(call), n_bytes)
        return self.server.fake._answer_huge(call.body, n_bytes)
