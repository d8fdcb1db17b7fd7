"""What the fake server says: the deterministic reply text, completion bodies,
provider-shaped error bodies, and the deliberately broken bodies some faults send.

Every function here builds bytes; none touches a socket (that is ``handler.py``).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

MODELS = ("fake-mini", "fake-large")
STATUS_TEXT = {
    400: ("invalid_request_error", "The request is malformed."),
    401: ("authentication_error", "Incorrect API key provided."),
    403: ("permission_error", "This key is not allowed to use this model."),
    404: ("not_found_error", "The model does not exist or you do not have access to it."),
    422: ("invalid_request_error", "The request could not be processed."),
    429: ("rate_limit_error", "Rate limit reached. Please try again later."),
    500: ("server_error", "The server had an error while processing your request."),
    501: ("server_error", "Not implemented: this server does not support the request."),
    502: ("server_error", "Bad gateway."),
    503: ("server_error", "The engine is currently overloaded, please try again later."),
    504: ("server_error", "Gateway timeout."),
    529: ("overloaded_error", "Overloaded."),
}
# OpenAI's answer when the account is out of credit: a 429 that no retry will fix.
INSUFFICIENT_QUOTA = {
    "error": {
        "message": "You exceeded your current quota, please check your plan and billing details. For more "
        "information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
        "type": "insufficient_quota",
        "param": None,
        "code": "insufficient_quota",
    }
}
INVALID_JSON = b'{"id": "chatcmpl-broken", "choices": [{"message": {"role": "assist'
HTML_PAGE = b"<html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>"
EMPTY = json.dumps({"id": "chatcmpl-empty", "object": "chat.completion"}).encode()

CHUNK = 64 * 1024  # huge_body's chunk size
MEGABYTE = 2**20  # huge_body:MB sends MB * MEGABYTE characters of content
DEEP_JSON_DEPTH = 100_000  # far past json.loads' recursion limit
USAGE_KINDS = ("big", "inf", "negative", "missing", "text")

WORDS = (  # noqa: SIM905 (a sentence reads better than a list of 30 strings)
    "reliable clients measure every call and retry only what is transient while "
    "timeouts keep waiting bounded caches save tokens logs explain incidents and "
    "budgets protect the provider from a storm of repeated requests"
).split()


class BadRequest(ValueError):
    """What is wrong with a request (the server answers 400); ``param`` names the field."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def reply_text(seed: int, body: Mapping[str, Any], salt: str) -> tuple[str, str]:
    """A deterministic reply for the seed and request (plus ``salt`` when sampled)."""
    messages = body.get("messages") or []
    digest = hashlib.sha256(json.dumps([seed, body.get("model"), messages, salt], sort_keys=True).encode()).digest()
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    systems = [m for m in messages if isinstance(m, dict) and m.get("role") == "system"]
    asked = str(users[-1].get("content", "")) if users else ""
    n_words = 6 + digest[0] % 18
    words = [WORDS[b % len(WORDS)] for b in digest[1 : 1 + n_words]]
    persona = f"[{str(systems[0].get('content', ''))[:40]}] " if systems else ""
    text = f"{persona}Re: {asked[:60]!r}: " + " ".join(words) + "."
    max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
    tokens = text.split()
    if isinstance(max_tokens, int) and 0 < max_tokens < len(tokens):
        return " ".join(tokens[:max_tokens]), "length"
    return text, "stop"


def completion(
    reply_id: str, model: str, created: int, text: str, finish: str, prompt_tokens: int, completion_tokens: int
) -> dict[str, Any]:
    """A ``chat.completion`` object as OpenAI sends it, with a real ``usage`` block."""
    return {
        "id": reply_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
        "system_fingerprint": "fp_week04_fake",
    }


def error_body(status: int, message: str | None = None, param: str | None = None) -> bytes:
    """``{"error": {"message", "type", "param", "code"}}``, as OpenAI shapes it."""
    kind, text = STATUS_TEXT.get(status, ("error", "Error."))
    return json.dumps({"error": {"message": message or text, "type": kind, "param": param, "code": status}}).encode()


def insufficient_quota_body() -> bytes:
    return json.dumps(INSUFFICIENT_QUOTA).encode()


def models_body(models: Sequence[str]) -> bytes:
    data = [{"id": m, "object": "model", "created": 0, "owned_by": "week04"} for m in models]
    return json.dumps({"object": "list", "data": data}).encode()


def redirect_body(url: str) -> bytes:
    return f"Temporary Redirect. Redirecting to {url}\n".encode()


def deep_json_body(status: int, key: str = "choices") -> bytes:
    """Valid JSON nested ``DEEP_JSON_DEPTH`` arrays deep: ``json.loads`` raises RecursionError.

    ``key`` names the payload of a 200 (``data`` for embeddings); an error's is ``error``."""
    key = key if status < 400 else "error"
    return b'{"%s": ' % key.encode() + b"[" * DEEP_JSON_DEPTH + b"]" * DEEP_JSON_DEPTH + b"}"


def bad_usage_body(payload: bytes, kind: str) -> bytes:
    """The completion ``payload`` with ``usage.prompt_tokens`` and ``usage.total_tokens``
    made nonsense (``big``, ``inf``, ``negative``, ``text``) or no ``usage`` at all (``missing``)."""
    reply = json.loads(payload)
    if kind == "missing":
        del reply["usage"]
        return json.dumps(reply).encode()
    bad: Any = {"big": 10**30, "inf": "@@inf@@", "negative": -5, "text": "many"}[kind]
    reply["usage"]["prompt_tokens"] = reply["usage"]["total_tokens"] = bad
    # json.dumps writes float("inf") as Infinity (not JSON); a provider's 1e400 is valid JSON
    return json.dumps(reply).replace('"@@inf@@"', "1e400").encode()


def huge_tokens(n_bytes: int) -> int:
    """What ``n_bytes`` of reply text costs: about four characters a token."""
    return math.ceil(n_bytes / 4)


def huge_completion(reply: dict[str, Any], n_bytes: int, chunk: int = CHUNK) -> Iterator[bytes]:
    """``reply`` as JSON whose content is ``n_bytes`` long, in ``chunk``-sized pieces.

    Built as it goes: memory stays about one chunk, whatever ``n_bytes`` is.
    """
    placeholder = "@@content@@"
    reply["choices"][0]["message"]["content"] = placeholder
    head, tail = json.dumps(reply).encode().split(placeholder.encode())
    pattern = (" ".join(WORDS) + " ").encode()
    block = (pattern * (chunk // len(pattern) + 1))[:chunk]

    def pieces() -> Iterator[bytes]:
        yield head
        left = n_bytes
        while left > 0:
            yield block[: min(left, chunk)]
            left -= chunk
        yield tail

    return reblock(pieces(), chunk)


def reblock(pieces: Iterable[bytes], size: int) -> Iterator[bytes]:
    buffer = bytearray()
    for piece in pieces:
        buffer += piece
        while len(buffer) >= size:
            yield bytes(buffer[:size])
            del buffer[:size]
    if buffer:
        yield bytes(buffer)
