"""What goes on the wire for one request: the routes, the server's own checks (request
id, API key, rate limit), then the request's fault, down to the byte and its timing.

The server's state and decisions live in ``server.py``; the bodies in ``replies.py``.
"""

from __future__ import annotations

import json
import math
import socket
import struct
import time
import uuid
from collections.abc import Iterable, Mapping
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

from ..ratelimit import estimate_tokens
from . import encoding, replies
from .faults import Fault

if TYPE_CHECKING:
    from .server import _HTTPServer

MAX_FILLER_HEADERS = 600  # header_trickle's filler lines (http.client gives up after 100)
TRAILER_EVERY_S = 0.1  # chunked_stall's pace
BROKEN = {  # 200s whose body is not what a client expects
    "invalid_json": ("application/json", replies.INVALID_JSON),
    "html": ("text/html", replies.HTML_PAGE),
    "empty": ("application/json", replies.EMPTY),
}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer
    server_version = "week04-fake/1.0"
    coding: str | None = None  # this request's Content-Encoding, None for identity

    def log_message(self, format: str, *args: Any) -> None:  # keep stderr clean
        pass

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without this, Nagle's algorithm
        # and delayed ACKs add 40 ms to every reply.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # -- helpers
    def _start(
        self, status: int, content_type: str | None, headers: Mapping[str, str] | None, length: int | None
    ) -> None:
        """Queue the status line and headers; ``length=None`` means chunked."""
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        if length is None:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(length))
        if self.coding and length != 0:
            self.send_header("Content-Encoding", self.coding)
        if self.server.fake.compress:
            self.send_header("Vary", "Accept-Encoding")
        for name, value in (headers or {}).items():
            self.send_header(name, value)

    def _encode(self, payload: bytes) -> bytes:
        return encoding.compress(payload, self.coding) if self.coding and payload else payload

    def _send(
        self,
        status: int,
        payload: bytes,
        content_type: str | None = "application/json",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        payload = self._encode(payload)
        self._start(status, content_type, headers, len(payload))
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()

    def _close_abruptly(self, reset: bool) -> None:
        """End the connection with no answer: a RST if ``reset``, else a plain FIN."""
        self.close_connection = True
        if reset:  # linger 0: close() sends RST, the client sees "connection reset by peer"
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        else:
            self.connection.shutdown(socket.SHUT_RDWR)

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
            self._send(200, replies.models_body(fake.models))
        else:
            self._send(404, replies.error_body(404, f"no route {self.path}"))

    def do_POST(self) -> None:
        self._arrive()
        fake = self.server.fake
        _, body = self._read_body()
        if self._bad_request_id(body):
            return
        if not self.path.rstrip("/").endswith("/chat/completions"):
            fake._record(self, body, "no_route")
            return self._send(404, replies.error_body(404, f"no route {self.path}"))
        if fake.api_key is not None and self.headers.get("Authorization") != f"Bearer {fake.api_key}":
            fake._record(self, body, "auth")
            return self._send(401, replies.error_body(401))
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            fake._record(self, body, "bad_body")
            return self._send(400, replies.error_body(400, "the body must be JSON with a 'messages' list"))
        with fake._lock:
            tokens = estimate_tokens(body["messages"], body.get("max_tokens"))
            retry_after, limit_headers = fake._admit(tokens)
            if retry_after is None:
                spec, fault = fake._next_fault(body.get("model"), body["messages"])
        if retry_after is not None:
            fake._record(self, body, "rate_limited")
            headers = dict(limit_headers)
            headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
            headers["retry-after-ms"] = str(math.ceil(retry_after * 1000))
            return self._send(429, replies.error_body(429), headers=headers)
        fake._record(self, body, spec)
        try:
            self._apply(fault, body, limit_headers)
        except OSError:  # the client went away mid-answer, or stop() shut the socket
            self.close_connection = True

    def _apply(self, fault: Fault, body: dict[str, Any], headers: dict[str, str]) -> None:
        fake = self.server.fake
        name = fault.name
        if name == "status":
            extra = dict(headers)
            for header, value in (
                ("Retry-After", fault.retry_after),
                ("retry-after-ms", fault.retry_after_ms),
                ("x-should-retry", fault.should_retry),
            ):
                if value is not None:
                    extra[header] = value
            return self._send(fault.status, replies.error_body(fault.status), headers=extra)
        if name == "insufficient_quota":
            return self._send(429, replies.insufficient_quota_body(), headers=headers)
        if name == "redirect":
            assert fault.url is not None
            location = {**headers, "Location": fault.url}
            return self._send(307, replies.redirect_body(fault.url), "text/plain; charset=utf-8", location)
        if name == "deep_json":
            return self._send(fault.status, replies.deep_json_body(fault.status), headers=headers)
        if name == "hang":
            fake._stopping.wait()
            return self._close_abruptly(reset=False)
        if name == "reset":
            return self._close_abruptly(reset=True)
        if name in BROKEN:
            content_type, page = BROKEN[name]
            return self._send(200, page, content_type, headers)
        # the rest: the model does the work (and the provider bills it)
        delay = fault.seconds if name == "slow" else fake._sample_latency()
        if fake._stopping.wait(delay):
            return self._close_abruptly(reset=False)
        if name == "huge_body":
            return self._chunked(fake._answer_huge(body, round(fault.megabytes * replies.MEGABYTE)), headers)
        payload = fake._answer(body, self.headers.get("Idempotency-Key"))
        if name == "drop":
            return self._close_abruptly(reset=False)
        if name == "bad_usage":
            assert fault.usage is not None
            payload = replies.bad_usage_body(payload, fault.usage)
        if name == "trickle":
            return self._trickle(payload, fault.seconds, headers)
        if name == "header_trickle":
            return self._header_trickle(payload, fault.seconds, headers)
        if name == "body_stall":
            return self._body_stall(payload, fault.seconds, headers)
        if name == "chunked_stall":
            return self._chunked_stall(payload, headers)
        self._send(200, payload, headers=headers)

    # -- the slow and endless answers (each ends when the server stops)
    def _trickle(self, payload: bytes, every_s: float, headers: Mapping[str, str]) -> None:
        """Headers now, then the body one byte every ``every_s`` seconds."""
        payload = self._encode(payload)
        self._start(200, "application/json", headers, len(payload))
        self.end_headers()
        self.wfile.flush()
        for i in range(len(payload)):
            if self.server.fake._stopping.wait(every_s):
                return self._close_abruptly(reset=False)
            self.wfile.write(payload[i : i + 1])
            self.wfile.flush()

    def _body_stall(self, payload: bytes, stall_s: float, headers: Mapping[str, str]) -> None:
        """Headers and the first half of the body now, then ``stall_s`` seconds of silence,
        then the rest: a per-read timeout longer than the stall never fires."""
        payload = self._encode(payload)
        half = len(payload) // 2
        self._start(200, "application/json", headers, len(payload))
        self.end_headers()
        self.wfile.write(payload[:half])
        self.wfile.flush()
        if self.server.fake._stopping.wait(stall_s):
            return self._close_abruptly(reset=False)
        self.wfile.write(payload[half:])
        self.wfile.flush()

    def _header_trickle(self, payload: bytes, every_s: float, headers: Mapping[str, str]) -> None:
        """The status line and headers, then ``X-Filler-N: x`` lines, one every ``every_s``
        seconds, then the end of the headers and the body."""
        payload = self._encode(payload)
        self._start(200, "application/json", headers, len(payload))
        self.flush_headers()
        for n in range(1, MAX_FILLER_HEADERS + 1):
            if self.server.fake._stopping.wait(every_s):
                return self._close_abruptly(reset=False)
            self.wfile.write(b"X-Filler-%d: x\r\n" % n)
        self.wfile.write(b"\r\n" + payload)

    def _chunked_stall(self, payload: bytes, headers: Mapping[str, str]) -> None:
        """The body as one chunk, the last chunk, then a trailer that never ends."""
        payload = self._encode(payload)
        self._start(200, "application/json", headers, None)
        self.end_headers()
        self.wfile.write(b"%x\r\n%s\r\n0\r\n" % (len(payload), payload))
        n = 0
        while not self.server.fake._stopping.wait(TRAILER_EVERY_S):
            n += 1
            self.wfile.write(b"X-Trailer-%d: x\r\n" % n)
        self._close_abruptly(reset=False)

    def _chunked(self, pieces: Iterable[bytes], headers: Mapping[str, str]) -> None:
        """A chunked 200 of ``pieces`` (compressed as they go), as fast as the socket takes it."""
        self._start(200, "application/json", headers, None)
        self.end_headers()
        squeeze = encoding.compressor(self.coding) if self.coding else None
        for piece in pieces:
            if self.server.fake._stopping.is_set():
                return self._close_abruptly(reset=False)
            self._write_chunk(squeeze.compress(piece) if squeeze else piece)
        if squeeze:
            self._write_chunk(squeeze.flush())
        self.wfile.write(b"0\r\n\r\n")

    def _write_chunk(self, data: bytes) -> None:
        if data:  # an empty chunk would end the body
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
