"""The fault grammar: one spec string per request (``"503"``, ``"trickle:0.5"``,
``"429:retry-after=2:x-should-retry=false"``) parsed into a :class:`Fault`.

The package docstring (``week04_lib/fakeserver/__init__.py``) says what each fault does.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from .replies import STATUS_TEXT, USAGE_KINDS

GRAMMAR = (
    "ok, slow:S, hang, trickle:S, header_trickle:S, body_stall:S, reset, drop, invalid_json, html, empty, "
    "chunked_stall, redirect:URL, huge_body:MB, deep_json, deep_json:STATUS, bad_usage, bad_usage:KIND "
    f"(KIND one of {', '.join(USAGE_KINDS)}), insufficient_quota, "
    "stream_stall:N, stream_cut:N, stream_garbage:N, stream_slow_start:S, stream_keepalive, "
    f"or a status ({', '.join(map(str, STATUS_TEXT))}) with options "
    ":retry-after=N, :retry-after-ms=N, :x-should-retry=true|false (several allowed, "
    "e.g. 429:retry-after=2:x-should-retry=false)"
)
STATUS_OPTIONS = {"retry-after": "retry_after", "retry-after-ms": "retry_after_ms", "x-should-retry": "should_retry"}
# "429:retry-after=2:x-should-retry=false" splits before each "name=", so an HTTP-date
# Retry-After ("retry-after=Wed, 21 Oct 2015 07:28:00 GMT") keeps its colons.
_OPTION_START = re.compile(r":(?=[a-z-]+=)")


@dataclass(frozen=True)
class Fault:
    """One parsed fault spec, e.g. ``Fault.parse("429:retry-after=2")``."""

    # ok, slow, hang, trickle, header_trickle, body_stall, reset, drop, invalid_json, html,
    # empty, chunked_stall, redirect, huge_body, deep_json, bad_usage, insufficient_quota, status,
    # and the stream faults (STREAM)
    name: str
    seconds: float = 0.0  # slow, trickle, header_trickle, body_stall, stream_slow_start
    status: int = 200  # status faults, deep_json's status, redirect's 307
    retry_after: str | None = None  # header value to send, if any
    retry_after_ms: str | None = None
    should_retry: str | None = None  # x-should-retry header value: "true" or "false"
    url: str | None = None  # redirect's Location
    megabytes: float = 0.0  # huge_body
    usage: str | None = None  # bad_usage's kind
    count: int = 0  # stream_stall, stream_cut, stream_garbage: content chunks sent first

    SIMPLE = (
        "ok",
        "hang",
        "reset",
        "drop",
        "invalid_json",
        "html",
        "empty",
        "chunked_stall",
        "insufficient_quota",
        "stream_keepalive",
    )
    # faults of a streamed answer; a request that does not stream gets a normal answer
    STREAM = ("stream_stall", "stream_cut", "stream_garbage", "stream_slow_start", "stream_keepalive")

    @property
    def streams_only(self) -> bool:
        """True for a fault that only a streamed answer can show (``ok`` otherwise)."""
        return self.name in self.STREAM

    @classmethod
    def parse(cls, spec: str) -> Fault:
        text = str(spec).strip()
        head, _, arg = text.partition(":")
        if head in cls.SIMPLE and not arg:
            return cls(head, status=429 if head == "insufficient_quota" else 200)
        if head in ("slow", "trickle", "header_trickle", "body_stall", "stream_slow_start"):
            seconds = _number(arg)
            if seconds is None or seconds < 0:
                raise ValueError(f"fault {text!r}: {head} needs seconds >= 0, e.g. '{head}:0.5'")
            return cls(head, seconds=seconds)
        if head in ("stream_stall", "stream_cut", "stream_garbage"):
            if not re.fullmatch(r"[0-9]+", arg):
                raise ValueError(f"fault {text!r}: {head} needs a whole number of chunks >= 0, e.g. '{head}:3'")
            return cls(head, count=int(arg))
        if head == "huge_body":
            megabytes = _number(arg)
            if megabytes is None or megabytes <= 0:
                raise ValueError(f"fault {text!r}: huge_body needs megabytes > 0, e.g. 'huge_body:0.5'")
            return cls(head, megabytes=megabytes)
        if head == "redirect":
            if not arg or any(c.isspace() or not c.isprintable() for c in arg):
                raise ValueError(f"fault {text!r}: redirect needs a URL, e.g. 'redirect:http://127.0.0.1:9/v1'")
            return cls(head, status=307, url=arg)
        if head == "deep_json":
            status = int(arg) if arg.isdigit() else 200 if not arg else -1
            if status != 200 and status not in STATUS_TEXT:
                codes = ", ".join(map(str, STATUS_TEXT))
                raise ValueError(f"fault {text!r}: deep_json takes no status or one of {codes}")
            return cls(head, status=status)
        if head == "bad_usage":
            if (arg or "big") not in USAGE_KINDS:
                raise ValueError(f"fault {text!r}: bad_usage takes one of {', '.join(USAGE_KINDS)}")
            return cls(head, usage=arg or "big")
        if head.isdigit() and int(head) in STATUS_TEXT:
            return cls._status(text, int(head), arg)
        raise ValueError(f"unknown fault {text!r}; use {GRAMMAR}")

    @classmethod
    def _status(cls, text: str, status: int, arg: str) -> Fault:
        options: dict[str, str] = {}
        for part in _OPTION_START.split(arg) if arg else ():
            option, _, value = part.partition("=")
            field = STATUS_OPTIONS.get(option)
            if field is None:
                raise ValueError(f"unknown fault {text!r}; use {GRAMMAR}")
            if field in options:
                raise ValueError(f"fault {text!r}: {option} given twice")
            if field == "should_retry" and value not in ("true", "false"):
                raise ValueError(f"fault {text!r}: x-should-retry is 'true' or 'false'")
            options[field] = value
        return cls("status", status=status, **options)


def _number(text: str) -> float | None:
    """A finite float, or None."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None
