"""One HTTP attempt against an OpenAI-compatible endpoint, every outcome typed.

Taught in notebook 01, sections 1.3 to 1.5. ``http`` makes the attempt, ``watchdog``
holds its total deadline over the whole exchange, ``body`` reads (decoded, capped), ``sse`` and
``stream`` read a streamed answer, ``embeddings`` checks an embeddings reply,
``replies`` says what the reply means. The old names stay importable from here.
"""

from ..config import check_base_url, check_header_value
from .body import ACCEPT_ENCODING, DEFAULT_MAX_RESPONSE_BYTES
from .embeddings import EmbeddingReply, parse_embeddings
from .http import Transport, encode_json
from .replies import (
    MAX_RETRY_AFTER_S,
    Completion,
    Usage,
    completion_from_json,
    error_for_status,
    parse_completion,
    parse_retry_after,
)
from .stream import StreamReader

__all__ = [
    "ACCEPT_ENCODING",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "MAX_RETRY_AFTER_S",
    "Completion",
    "EmbeddingReply",
    "StreamReader",
    "Transport",
    "Usage",
    "check_base_url",
    "check_header_value",
    "completion_from_json",
    "encode_json",
    "error_for_status",
    "parse_completion",
    "parse_embeddings",
    "parse_retry_after",
]
