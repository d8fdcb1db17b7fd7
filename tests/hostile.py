"""Small hand-written servers for wire faults our own fake server does not produce:
each connection is handed to a function that writes whatever bytes it likes; and a
bare-socket client (``raw_post``, ``read_head``) to read exactly what a server sends."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
from collections.abc import Callable

Handler = Callable[[socket.socket, threading.Event], None]


def read_request(conn: socket.socket) -> bytes:
    """The request's head and body (by Content-Length), or what came before EOF."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")),
        0,
    )
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def drip(conn: socket.socket, pieces: list[bytes], every_s: float, stop: threading.Event) -> None:
    """Send ``pieces`` one every ``every_s`` seconds, until done or told to stop."""
    for piece in pieces:
        if stop.wait(every_s):
            return
        conn.sendall(piece)


class RawServer:
    """``with RawServer(handler) as srv:``, then ``srv.url`` is an OpenAI-style base URL.
    The handler gets each accepted connection after its request has been read."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None) -> None:
        self.handler, self.tls = handler, tls
        self.requests: list[bytes] = []
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self._listener.getsockname()[1]}/v1"

    def __enter__(self) -> RawServer:
        self._accepting.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._accepting.join()
        for thread in self._threads:
            thread.join()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):  # ssl.SSLError is an OSError too
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            self.requests.append(read_request(conn))
            self.handler(conn, self._stop)


def raw_post(srv, body=None, path="/v1/chat/completions", headers=(), timeout=2.0):
    """A POST over a bare socket (Connection: close); returns the socket's file to read."""
    data = json.dumps(body or {"model": "fake-mini", "messages": [{"role": "user", "content": "hello"}]}).encode()
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=timeout)
    lines = [
        f"POST {path} HTTP/1.1",
        "Host: 127.0.0.1",
        "Content-Type: application/json",
        f"Content-Length: {len(data)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in headers),
    ]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + data)
    wire = sock.makefile("rb")
    sock.close()  # the file keeps the connection open until it is closed
    return wire


def read_head(wire):
    """The status line and the header lines, as sent."""
    status = wire.readline()
    lines = []
    while (line := wire.readline()) not in (b"\r\n", b""):
        lines.append(line.decode().rstrip("\r\n"))
    return status, dict(line.split(": ", 1) for line in lines)
