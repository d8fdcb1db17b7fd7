"""The fake server itself: its settings, its state (what it received, what it billed),
its decisions (which fault, whether its own rate limit admits a request) and its
lifecycle. What goes on the wire for each request is ``handler.py``'s.

Taught in notebook 01, section 1.2, and used by every notebook, test and demo.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from typing import Any

from ..ratelimit import TokenBucket, estimate_prompt_tokens
from . import embeddings, encoding, replies
from .embeddings import EmbeddingRequest
from .faults import Fault
from .handler import Handler
from .latency import DEFAULT_LATENCY, LatencyModel
from .replies import MODELS

log = logging.getLogger("week04_lib.fakeserver")


@dataclass(frozen=True)
class Attempt:
    """One request as the server received it."""

    t: float  # time.monotonic() on arrival
    path: str
    headers: dict[str, str]
    body: Any | None  # parsed JSON, or None
    fault: str  # the fault applied ("auth", "rate_limited", "bad_request_id" for the server's own)


class FakeLLMServer:
    """A local OpenAI-compatible server. Use as a context manager, or start()/stop().

    ``paired=True`` draws ``mix`` per prompt: the n-th request carrying the same messages
    (or embeddings ``input``) meets the same fault whatever the order of arrival
    (benchmarks comparing clients). ``chunk_interval_s`` paces a stream's events.
    """

    def __init__(
        self,
        script: Iterable[str] = (),
        *,
        default: str = "ok",
        mix: Mapping[str, float] | None = None,
        seed: int = 0,
        paired: bool = False,
        rpm: float | None = None,
        tpm: float | None = None,
        burst_s: float = 1.0,
        latency: float | tuple[float, float] | None = DEFAULT_LATENCY,
        api_key: str | None = None,
        model_faults: Mapping[str, str] | None = None,
        models: Sequence[str] = MODELS,
        compress: str | None = None,
        strict_request_id: bool = False,
        chunk_interval_s: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        script = list(script)
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
        self.compress = encoding.check(compress)  # gzip or deflate, when the request accepts it
        self.strict_request_id = strict_request_id  # 400 to an X-Request-ID that is not a UUID
        if not isinstance(chunk_interval_s, (int, float)) or not 0 <= chunk_interval_s < math.inf:
            raise ValueError(f"chunk_interval_s must be a number of seconds >= 0, got {chunk_interval_s!r}")
        self.chunk_interval_s = float(chunk_interval_s)  # the pause between a stream's events
        self._rng = random.Random(seed)
        # paired: a prompt's n-th request meets the same draw from ``mix``, in whatever order
        # requests arrive, so two clients compared side by side face the same faults call by call
        self.paired = paired
        self._asked: Counter[str] = Counter()
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
        self._httpd = _HTTPServer((host, port), Handler)
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
        self._httpd.server_close()
        self._httpd.join_handlers()  # each ends on _stopping or on its closed socket

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
    def _draw(self, messages: Any) -> random.Random:
        if not self.paired:
            return self._rng
        prompt = json.dumps(messages, sort_keys=True)
        self._asked[prompt] += 1
        return random.Random(f"{self.seed}:{prompt}:{self._asked[prompt]}")

    def _next_fault(self, model: Any = None, messages: Any = None) -> tuple[str, Fault]:
        if model in self.model_faults:
            return self.model_faults[model]
        if self._script:
            return self._script_specs.pop(0), self._script.pop(0)
        if self._mix:
            specs, faults, weights = zip(*self._mix, strict=False)
            i = self._draw(messages).choices(range(len(faults)), weights=weights)[0]
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
            text, finish = replies.reply_text(self.seed, body, salt)
            prompt_tokens = estimate_prompt_tokens(body.get("messages"))
            completion_tokens = len(text.split())
            reply = replies.completion(
                f"chatcmpl-{self.seed}-{self._counter}",
                body.get("model") or self.models[0],
                int(time.time()),
                text,
                finish,
                prompt_tokens,
                completion_tokens,
            )
            data = json.dumps(reply).encode()
            self.billed_tokens += prompt_tokens + completion_tokens
            self.billed_requests += 1
            if key:
                self._replies[key] = data
            return data

    def _answer_huge(self, body: Mapping[str, Any], n_bytes: int) -> Iterator[bytes]:
        """A completion whose content is ``n_bytes`` long, in chunks; billed every time
        (it is never stored, so an Idempotency-Key cannot replay it)."""
        return replies.huge_completion(self._bill_huge(body, n_bytes), n_bytes)

    def _bill_huge(self, body: Mapping[str, Any], n_bytes: int) -> dict[str, Any]:
        """Bill a completion of ``n_bytes`` of content; its reply, with empty content."""
        with self._lock:
            self._counter += 1
            prompt_tokens = estimate_prompt_tokens(body.get("messages"))
            completion_tokens = replies.huge_tokens(n_bytes)
            reply = replies.completion(
                f"chatcmpl-{self.seed}-{self._counter}",
                body.get("model") or self.models[0],
                int(time.time()),
                "",
                "stop",
                prompt_tokens,
                completion_tokens,
            )
            self.billed_tokens += prompt_tokens + completion_tokens
            self.billed_requests += 1
        return reply

    def _answer_embeddings(self, request: EmbeddingRequest, key: str | None) -> bytes:
        """The embeddings for this request; a repeated idempotency key replays, unbilled."""
        stored = f"embeddings:{key}" if key else None  # apart from the chat answers' keys
        with self._lock:
            if stored and stored in self._replies:
                return self._replies[stored]
        data = json.dumps(embeddings.reply(request)).encode()  # the work, outside the lock
        with self._lock:
            if stored and stored in self._replies:  # a twin request finished first
                return self._replies[stored]
            self.billed_tokens += request.tokens
            self.billed_requests += 1
            if stored:
                self._replies[stored] = data
            return data

    def _record(self, handler: Handler, body: Any | None, fault: str) -> None:
        with self._lock:
            self._attempts.append(Attempt(handler.arrived, handler.path, dict(handler.headers.items()), body, fault))

    def _sample_latency(self) -> float:
        with self._lock:
            return self.latency.sample(self._rng)


class _HTTPServer(ThreadingHTTPServer):
    """Handler threads are daemons (a stuck one must not keep the interpreter alive), so
    ``server_close`` does not join them: ``join_handlers`` does, with a time limit."""

    daemon_threads = True
    fake: FakeLLMServer

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.open_sockets: set = set()
        self.handlers: list[threading.Thread] = []
        self.sockets_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def process_request(self, request: socket.socket, client_address: Any) -> None:
        handler = threading.Thread(target=self.process_request_thread, args=(request, client_address), daemon=True)
        with self.sockets_lock:
            self.open_sockets.add(request)
            self.handlers = [t for t in self.handlers if t.is_alive()]
            self.handlers.append(handler)
        handler.start()

    def join_handlers(self, within_s: float = 5.0) -> None:
        end = time.monotonic() + within_s
        with self.sockets_lock:
            handlers = list(self.handlers)
        for handler in handlers:
            handler.join(max(0.0, end - time.monotonic()))

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
        if not isinstance(sys.exc_info()[1], OSError):
            log.exception("fake server error")
