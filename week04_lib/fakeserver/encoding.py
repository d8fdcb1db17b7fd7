"""Content-Encoding for the fake server's bodies: ``gzip``, or ``deflate``, which in HTTP
means the zlib format (RFC 9110, section 8.4.1.2), not raw deflate.

The server compresses only when the request's ``Accept-Encoding`` lists the coding it was
given (``FakeLLMServer(compress="gzip")``); otherwise the body goes out as it is.
"""

from __future__ import annotations

import zlib

# zlib's wbits: 16 + 15 writes the gzip wrapper, 15 the zlib one
CODINGS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def check(coding: str | None) -> str | None:
    if coding is not None and coding not in CODINGS:
        raise ValueError(f"compress must be None, 'gzip' or 'deflate', got {coding!r}")
    return coding


def negotiate(coding: str | None, accept_encoding: str | None) -> str | None:
    """``coding`` when ``accept_encoding`` lists it (or ``*``) with a q above 0, else None."""
    if coding is None or not accept_encoding:
        return None
    names = {"gzip", "x-gzip"} if coding == "gzip" else {coding}
    star = 0.0
    for item in accept_encoding.split(","):
        name, *params = (part.strip() for part in item.split(";"))
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if name.lower() in names:
            return coding if q > 0 else None
        if name == "*":
            star = q
    return coding if star > 0 else None


def compressor(coding: str) -> zlib._Compress:
    """A streaming compressor: ``.compress(piece)`` as pieces come, then ``.flush()``."""
    return zlib.compressobj(6, zlib.DEFLATED, CODINGS[coding])


def compress(data: bytes, coding: str) -> bytes:
    c = compressor(coding)
    return c.compress(data) + c.flush()
