"""Reading a response body: whatever has arrived, decoded, and never more than a cap.

Taught in notebook 01, section 1.4. ``raw.read1`` returns the bytes as sent, so a
gzip or deflate body (which the client asks for, as every HTTP client does) is
decoded here, chunk by chunk, with the decoded size capped: a 1 MB "zip bomb" may
not become a gigabyte in memory. The deadline is not this module's business: the
transport's watchdog closes the connection when it passes, which ends any read.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

from .. import errors
from ..config import DEFAULT_MAX_RESPONSE_BYTES

__all__ = ["ACCEPT_ENCODING", "DEFAULT_MAX_RESPONSE_BYTES", "BodyReader", "too_large"]

ACCEPT_ENCODING = "gzip, deflate"  # what we advertise is exactly what we can decode
CHUNK = 65536


def too_large(limit: int, **context: object) -> errors.InvalidResponse:
    return errors.InvalidResponse(
        f"the response is larger than max_response_bytes={limit} (raise it in ClientConfig if this is expected)",
        **context,  # type: ignore[arg-type]
    )


class _Decoder:
    """gzip or zlib (``wbits=47`` detects which); a "deflate" body without the zlib
    header (some servers send raw deflate) is detected from its first byte."""

    def __init__(self, coding: str) -> None:
        self.coding = coding
        self._zlib: zlib._Decompress | None = None

    def decode(self, data: bytes, room: int) -> tuple[bytes, bool]:
        """Up to ``room`` decoded bytes of ``data``; True if more would have come."""
        if self._zlib is None:
            raw_deflate = self.coding == "deflate" and data and (data[0] & 0x0F) != 8
            self._zlib = zlib.decompressobj(-15 if raw_deflate else 47)
        out = self._zlib.decompress(data, room + 1)
        return out, len(out) > room or bool(self._zlib.unconsumed_tail)


class BodyReader:
    """Reads one response body with ``read1`` into bytes, decoded and capped."""

    def __init__(self, read1: Callable[[int], bytes], content_encoding: str, limit: int, context: dict) -> None:
        self.read1, self.limit, self.context = read1, limit, context
        coding = content_encoding.strip().lower()
        if coding in ("gzip", "x-gzip", "deflate"):
            self.decoder: _Decoder | None = _Decoder(coding)
        elif coding in ("", "identity"):
            self.decoder = None
        else:
            raise errors.InvalidResponse(
                f"the body is {coding!r}-encoded, which this client did not ask for (it accepts {ACCEPT_ENCODING})",
                **context,
            )

    def read(self) -> bytes:
        chunks: list[bytes] = []
        size = received = 0
        while chunk := self.read1(CHUNK):
            received += len(chunk)
            if received > self.limit:  # bounds what arrives too: endless empty gzip members
                raise too_large(self.limit, **self.context)
            if self.decoder is not None:
                try:
                    chunk, over = self.decoder.decode(chunk, self.limit - size)
                except zlib.error as exc:
                    raise errors.InvalidResponse(
                        f"the {self.decoder.coding} body does not decode: {exc}", **self.context
                    ) from None
                if over:
                    raise too_large(self.limit, **self.context)
            size += len(chunk)
            if size > self.limit:
                raise too_large(self.limit, **self.context)
            chunks.append(chunk)
        return b"".join(chunks)
