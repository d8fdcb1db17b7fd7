"""Timeouts and client configuration, from code or from ``WEEK04_*`` variables.

Taught in notebook 01, section 1.3 (timeouts) and notebook 05 (the whole config).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import InvalidRequest

# The course's table: connect / read / total seconds per use case, then a stream's
# first_token and idle limits (an embedding is never streamed).
PRESETS: dict[str, tuple] = {
    "quick_chat": (3.0, 15.0, 18.0, 10.0, 5.0),
    "standard": (5.0, 30.0, 35.0, 20.0, 10.0),
    "long_form": (5.0, 90.0, 95.0, 30.0, 20.0),
    "embedding": (3.0, 10.0, 13.0, None, None),
}
# A chat completion is kilobytes: a bigger reply is an InvalidResponse, not a MemoryError.
DEFAULT_MAX_RESPONSE_BYTES = 4 * 2**20

_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")  # visible ASCII: no space, CR, LF or other letters


def check_header_value(name: str, value: str) -> None:
    """A value sent in a header must be visible ASCII; the message never shows it (it
    may be a key)."""
    if not isinstance(value, str) or not _HEADER_SAFE.fullmatch(value):
        raise InvalidRequest(
            f"{name} must be visible ASCII characters only (no spaces, newlines or other letters); "
            "check for a stray character from copying it"
        )


def check_base_url(url: Any) -> str:
    """``http(s)://host[:port][/path]`` with a host, or an InvalidRequest saying why."""
    text = str(url or "").strip()
    try:
        parts = urlsplit(text)
        port_ok = parts.port is None or parts.port > 0
    except ValueError as exc:
        raise InvalidRequest(f"base_url {text!r} is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok or not _HEADER_SAFE.fullmatch(text):
        raise InvalidRequest(
            f"base_url must look like https://api.openai.com/v1 or http://127.0.0.1:8000/v1, got {text!r}"
        )
    return text.rstrip("/")


def check_file_path(path: str | os.PathLike[str], what: str) -> Path:
    """A path that can hold a file (a cache, a queue), or InvalidRequest saying why not."""
    found = Path(path)
    if found.is_dir():
        raise InvalidRequest(
            f"{what} {str(found)!r} is a directory; name a file in it, e.g. {str(found / 'week04.sqlite')!r}"
        )
    if not found.parent.is_dir():
        problem = "is not a folder" if found.parent.exists() else "does not exist"
        raise InvalidRequest(
            f"{what} {str(found)!r}: {str(found.parent)!r} {problem}; create the folder or choose another"
        )
    return found


REDIS_SCHEMES = ("redis", "rediss", "unix")


def redact_url(url: str) -> str:
    """``url`` with its password (if any) shown as ``***``: safe to print or log."""
    parts = urlsplit(str(url))
    if parts.password is None:
        return str(url)
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return parts._replace(netloc=f"{user}:***@{host}").geturl()


def is_redis_url(text: Any) -> bool:
    """Does ``text`` name a Redis (``redis://``, ``rediss://``, ``unix://``)?"""
    return isinstance(text, str) and "://" in text and text.split("://", 1)[0] in REDIS_SCHEMES


def check_redis_url(name: str, url: Any) -> str:
    """``redis://[:password@]host[:port][/db]``, ``rediss://`` (TLS) or ``unix:///path``."""
    text = str(url or "").strip() if isinstance(url, str) else ""
    try:
        parts = urlsplit(text)
        ok = (
            parts.scheme in REDIS_SCHEMES
            and bool(parts.hostname or parts.path)
            and (parts.port is None or parts.port > 0)
        )
    except ValueError:
        ok = False
    if not ok:
        raise InvalidRequest(
            f"{name} must be a Redis URL such as redis://127.0.0.1:6379/0 or rediss://:PASSWORD@host:6380/0, "
            f"got {redact_url(text) if isinstance(url, str) else url!r}"
        )
    return text


@dataclass(frozen=True)
class Timeouts:
    """Seconds. ``connect``: TCP set-up; ``read``: the longest silence between bytes;
    ``total``: the whole attempt, however the bytes arrive (requests has no such limit).
    For a stream, optionally: ``first_token``, the longest wait for its first token, and
    ``idle``, the longest gap between its chunks (keep-alive comments do not count);
    both end within ``total``.
    """

    connect: float = 5.0
    read: float = 30.0
    total: float = 35.0
    first_token: float | None = None
    idle: float | None = None

    def __post_init__(self) -> None:
        for name in ("connect", "read", "total", "first_token", "idle"):
            value = getattr(self, name)
            if value is None and name in ("first_token", "idle"):
                continue
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < math.inf:
                raise InvalidRequest(f"Timeouts.{name} must be a positive number of seconds, got {value!r}")

    def within(self, total: float) -> Timeouts:
        """These timeouts for a call of ``total`` seconds: no phase may wait longer."""

        def cap(value: float | None) -> float | None:
            return None if value is None else min(value, total)

        return dataclasses.replace(
            self, connect=min(self.connect, total), read=min(self.read, total), total=total,
            first_token=cap(self.first_token), idle=cap(self.idle),
        )  # fmt: skip

    @classmethod
    def preset(cls, name: str) -> Timeouts:
        """One of the course's presets: quick_chat, standard, long_form, embedding."""
        if name not in PRESETS:
            raise InvalidRequest(f"unknown timeout preset {name!r}; choose one of {', '.join(PRESETS)}")
        return cls(*PRESETS[name])


def _timeouts_default() -> Timeouts:
    return Timeouts.preset("standard")


def _fallbacks(value: Any, primary: str) -> tuple[str, ...]:
    """None, "a,b" or a list of names: a tuple without repeats or the primary."""
    if value is None:
        return ()
    names = value.split(",") if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise InvalidRequest(f"fallback_models must be a list of model names, got {value!r}")
    cleaned = [n.strip() for n in names if n.strip() and n.strip() != primary]
    return tuple(dict.fromkeys(cleaned))


def _whole(low: int, high: int | None = None, optional: bool = False) -> Callable[[str, Any], None]:
    def check(name: str, value: Any) -> None:
        if value is None and optional:
            return
        whole = isinstance(value, int) and not isinstance(value, bool)
        if not whole or value < low or (high is not None and value > high):
            bound = f"from {low} to {high}" if high is not None else f"at least {low}"
            none = " or None" if optional else ""
            raise InvalidRequest(f"{name} must be a whole number {bound}{none}, got {value!r}")

    return check


def _number(low: float, *, above: bool = False, optional: bool = False) -> Callable[[str, Any], None]:
    def check(name: str, value: Any) -> None:
        if value is None and optional:
            return
        number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not number or value < low or (above and value == low):
            bound = f"{'above' if above else 'at least'} {low:g}"
            none = " or None" if optional else ""
            raise InvalidRequest(f"{name} must be a finite number {bound}{none}, got {value!r}")

    return check


def _flag(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise InvalidRequest(f"{name} must be True or False, got {value!r}")


# ClientConfig's fields and what each accepts (the rest is checked in __post_init__).
FIELD_RULES: dict[str, Callable[[str, Any], None]] = {
    "max_attempts": _whole(1, 100),
    "backoff_base": _number(0),
    "backoff_cap": _number(0),
    "retry_budget": _number(0, optional=True),
    "throttle_k": _number(1, optional=True),
    "breaker_failure_rate": _number(0, above=True, optional=True),
    "rpm": _whole(1, optional=True),
    "tpm": _whole(1, optional=True),
    "max_concurrency": _whole(1, optional=True),
    "cache_ttl_s": _number(0, above=True, optional=True),
    "cache_sampled": _flag,
    "breaker_failures": _whole(1),
    "breaker_reset_s": _number(0, above=True),
    "serve_stale": _flag,
    "max_response_bytes": _whole(1024),
}


@dataclass(frozen=True)
class ClientConfig:
    """Everything ``LLMClient`` needs, checked field by field when made, then immutable
    (``dataclasses.replace`` makes a changed copy). ``repr`` never shows the API key."""

    base_url: str = "https://api.openai.com/v1"
    api_key: str | None = field(default=None, repr=False)
    model: str = "gpt-4o-mini"
    fallback_models: tuple[str, ...] = ()
    embedding_model: str = "text-embedding-3-small"  # LLMClient.embed's default
    timeouts: Timeouts = field(default_factory=_timeouts_default)
    max_attempts: int = 4
    backoff_base: float = 0.5
    backoff_cap: float = 8.0
    retry_budget: float | None = None  # a fixed share of calls for retries, instead of the throttle (notebook 02)
    throttle_k: float | None = 2.0  # adaptive throttling (throttle.py): send while 1/K succeed; None: off
    rpm: int | None = None
    tpm: int | None = None
    max_concurrency: int | None = None
    cache: str | None = field(default=None, repr=False)  # None, "memory", "sqlite:PATH" or a Redis URL
    cache_ttl_s: float | None = None
    cache_sampled: bool = False  # cache temperature > 0 answers without a seed too (opt-in)
    breaker_failures: int = 5  # calls in the breaker's window before its rate may open it (in a row: off rate)
    breaker_failure_rate: float | None = 0.9  # ... and their share of the window; None: consecutive
    breaker_reset_s: float = 30.0
    log_path: str | None = None
    serve_stale: bool = False
    queue_path: str | None = None
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    shared: str | None = field(default=None, repr=False)  # a Redis URL: state shared by processes (shared/)

    def __post_init__(self) -> None:
        def settle(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)  # frozen: only __post_init__ may

        settle("base_url", check_base_url(self.base_url))
        if self.api_key is not None:
            check_header_value("api_key", self.api_key)
        for name in ("model", "embedding_model"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise InvalidRequest(f"{name} must be a non-empty string, got {value!r}")
        settle("fallback_models", _fallbacks(self.fallback_models, self.model))
        if not isinstance(self.timeouts, Timeouts):
            raise InvalidRequest("timeouts must be a Timeouts (e.g. Timeouts.preset('standard'))")
        for name, rule in FIELD_RULES.items():
            rule(name, getattr(self, name))
        if self.backoff_cap < self.backoff_base:
            raise InvalidRequest(
                f"backoff_cap must be at least backoff_base ({self.backoff_base}), got {self.backoff_cap}"
            )
        if self.breaker_failure_rate is not None and self.breaker_failure_rate > 1:
            raise InvalidRequest(f"breaker_failure_rate must be a share from 0 to 1, got {self.breaker_failure_rate}")
        for name in ("log_path", "queue_path"):
            value = getattr(self, name)
            if value is not None:
                if not isinstance(value, (str, os.PathLike)) or not str(value):
                    raise InvalidRequest(f"{name} must be a file path or None, got {value!r}")
                settle(name, os.fspath(value))
        if self.shared is not None:
            settle("shared", check_redis_url("shared", self.shared))
        if is_redis_url(self.cache):
            settle("cache", check_redis_url("cache", self.cache))
        elif self.cache not in (None, "memory") and not (
            isinstance(self.cache, str) and self.cache.startswith("sqlite:")
        ):
            raise InvalidRequest(
                f"cache must be None, 'memory', 'sqlite:PATH' or 'redis://HOST:PORT/DB', got {self.cache!r}"
            )

    def __repr__(self) -> str:
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self) if f.repr)
        key = "None" if self.api_key is None else "'***'"
        urls = ", ".join(f"{name}={_shown_url(getattr(self, name))}" for name in ("cache", "shared"))
        return f"ClientConfig({shown}, {urls}, api_key={key})"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> ClientConfig:
        """Read ``WEEK04_*`` variables (see README); ``OPENAI_API_KEY`` and
        ``OPENAI_BASE_URL`` are the fallbacks for the key and the URL.
        Keyword arguments win over the environment."""
        env = os.environ if environ is None else environ
        values: dict = {}
        for name, (variable, parse) in ENV_VARIABLES.items():
            raw = env.get(variable)
            if raw is None or raw == "":
                continue
            try:
                values[name] = parse(raw)
            except ValueError as exc:
                raise InvalidRequest(f"{variable}={raw!r} is not valid: {exc}") from None
            if name in FIELD_RULES:  # name the variable, not the field, in the message
                FIELD_RULES[name](variable, values[name])
        values.setdefault("api_key", env.get("OPENAI_API_KEY") or None)
        if env.get("OPENAI_BASE_URL"):
            values.setdefault("base_url", env["OPENAI_BASE_URL"])
        values["timeouts"] = _timeouts_from_env(env)
        values.update(overrides)
        return cls(**values)


def _shown_url(url: str | None) -> str:
    return repr(None if url is None else redact_url(url))


def _timeouts_from_env(env: Mapping[str, str]) -> Timeouts:
    base = Timeouts.preset(env.get("WEEK04_TIMEOUT_PRESET") or "standard")
    parts = {}
    for name in ("connect", "read", "total", "first_token", "idle"):
        raw = env.get(f"WEEK04_{name.upper()}_TIMEOUT")
        if raw:
            try:
                parts[name] = float(raw)
            except ValueError:
                raise InvalidRequest(f"WEEK04_{name.upper()}_TIMEOUT={raw!r} is not a number") from None
    return dataclasses.replace(base, **parts)


def _boolean(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true/false")


def _budget(raw: str) -> float | None:
    return None if raw.strip().lower() in ("off", "none") else float(raw)


def _models(raw: str) -> list[str]:
    return [m.strip() for m in raw.split(",") if m.strip()]


# field name -> (environment variable, parser). The README documents each one.
ENV_VARIABLES: dict[str, tuple[str, Callable[[str], object]]] = {
    "base_url": ("WEEK04_BASE_URL", str),
    "api_key": ("WEEK04_API_KEY", str),
    "model": ("WEEK04_MODEL", str),
    "fallback_models": ("WEEK04_FALLBACK_MODELS", _models),
    "embedding_model": ("WEEK04_EMBEDDING_MODEL", str),
    "max_attempts": ("WEEK04_MAX_ATTEMPTS", int),
    "backoff_base": ("WEEK04_BACKOFF_BASE", float),
    "backoff_cap": ("WEEK04_BACKOFF_CAP", float),
    "retry_budget": ("WEEK04_RETRY_BUDGET", _budget),
    "rpm": ("WEEK04_RPM", int),
    "tpm": ("WEEK04_TPM", int),
    "max_concurrency": ("WEEK04_MAX_CONCURRENCY", int),
    "cache": ("WEEK04_CACHE", str),
    "cache_ttl_s": ("WEEK04_CACHE_TTL_S", float),
    "cache_sampled": ("WEEK04_CACHE_SAMPLED", _boolean),
    "breaker_failures": ("WEEK04_BREAKER_FAILURES", int),
    "breaker_reset_s": ("WEEK04_BREAKER_RESET_S", float),
    "breaker_failure_rate": ("WEEK04_BREAKER_FAILURE_RATE", _budget),
    "throttle_k": ("WEEK04_THROTTLE_K", _budget),
    "log_path": ("WEEK04_LOG_PATH", str),
    "serve_stale": ("WEEK04_SERVE_STALE", _boolean),
    "queue_path": ("WEEK04_QUEUE_PATH", str),
    "max_response_bytes": ("WEEK04_MAX_RESPONSE_BYTES", int),
    "shared": ("WEEK04_SHARED", str),
}
