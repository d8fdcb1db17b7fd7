"""How the fake server's bytes go out: status line and headers, whole bodies, chunked
bodies, event streams, and the slow and endless answers (each ends when the server stops).

What to send, and when, is ``handler.py``'s; this module only writes it. A body is either
JSON (``bytes``: Content-Length, compressed when negotiated) or a stream's events
(``list[bytes]``: chunked, one chunk an event, never compressed, as providers send SSE).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable, Mapping
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

from . import encoding, streams

if TYPE_CHECKING:
    from .server import _HTTPServer

MAX_FILLER_HEADERS = 600  # header_trickle's filler lines (http.client gives up after 100)
TRAILER_EVERY_S = 0.1  # chunked_stall's pace
JSON = "application/json"
Body = bytes | list[bytes]  # JSON, or a stream's events


class Wire(BaseHTTPRequestHandler):
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

    # -- pieces
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
        content_type: str | None = JSON,
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

    def _write_chunk(self, data: bytes) -> None:
        if data:  # an empty chunk would end the body
            self.wfile.write(streams.frame(data))
            self.wfile.flush()

    def _whole(self, body: Body) -> tuple[str, bytes, int | None]:
        """(Content-Type, the body's bytes as they go on the wire, Content-Length or None)."""
        if isinstance(body, list):
            return streams.CONTENT_TYPE, streams.framed(body), None
        payload = self._encode(body)
        return JSON, payload, len(payload)

    # -- streams
    def _start_stream(self, headers: Mapping[str, str]) -> None:
        self.coding = None  # providers never compress an event stream
        self._start(200, streams.CONTENT_TYPE, headers, None)
        self.end_headers()

    def _stream(self, events: Iterable[bytes], headers: Mapping[str, str] | None, end: str = "done") -> None:
        """Each event its own chunk, ``chunk_interval_s`` apart, then (``end``) the last chunk
        (``done``), silence until the server stops (``stall``) or a FIN (``cut``).
        ``headers=None``: the headers went out already."""
        fake = self.server.fake
        if headers is not None:
            self._start_stream(headers)
        for i, event in enumerate(events):
            if i and fake._stopping.wait(fake.chunk_interval_s):
                return self._close_abruptly(reset=False)
            self._write_chunk(event)
        if end == "stall":
            fake._stopping.wait()
        if end != "done":
            return self._close_abruptly(reset=False)
        self.wfile.write(streams.LAST_CHUNK)
        self.wfile.flush()

    def _keepalive(self, headers: Mapping[str, str]) -> None:
        """Headers, then an SSE comment every ``KEEPALIVE_EVERY_S`` until the server stops."""
        self._start_stream(headers)
        while not self.server.fake._stopping.wait(streams.KEEPALIVE_EVERY_S):
            self._write_chunk(streams.KEEPALIVE)
        self._close_abruptly(reset=False)

    # -- the slow and endless answers
    def _slowly(self, name: str, seconds: float, body: Body, headers: Mapping[str, str]) -> None:
        """``body`` sent as the fault ``name`` (trickle, header_trickle, body_stall, chunked_stall) says."""
        if name == "chunked_stall":
            return self._chunked_stall(body, headers)
        write = {"trickle": self._trickle, "header_trickle": self._header_trickle, "body_stall": self._body_stall}
        write[name](body, seconds, headers)

    def _trickle(self, body: Body, every_s: float, headers: Mapping[str, str]) -> None:
        """Headers now, then the body one byte every ``every_s`` seconds."""
        content_type, payload, length = self._whole(body)
        self._start(200, content_type, headers, length)
        self.end_headers()
        self.wfile.flush()
        for i in range(len(payload)):
            if self.server.fake._stopping.wait(every_s):
                return self._close_abruptly(reset=False)
            self.wfile.write(payload[i : i + 1])
            self.wfile.flush()

    def _body_stall(self, body: Body, stall_s: float, headers: Mapping[str, str]) -> None:
        """Headers and the first half of the body now, then ``stall_s`` seconds of silence,
        then the rest: a per-read timeout longer than the stall never fires."""
        content_type, payload, length = self._whole(body)
        half = len(payload) // 2
        self._start(200, content_type, headers, length)
        self.end_headers()
        self.wfile.write(payload[:half])
        self.wfile.flush()
        if self.server.fake._stopping.wait(stall_s):
            return self._close_abruptly(reset=False)
        self.wfile.write(payload[half:])
        self.wfile.flush()

    def _header_trickle(self, body: Body, every_s: float, headers: Mapping[str, str]) -> None:
        """The status line and headers, then ``X-Filler-N: x`` lines, one every ``every_s``
        seconds, then the end of the headers and the body."""
        content_type, payload, length = self._whole(body)
        self._start(200, content_type, headers, length)
        self.flush_headers()
        for n in range(1, MAX_FILLER_HEADERS + 1):
            if self.server.fake._stopping.wait(every_s):
                return self._close_abruptly(reset=False)
            self.wfile.write(b"X-Filler-%d: x\r\n" % n)
        self.wfile.write(b"\r\n" + payload)

    def _chunked_stall(self, body: Body, headers: Mapping[str, str]) -> None:
        """The body as chunks (JSON: one; a stream: one an event), the last chunk, then a
        trailer that never ends."""
        content_type = streams.CONTENT_TYPE if isinstance(body, list) else JSON
        pieces = body if isinstance(body, list) else [self._encode(body)]
        self._start(200, content_type, headers, None)
        self.end_headers()
        self.wfile.write(b"".join(map(streams.frame, pieces)) + b"0\r\n")
        n = 0
        while not self.server.fake._stopping.wait(TRAILER_EVERY_S):
            n += 1
            self.wfile.write(b"X-Trailer-%d: x\r\n" % n)
        self._close_abruptly(reset=False)

    def _chunked(self, pieces: Iterable[bytes], headers: Mapping[str, str]) -> None:
        """A chunked JSON 200 of ``pieces`` (compressed as they go), as fast as the socket takes it."""
        self._start(200, JSON, headers, None)
        self.end_headers()
        squeeze = encoding.compressor(self.coding) if self.coding else None
        for piece in pieces:
            if self.server.fake._stopping.is_set():
                return self._close_abruptly(reset=False)
            self._write_chunk(squeeze.compress(piece) if squeeze else piece)
        if squeeze:
            self._write_chunk(squeeze.flush())
        self.wfile.write(streams.LAST_CHUNK)
