"""What an embeddings reply means: one vector per input, in input order, checked.

Taught in notebook 04 (the embedding cache). The reply is ``{"data": [{"index": i,
"embedding": [...]}, ...], "model", "usage": {"prompt_tokens"}}``; nothing in it is
trusted: a missing or extra vector, a number that is not finite, or vectors of
different lengths are an ``InvalidResponse``, never a silently shifted result.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import errors
from .replies import Usage, parse_json

__all__ = ["EmbeddingReply", "parse_embeddings"]


@dataclass(frozen=True)
class EmbeddingReply:
    """One successful embeddings request: ``vectors[i]`` belongs to ``input[i]``."""

    vectors: list[list[float]]
    model: str
    usage: Usage
    status_code: int
    latency_s: float
    headers: dict[str, str] = field(repr=False)


def parse_embeddings(
    raw: bytes,
    status: int,
    headers: Mapping[str, str],
    latency_s: float,
    *,
    count: int,
    secrets: Sequence[str | None] = (),
    **context: Any,
) -> EmbeddingReply:
    """Check a 200 body holding ``count`` embeddings."""
    context = {**context, "status_code": status}
    try:
        data = parse_json(raw)
    except ValueError as exc:
        start = errors.redact(raw[:200].decode("utf-8", "replace"), secrets)[:80]
        message = f"the embeddings reply is not valid JSON ({exc}; starts {start!r})"
        raise errors.InvalidResponse(message, **context) from None
    items = data.get("data") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise errors.InvalidResponse("the embeddings reply has no 'data' list", **context)
    vectors = _in_order(items, count, context)
    return EmbeddingReply(
        vectors=vectors,
        model=str(data.get("model") or context.get("model") or ""),
        usage=Usage.from_json(data.get("usage")),
        status_code=status,
        latency_s=latency_s,
        headers=dict(headers),
    )


def _in_order(items: list[Any], count: int, context: dict[str, Any]) -> list[list[float]]:
    found: dict[int, list[float]] = {}
    for position, item in enumerate(items):
        index = item.get("index", position) if isinstance(item, dict) else None
        vector = item.get("embedding") if isinstance(item, dict) else None
        if not isinstance(index, int) or not 0 <= index < count or index in found:
            raise errors.InvalidResponse(f"the embeddings reply has a bad or repeated index {index!r}", **context)
        if not isinstance(vector, list) or not vector or not all(_finite(x) for x in vector):
            raise errors.InvalidResponse(f"embedding {index} is not a list of finite numbers", **context)
        found[index] = [float(x) for x in vector]
    if len(found) != count:
        raise errors.InvalidResponse(f"the embeddings reply has {len(found)} vectors for {count} inputs", **context)
    if len({len(v) for v in found.values()}) > 1:
        raise errors.InvalidResponse("the embeddings reply mixes vectors of different lengths", **context)
    return [found[i] for i in range(count)]


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
