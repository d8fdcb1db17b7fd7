"""What one call may ask for: its messages and parameters (checked before anything is
sent), and the per-call options that are the client's, never the provider's.

Taught in notebook 05. ``chat(messages, timeout=5, max_attempts=2, cache=False,
extra_headers={...}, **params)``: the options change how this one call is made; the
params go to the provider in the request body.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import errors
from .config import FIELD_RULES, ClientConfig, Timeouts
from .transport import encode_json

__all__ = ["CallOptions", "call_options", "check_request_id", "validate"]

ROLES = ("system", "developer", "user", "assistant", "tool", "function")
RANGES = {"temperature": (0, 2), "top_p": (0, 1), "presence_penalty": (-2, 2), "frequency_penalty": (-2, 2)}
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP header name (RFC 9110 token)
_VALUE = re.compile(r"[\x20-\x7e\t]*")  # a header value: visible ASCII, spaces, tabs


def validate(messages: Any, params: Mapping[str, Any]) -> None:
    """Bad input is an ``InvalidRequest`` (a ValueError) that says what to fix."""
    if not isinstance(messages, (list, tuple)) or not messages:
        raise errors.InvalidRequest("messages must be a non-empty list like [{'role': 'user', 'content': 'hi'}]")
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise errors.InvalidRequest(f"messages[{i}] must be a dict with 'role' and 'content'")
        if message.get("role") not in ROLES:
            raise errors.InvalidRequest(f"messages[{i}]['role'] must be one of {', '.join(ROLES)}")
        content = message.get("content")
        if content is None and not message.get("tool_calls"):
            raise errors.InvalidRequest(f"messages[{i}] has no 'content'")
        if content is not None and not isinstance(content, (str, list)):
            raise errors.InvalidRequest(f"messages[{i}]['content'] must be text (or a list of parts)")
    for name in ("max_tokens", "max_completion_tokens", "n"):
        value = params.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise errors.InvalidRequest(f"{name} must be a positive whole number, got {value!r}")
    for name, (low, high) in RANGES.items():
        value = params.get(name)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high
        ):
            raise errors.InvalidRequest(f"{name} must be a number from {low} to {high}, got {value!r}")
    if "stream" in params or "stream_options" in params:
        raise errors.InvalidRequest("chat returns whole answers: for a stream, call client.stream(messages, ...)")
    encode_json({"messages": list(messages), **params}, "the messages and parameters")


def check_request_id(request_id: Any) -> None:
    """A caller's own request id must be a UUID, as ours are: some servers (llama.cpp's
    Python server) refuse any other ``X-Request-ID``, and it goes in two headers."""
    try:
        ok = isinstance(request_id, str) and str(uuid.UUID(request_id)) == request_id.lower()
    except ValueError:
        ok = False
    if not ok:
        raise errors.InvalidRequest("request_id must be a UUID string such as str(uuid.uuid4())")


@dataclass(frozen=True)
class CallOptions:
    """How one call is made: the client's settings, overridden per call."""

    timeouts: Timeouts
    max_attempts: int
    use_cache: bool = True
    extra_headers: dict[str, str] = field(default_factory=dict)


def call_options(
    config: ClientConfig,
    timeout: float | Timeouts | None = None,
    max_attempts: int | None = None,
    cache: bool = True,
    extra_headers: Mapping[str, str] | None = None,
) -> CallOptions:
    """Check the per-call options; each mistake is an InvalidRequest naming it."""
    timeouts = config.timeouts
    if isinstance(timeout, Timeouts):
        timeouts = timeout
    elif timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < math.inf:
            raise errors.InvalidRequest(
                f"timeout must be seconds above 0 (the whole call) or a Timeouts, got {timeout!r}"
            )
        timeouts = timeouts.within(timeout)  # the whole call gets ``timeout``
    if max_attempts is not None:
        FIELD_RULES["max_attempts"]("max_attempts", max_attempts)
    if not isinstance(cache, bool):
        raise errors.InvalidRequest(f"cache must be True or False (False: neither read nor write it), got {cache!r}")
    headers = dict(extra_headers or {})
    for name, value in headers.items():
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise errors.InvalidRequest(f"extra_headers: {name!r} is not a valid header name")
        if not isinstance(value, str) or not _VALUE.fullmatch(value):
            raise errors.InvalidRequest(f"extra_headers[{name!r}] must be text without newlines or other letters")
    return CallOptions(timeouts, max_attempts or config.max_attempts, cache, headers)
