"""What a streamed chat completion says: server-sent events, one ``chat.completion.chunk``
per word, as OpenAI sends them, and the broken events the stream faults send.

Every function here builds bytes; none touches a socket (that is ``wire.py``). The
events of one stream, in order::

    data: {... "delta": {"role": "assistant", "content": ""} ...}     the role chunk
    data: {... "delta": {"content": "Re: "} ...}                       one per word
    data: {... "delta": {}, "finish_reason": "stop"}                   the finish chunk
    data: {... "choices": [], "usage": {...}}                          if include_usage
    data: [DONE]

Taught in notebook 05 (streaming).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from . import replies

CONTENT_TYPE = "text/event-stream; charset=utf-8"
FINGERPRINT = "fp_week04_fake"
DONE = b"data: [DONE]\n\n"
KEEPALIVE = b": keep-alive\n\n"  # an SSE comment: clients must skip it
KEEPALIVE_EVERY_S = 0.1  # stream_keepalive's pace
# stream_garbage's malformed event: JSON cut short, as a proxy that mangles a stream sends it
GARBAGE = b'data: {"id": "chatcmpl-broken", "choices": [{"delta": {"content": "oo\n\n'
LAST_CHUNK = b"0\r\n\r\n"  # chunked encoding's end of body
_WORD = re.compile(r"\s*\S+\s*")  # a word with the spaces around it: the pieces add up to the text


def event(data: Mapping[str, Any]) -> bytes:
    return b"data: " + json.dumps(data).encode() + b"\n\n"


def frame(data: bytes) -> bytes:
    """``data`` as one HTTP chunk (chunked transfer coding)."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def framed(events: list[bytes]) -> bytes:
    """A whole chunked body: each event its own chunk, then the last chunk."""
    return b"".join(frame(e) for e in events) + LAST_CHUNK


def words(text: str) -> list[str]:
    """``text`` in word-sized pieces whose concatenation is exactly ``text``."""
    pieces = _WORD.findall(text)
    return pieces if "".join(pieces) == text else [text]  # all-space text: one piece


@dataclass(frozen=True)
class ChatStream:
    """One completion's events: the role chunk, the content chunks, then the tail
    (the finish chunk, the usage chunk if asked, ``[DONE]``)."""

    role: bytes
    content: list[bytes]
    tail: list[bytes]

    def events(self) -> list[bytes]:
        return [self.role, *self.content, *self.tail]

    def first(self, n: int) -> list[bytes]:
        """The role chunk and ``n`` content chunks (all of them if fewer): before a stall or cut."""
        return [self.role, *self.content[:n]]

    def garbled(self, n: int) -> list[bytes]:
        """The whole stream with the malformed event after ``n`` content chunks."""
        return [*self.first(n), GARBAGE, *self.content[n:], *self.tail]


class _Chunks:
    """Builds the ``chat.completion.chunk`` objects of one completion."""

    def __init__(self, reply: Mapping[str, Any], include_usage: bool) -> None:
        self.head = {
            "id": reply["id"],
            "object": "chat.completion.chunk",
            "created": reply["created"],
            "model": reply["model"],
            "system_fingerprint": FINGERPRINT,
        }
        self.include_usage = include_usage

    def delta(self, delta: Mapping[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": dict(delta), "logprobs": None, "finish_reason": finish}
        chunk: dict[str, Any] = {**self.head, "choices": [choice]}
        if self.include_usage:
            chunk["usage"] = None
        return event(chunk)

    def usage(self, usage: Mapping[str, Any]) -> bytes:
        return event({**self.head, "choices": [], "usage": dict(usage)})


def chat_stream(reply: Mapping[str, Any], include_usage: bool, bad_usage: str | None = None) -> ChatStream:
    """The events for a ``chat.completion`` ``reply``; ``bad_usage`` (a ``bad_usage`` kind)
    makes the usage chunk nonsense, or (``missing``) leaves it out."""
    chunks = _Chunks(reply, include_usage)
    choice = reply["choices"][0]
    text = choice["message"]["content"] or ""
    tail = [chunks.delta({}, choice["finish_reason"])]
    if include_usage and bad_usage != "missing":
        usage = chunks.usage(reply["usage"])
        if bad_usage:  # the usage chunk has "usage" at its top level, as a completion does
            usage = b"data: " + replies.bad_usage_body(usage[6:-2], bad_usage) + b"\n\n"
        tail.append(usage)
    tail.append(DONE)
    return ChatStream(
        role=chunks.delta({"role": "assistant", "content": ""}),
        content=[chunks.delta({"content": piece}) for piece in words(text)],
        tail=tail,
    )


def huge_stream(
    reply: Mapping[str, Any], n_bytes: int, include_usage: bool, chunk: int = replies.CHUNK
) -> Iterator[bytes]:
    """``huge_body`` streamed: content deltas of ``chunk`` characters, ``n_bytes`` in all,
    built as they go (memory stays about one chunk), then the tail."""
    chunks = _Chunks(reply, include_usage)
    pattern = " ".join(replies.WORDS) + " "
    block = (pattern * (chunk // len(pattern) + 1))[:chunk]
    yield chunks.delta({"role": "assistant", "content": ""})
    for start in range(0, n_bytes, chunk):
        yield chunks.delta({"content": block[: min(chunk, n_bytes - start)]})
    yield chunks.delta({}, "stop")
    if include_usage:
        yield chunks.usage(reply["usage"])
    yield DONE


def include_usage(body: Mapping[str, Any]) -> bool:
    """Whether the request asked for the usage chunk (``stream_options.include_usage``)."""
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True
