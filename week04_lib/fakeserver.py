"""A real HTTP server on 127.0.0.1 that speaks OpenAI chat completions and misbehaves
on request: hangs, trickles, resets, 429s, 5xx, broken JSON, HTML, empty bodies.

Taught in notebook 01, section 1.2, and used by every notebook, test and demo.

    with FakeLLMServer(script=["503", "429:retry-after=1", "ok"]) as srv:
        srv.url            # "http://127.0.0.1:PORT/v1"
        srv.attempts       # every request received: .t .path .headers .body .fault
        srv.billed_tokens  # a repeated Idempotency-Key is replayed, not billed

Fault names: ok, slow:S, hang, trickle:S, reset, drop, invalid_json, html, empty, and a
status code (429, 500, 502, 503, 504, 529, 400, 401, 403, 404, 422) with an optional
``:retry-after=N`` or ``:retry-after-ms=N``. One fault per request from ``script``,
then ``default`` (or a seeded draw from ``mix``). ``model_faults={"big": "503"}`` gives
every request for one model its own fault ("the primary model is down").
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import math
import random
import socket
import struct
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .ratelimit import TokenBucket, estimate_prompt_tokens, estimate_tokens

log = logging.getLogger("week04_lib.fakeserver")

MODELS = ("fake-mini", "fake-large")
DEFAULT_LATENCY = (0.4, 3.0)  # median and p99 seconds: a realistic long tail
STATUS_TEXT = {
    400: ("invalid_request_error", "The request is malformed."),
    401: ("authentication_error", "Incorrect API key provided."),
    403: ("permission_error", "This key is not allowed to use this model."),
    404: ("not_found_error", "The model does not exist or you do not have access to it."),
    422: ("invalid_request_error", "The request could not be processed."),
    429: ("rate_limit_error", "Rate limit reached. Please try again later."),
    500: ("server_error", "The server had an error while processing your request."),
    502: ("server_error", "Bad gateway."),
    503: ("server_error", "The engine is currently overloaded, please try again later."),
    504: ("server_error", "Gateway timeout."),
    529: ("overloaded_error", "Overloaded."),
}
_WORDS = (  # noqa: SIM905 (a sentence reads better than a list of 30 strings)
    "reliable clients measure every call and retry only what is transient while "
    "timeouts keep waiting bounded caches save tokens logs explain incidents and "
    "budgets protect the provider from a storm of repeated requests"
).split()


# --------------------------------------------------------------------------- faults


@dataclass(frozen=True)
class Fault:
    """One parsed fault spec, e.g. ``Fault.parse("429:retry-after=2")``."""

    name: str  # ok, slow, hang, trickle, reset, drop, invalid_json, html, empty, status
    seconds: float = 0.0  # for slow and trickle
    status: int = 200  # for status faults
    retry_after: str | None = None  # header value to send, if any
    retry_after_ms: str | None = None

    SIMPLE = ("ok", "hang", "reset", "drop", "invalid_json", "html", "empty")

    @classmethod
    def parse(cls, spec: str) -> Fault:
        text = str(spec).strip()
        head, _, arg = text.partition(":")
        if head in cls.SIMPLE and not arg:
            return cls(head)
        if head in ("slow", "trickle"):
            try:
                seconds = float(arg)
            except ValueError:
                seconds = -1.0
            if not seconds >= 0:
                raise ValueError(f"fault {text!r}: {head} needs seconds, e.g. '{head}:0.5'")
            return cls(head, seconds=seconds)
        if head.isdigit() and int(head) in STATUS_TEXT:
            if not arg:
                return cls("status", status=int(head))
            option, _, value = arg.partition("=")
            if option == "retry-after":
                return cls("status", status=int(head), retry_after=value)
            if option == "retry-after-ms":
                return cls("status", status=int(head), retry_after_ms=value)
        raise ValueError(
            f"unknown fault {text!r}; use ok, slow:S, hang, trickle:S, reset, drop, invalid_json, "
            f"html, empty, or a status ({', '.join(map(str, STATUS_TEXT))}) with optional "
            ":retry-after=N or :retry-after-ms=N"
        )


# ------------------------------------------------------------------------- latency


class LatencyModel:
    """Log-normal generation time with a given median and 99th percentile (seconds).

    ``LatencyModel(0)`` never waits. Used by the server; notebooks sample it directly.
    """

    Z99 = 2.3263478740408408  # the standard normal's 99th percentile

    def __init__(self, spec: float | tuple[float, float] | None = DEFAULT_LATENCY) -> None:
        if spec is None or spec == 0:
            self.median, self.p99 = 0.0, 0.0
        elif isinstance(spec, (int, float)):
            self.median = self.p99 = float(spec)
        else:
            self.median, self.p99 = (float(v) for v in spec)
        if self.median < 0 or self.p99 < self.median:
            raise ValueError(f"latency needs 0 <= median <= p99, got {spec!r}")
        self.sigma = math.log(self.p99 / self.median) / self.Z99 if self.median > 0 else 0.0

    def sample(self, rng: random.Random) -> float:
        if self.median == 0:
            return 0.0
        return rng.lognormvariate(math.log(self.median), self.sigma)

    def samples(self, n: int, seed: int = 0) -> list[float]:
        rng = random.Random(seed)
        return [self.sample(rng) for _ in range(n)]


# ------------------------------------------------------------------- rate limiting


# ------------------------------------------------------------------------- replies


def _reply_text(seed: int, body: Mapping[str, Any], salt: str) -> tuple[str, str]:
    """A deterministic reply for the seed and request (plus ``salt`` when sampled)."""
    messages = body.get("messages") or []
    digest = hashlib.sha256(json.dumps([seed, body.get("model"), messages, salt], sort_keys=True).encode()).digest()
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    systems = [m for m in messages if isinstance(m, dict) and m.get("role") == "system"]
    asked = str(users[-1].get("content", "")) if users else ""
    n_words = 6 + digest[0] % 18
    words = [_WORDS[b % len(_WORDS)] for b in digest[1 : 1 + n_words]]
    persona = f"[{str(systems[0].get('content', ''))[:40]}] " if systems else ""
    text = f"{persona}Re: {asked[:60]!r}: " + " ".join(words) + "."
    max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
    tokens = text.split()
    if isinstance(max_tokens, int) and 0 < max_tokens < len(tokens):
        return " ".join(tokens[:max_tokens]), "length"
    return text, "stop"


# -------------------------------------------------------------------------- server


@dataclass(frozen=True)
class Attempt:
    """One request as the server received it."""

    t: float  # time.monotonic() on arrival
    path: str
    headers: dict[str, str]
    body: Any | None  # parsed JSON, or None
    fault: str  # the fault applied ("auth" and "rate_limited" for the server's own)


class FakeLLMServer:
    """A local OpenAI-compatible server. Use as a context manager, or start()/stop()."""

    def __init__(
        self,
        script: Iterable[str] = (),
        *,
        default: str = "ok",
        mix: Mapping[str, float] | None = None,
        seed: int = 0,
        rpm: float | None = None,
        tpm: float | None = None,
        burst_s: float = 1.0,
        latency: float | tuple[float, float] | None = DEFAULT_LATENCY,
        api_key: str | None = None,
        model_faults: Mapping[str, str] | None = None,
        models: Sequence[str] = MODELS,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._script = [Fault.parse(s) for s in script]
        self._script_specs = [str(s).strip() for s in script]
        self.default = Fault.parse(default)
        self._default_spec = str(default).strip()
        self._mix = [(str(k).strip(), Fault.parse(k), float(w)) for k, w in (mix or {}).items()]
        if mix is not None and (
            not self._mix or any(w < 0 for *_, w in self._mix) or sum(w for *_, w in self._mix) <= 0
        ):
            raise ValueError("mix needs non-negative weights with a positive sum, e.g. {'ok': 0.9, '503': 0.1}")
        self.seed = seed
        self.latency = LatencyModel(latency)
        self.api_key = api_key
        # a fault for every request to one model: "the primary is down" (script untouched)
        self.model_faults = {m: (str(f).strip(), Fault.parse(f)) for m, f in (model_faults or {}).items()}
        self.models = list(models)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._attempts: list[Attempt] = []
        self._replies: dict[str, bytes] = {}  # Idempotency-Key -> first answer
        self._counter = 0
        self.billed_tokens = 0
        self.billed_requests = 0
        # The server's own limits: buckets holding burst_s seconds of budget (one request at least)
        self._rpm = TokenBucket(rpm / 60, max(1.0, rpm / 60 * burst_s)) if rpm else None
        self._tpm = TokenBucket(tpm / 60, max(1.0, tpm / 60 * burst_s)) if tpm else None
        self._stopping = threading.Event()
        self._httpd = _HTTPServer((host, port), _Handler)
        self._httpd.fake = self
        self._thread: threading.Thread | None = None

    # -- lifecycle
    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeLLMServer:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"fakeserver-{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and end every connection, hung ones included."""
        self._stopping.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.close_connections()
        self._httpd.server_close()  # joins the handler threads

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"FakeLLMServer(url={self.url!r}, requests={len(self._attempts)})"

    # -- what happened
    @property
    def attempts(self) -> list[Attempt]:
        with self._lock:
            return list(self._attempts)

    # -- decisions, each under the lock
    def _next_fault(self, model: Any = None) -> tuple[str, Fault]:
        if model in self.model_faults:
            return self.model_faults[model]
        if self._script:
            return self._script_specs.pop(0), self._script.pop(0)
        if self._mix:
            specs, faults, weights = zip(*self._mix, strict=False)
            i = self._rng.choices(range(len(faults)), weights=weights)[0]
            return specs[i], faults[i]
        return self._default_spec, self.default

    def _admit(self, tokens: int) -> tuple[float | None, dict[str, str]]:
        """Charge the server's own limits. Returns (retry_after or None, headers)."""
        charges = [
            (b, amount, kind)
            for b, amount, kind in ((self._rpm, 1, "requests"), (self._tpm, tokens, "tokens"))
            if b is not None
        ]
        wait = max((bucket.wait_for(amount) for bucket, amount, _ in charges), default=0.0)
        headers: dict[str, str] = {}
        for bucket, amount, kind in charges:
            if wait == 0:
                bucket.take(amount)
            headers[f"x-ratelimit-limit-{kind}"] = str(round(bucket.rate * 60))
            headers[f"x-ratelimit-remaining-{kind}"] = str(max(0, int(bucket.level)))
            # rounded up: a client that waits exactly this long must find the budget back
            headers[f"x-ratelimit-reset-{kind}"] = f"{math.ceil(bucket.reset_s() * 1000) / 1000:.3f}s"
        return (wait if wait > 0 else None), headers

    def _answer(self, body: Mapping[str, Any], key: str | None) -> bytes:
        """The completion for this request; a repeated idempotency key replays, unbilled."""
        with self._lock:
            if key and key in self._replies:
                return self._replies[key]
            self._counter += 1
            sampled = (body.get("temperature") or 0) > 0 and body.get("seed") is None
            salt = str(self._rng.random()) if sampled else ""
            text, finish = _reply_text(self.seed, body, salt)
            prompt_tokens = estimate_prompt_tokens(body.get("messages"))
            completion_tokens = len(text.split())
            reply = {
                "id": f"chatcmpl-{self.seed}-{self._counter}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model") or self.models[0],
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
            data = json.dumps(reply).encode()
            self.billed_tokens += prompt_tokens + completion_tokens
            self.billed_requests += 1
            if key:
                self._replies[key] = data
            return data

    def _record(self, handler: _Handler, body: Any | None, fault: str) -> None:
        with self._lock:
            self._attempts.append(Attempt(handler.arrived, handler.path, dict(handler.headers.items()), body, fault))

    def _sample_latency(self) -> float:
        with self._lock:
            return self.latency.sample(self._rng)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = True
    fake: FakeLLMServer

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.open_sockets: set = set()
        self.sockets_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def process_request(self, request: socket.socket, client_address: Any) -> None:
        with self.sockets_lock:
            self.open_sockets.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket) -> None:
        with self.sockets_lock:
            self.open_sockets.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self.sockets_lock:
            sockets = list(self.open_sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that goes away mid-answer is normal here; anything else is logged.
        import sys

        if not isinstance(sys.exc_info()[1], OSError):
            log.exception("fake server error")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer
    server_version = "week04-fake/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # keep stderr clean
        pass

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without this, Nagle's algorithm
        # and delayed ACKs add 40 ms to every reply.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # -- helpers
    def _send(
        self,
        status: int,
        payload: bytes,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()

    def _send_error_json(
        self, status: int, headers: Mapping[str, str] | None = None, message: str | None = None
    ) -> None:
        kind, text = STATUS_TEXT.get(status, ("error", "Error."))
        payload = {"error": {"message": message or text, "type": kind, "param": None, "code": status}}
        self._send(status, json.dumps(payload).encode(), headers=headers)

    def _close_abruptly(self, reset: bool) -> None:
        """End the connection with no answer: a RST if ``reset``, else a plain FIN."""
        self.close_connection = True
        if reset:  # linger 0: close() sends RST, the client sees "connection reset by peer"
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        else:
            self.connection.shutdown(socket.SHUT_RDWR)

    def _read_body(self) -> tuple[bytes, Any | None]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return raw, json.loads(raw) if raw else None
        except ValueError:
            return raw, None

    # -- routes
    def do_GET(self) -> None:
        self.arrived = time.monotonic()
        fake = self.server.fake
        fake._record(self, None, "ok")
        if self.path.rstrip("/").endswith("/models"):
            data = [{"id": m, "object": "model", "created": 0, "owned_by": "week04"} for m in fake.models]
            self._send(200, json.dumps({"object": "list", "data": data}).encode())
        else:
            self._send_error_json(404, message=f"no route {self.path}")

    def do_POST(self) -> None:
        self.arrived = time.monotonic()
        fake = self.server.fake
        _, body = self._read_body()
        if not self.path.rstrip("/").endswith("/chat/completions"):
            fake._record(self, body, "no_route")
            return self._send_error_json(404, message=f"no route {self.path}")
        if fake.api_key is not None and self.headers.get("Authorization") != f"Bearer {fake.api_key}":
            fake._record(self, body, "auth")
            return self._send_error_json(401)
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            fake._record(self, body, "bad_body")
            return self._send_error_json(400, message="the body must be JSON with a 'messages' list")
        with fake._lock:
            tokens = estimate_tokens(body["messages"], body.get("max_tokens"))
            retry_after, limit_headers = fake._admit(tokens)
            if retry_after is None:
                spec, fault = fake._next_fault(body.get("model"))
        if retry_after is not None:
            fake._record(self, body, "rate_limited")
            headers = dict(limit_headers)
            headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
            headers["retry-after-ms"] = str(math.ceil(retry_after * 1000))
            return self._send_error_json(429, headers=headers)
        fake._record(self, body, spec)
        self._apply(fault, body, limit_headers)

    def _apply(self, fault: Fault, body: dict[str, Any], headers: dict[str, str]) -> None:
        fake = self.server.fake
        stopping = fake._stopping
        key = self.headers.get("Idempotency-Key")
        if fault.name == "status":
            extra = dict(headers)
            if fault.retry_after is not None:
                extra["Retry-After"] = fault.retry_after
            if fault.retry_after_ms is not None:
                extra["retry-after-ms"] = fault.retry_after_ms
            return self._send_error_json(fault.status, headers=extra)
        if fault.name == "hang":
            stopping.wait()
            return self._close_abruptly(reset=False)
        if fault.name == "reset":
            return self._close_abruptly(reset=True)
        if fault.name == "invalid_json":
            return self._send(
                200, b'{"id": "chatcmpl-broken", "choices": [{"message": {"role": "assist', headers=headers
            )
        if fault.name == "html":
            page = b"<html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>"
            return self._send(200, page, content_type="text/html", headers=headers)
        if fault.name == "empty":
            return self._send(
                200, json.dumps({"id": "chatcmpl-empty", "object": "chat.completion"}).encode(), headers=headers
            )
        # ok, slow, trickle, drop: the model does the work (and the provider bills it)
        delay = fault.seconds if fault.name == "slow" else fake._sample_latency()
        if stopping.wait(delay):
            return self._close_abruptly(reset=False)
        payload = fake._answer(body, key)
        if fault.name == "drop":
            return self._close_abruptly(reset=False)
        if fault.name == "trickle":
            return self._trickle(payload, fault.seconds, headers)
        self._send(200, payload, headers=headers)

    def _trickle(self, payload: bytes, every_s: float, headers: Mapping[str, str]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.flush()
        for i in range(len(payload)):
            if self.server.fake._stopping.wait(every_s):
                return self._close_abruptly(reset=False)
            self.wfile.write(payload[i : i + 1])
            self.wfile.flush()


# ---------------------------------------------------------------------- command line


def _parse_mix(text: str) -> dict[str, float]:
    mix = {}
    for part in text.split(","):
        name, _, weight = part.rpartition("=")
        mix[name.strip()] = float(weight)
    return mix


def _parse_latency(text: str) -> float | tuple[float, float]:
    parts = [float(p) for p in text.split(",")]
    return parts[0] if len(parts) == 1 else (parts[0], parts[1])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m week04_lib.fakeserver",
        description="Serve a fake OpenAI-compatible API that misbehaves on request.",
    )
    parser.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (0 = any free port)")
    parser.add_argument("--script", default="", help="faults for the first requests, e.g. 503,429:retry-after=1,ok")
    parser.add_argument("--default", default="ok", help="fault once the script is used up (default ok)")
    parser.add_argument("--mix", type=_parse_mix, help="seeded mix instead of the default, e.g. ok=0.8,503=0.2")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rpm", type=float, help="the server's own requests-per-minute limit")
    parser.add_argument("--tpm", type=float, help="the server's own tokens-per-minute limit")
    parser.add_argument(
        "--latency",
        type=_parse_latency,
        default=DEFAULT_LATENCY,
        help="0, a constant S, or MEDIAN,P99 seconds (default 0.4,3.0)",
    )
    parser.add_argument("--api-key", help="require this bearer key (else 401)")
    args = parser.parse_args(argv)
    script = [s for s in args.script.split(",") if s.strip()]
    try:
        server = FakeLLMServer(
            script,
            default=args.default,
            mix=args.mix,
            seed=args.seed,
            rpm=args.rpm,
            tpm=args.tpm,
            latency=args.latency,
            api_key=args.api_key,
            port=args.port,
        )
    except (ValueError, OSError) as exc:
        parser.exit(2, f"error: {exc}\n")
    with server:
        print(f"fake LLM server at {server.url} (Ctrl-C to stop)", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
