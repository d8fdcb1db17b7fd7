"""What ``POST /v1/embeddings`` says: the request's checks, deterministic unit vectors,
and the ``{"object": "list", "data": [...]}`` reply (floats, or base64 as the official
``openai`` package asks for by default).

Every function here builds values or bytes; none touches a socket (that is ``handler.py``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from . import replies
from .replies import BadRequest

EMBEDDING_MODELS = ("fake-embed",)
DEFAULT_EMBEDDING_DIMENSIONS = 64
MAX_EMBEDDING_DIMENSIONS = 4096
MAX_EMBEDDING_INPUTS = 2048  # OpenAI's limit on texts per request
ENCODING_FORMATS = ("float", "base64")
# broken bodies of the embeddings' shape (invalid_json, empty)
INVALID_JSON = b'{"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.0123, -0.04'
EMPTY = json.dumps({"object": "list", "model": EMBEDDING_MODELS[0]}).encode()


@dataclass(frozen=True)
class EmbeddingRequest:
    model: str
    texts: list[str]
    dimensions: int
    encoding_format: str

    @property
    def tokens(self) -> int:
        return input_tokens(self.texts)


def parse(body: Any) -> EmbeddingRequest:
    """The request in ``body``; :class:`~.replies.BadRequest` says what to fix."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be JSON with 'model' and 'input'", None)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest(f"'model' is required: a model name such as {EMBEDDING_MODELS[0]!r}", "model")
    return EmbeddingRequest(model, _texts(body.get("input")), _dimensions(body), _encoding_format(body))


def _texts(given: Any) -> list[str]:
    texts = [given] if isinstance(given, str) else given
    if not isinstance(texts, list) or not texts:
        raise BadRequest("'input' must be a non-empty string or a non-empty list of strings", "input")
    if len(texts) > MAX_EMBEDDING_INPUTS:
        raise BadRequest(
            f"'input' has {len(texts)} items; at most {MAX_EMBEDDING_INPUTS} per request: send them in batches",
            "input",
        )
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise BadRequest(
                f"'input[{i}]' is not a string: token arrays are not supported by this server; send text", "input"
            )
        if not text:
            raise BadRequest(f"'input[{i}]' is an empty string; every input must have text", "input")
    return texts


def _dimensions(body: Mapping[str, Any]) -> int:
    dimensions = body.get("dimensions")
    if dimensions is None:
        return DEFAULT_EMBEDDING_DIMENSIONS
    whole = isinstance(dimensions, int) and not isinstance(dimensions, bool)
    if not whole or not 1 <= dimensions <= MAX_EMBEDDING_DIMENSIONS:
        raise BadRequest(
            f"'dimensions' must be a whole number from 1 to {MAX_EMBEDDING_DIMENSIONS}, got {dimensions!r}",
            "dimensions",
        )
    return dimensions


def _encoding_format(body: Mapping[str, Any]) -> str:
    encoding_format = body.get("encoding_format")
    if encoding_format is None:
        return "float"
    if encoding_format not in ENCODING_FORMATS:
        raise BadRequest(
            f"'encoding_format' must be one of {', '.join(ENCODING_FORMATS)}, got {encoding_format!r}",
            "encoding_format",
        )
    return str(encoding_format)


def input_tokens(texts: list[str]) -> int:
    """What the texts cost: about four characters a token, at least one a text."""
    return sum(max(1, math.ceil(len(text) / 4)) for text in texts)


def vector(model: str, text: str, dimensions: int) -> list[float]:
    """A unit vector that depends only on ``model`` and ``text`` (and its length on
    ``dimensions``): fewer dimensions give the longer vector's start, renormalized, as
    OpenAI's shortened embeddings do. Different texts point in unrelated directions."""
    # SHAKE-256 reads out as many bytes as asked, and a longer read starts with the shorter one
    raw = hashlib.shake_256(json.dumps([model, text]).encode()).digest(4 * dimensions)
    values = [(u + 0.5) / 2**31 - 1 for u in struct.unpack(f"<{dimensions}I", raw)]  # in (-1, 1)
    norm = math.sqrt(math.fsum(v * v for v in values))
    return [v / norm for v in values]


def encode(values: list[float], encoding_format: str) -> list[float] | str:
    """``float``: the list as is; ``base64``: little-endian float32, base64-encoded."""
    if encoding_format == "base64":
        return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
    return values


def reply(request: EmbeddingRequest) -> dict[str, Any]:
    """The embeddings reply, with a real ``usage`` block."""
    data = [
        {
            "object": "embedding",
            "index": i,
            "embedding": encode(vector(request.model, text, request.dimensions), request.encoding_format),
        }
        for i, text in enumerate(request.texts)
    ]
    tokens = request.tokens
    return {
        "object": "list",
        "data": data,
        "model": request.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def padded(payload: bytes, n_bytes: int, chunk: int = replies.CHUNK) -> Iterator[bytes]:
    """``huge_body`` for embeddings: the JSON ``payload`` padded with spaces before its
    closing brace to ``n_bytes`` in all (still valid JSON, the same vectors), in
    ``chunk``-sized pieces built as they go."""
    head, tail = payload[:-1], payload[-1:]
    spaces = b" " * chunk

    def pieces() -> Iterator[bytes]:
        yield head
        left = n_bytes - len(payload)
        while left > 0:
            yield spaces[: min(left, chunk)]
            left -= chunk
        yield tail

    return replies.reblock(pieces(), chunk)
