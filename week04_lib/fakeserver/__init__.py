"""A real HTTP server on 127.0.0.1 that speaks OpenAI chat completions and misbehaves
on request: hangs, trickles, resets, 429s, 5xx, broken JSON, HTML, empty bodies, and
the wire's odder tricks (slow headers, endless trailers, redirects, huge or deeply
nested bodies, nonsense usage, compressed bodies).

Taught in notebook 01, section 1.2, and used by every notebook, test and demo.

    with FakeLLMServer(script=["503", "429:retry-after=1", "ok"]) as srv:
        srv.url            # "http://127.0.0.1:PORT/v1"
        srv.attempts       # every request received: .t .path .headers .body .fault
        srv.billed_tokens  # a repeated Idempotency-Key is replayed, not billed

One fault per request from ``script``, then ``default`` (or a seeded draw from ``mix``).
``model_faults={"big": "503"}`` gives every request for one model its own fault ("the
primary model is down"). Each request's spec is recorded in ``srv.attempts[i].fault``.

Fault names:

- ``ok``; ``slow:S`` (answer after S s); ``hang`` (accept, never answer);
  ``trickle:S`` (headers, then the body one byte every S s); ``reset`` (close with a
  RST, no answer); ``drop`` (do the work and bill it, then close with no answer);
  ``invalid_json``; ``html`` (an HTML error page); ``empty`` (valid JSON, no ``choices``).
- ``header_trickle:S``: the status line and headers, then ``X-Filler-N: x`` header lines
  one every S s (600 of them; ``http.client`` refuses more than 100), then the end of the
  headers and a normal, billed completion. A per-read timeout never fires.
- ``body_stall:S``: headers and the first half of a normal, billed completion, then S s
  of silence, then the rest: a per-read timeout longer than S never fires, and a read
  given the whole budget ends late (notebook 01's ★★★ exercise).
- ``chunked_stall``: a chunked 200 with the completion as one chunk and the last chunk,
  then a trailer that never ends (``X-Trailer-N: x`` every 0.1 s, never the closing blank
  line). A client that waits for the end of the trailer waits forever.
- ``redirect:URL``: ``307 Temporary Redirect`` to URL (everything after the first ':',
  so ``redirect:http://127.0.0.1:9/v1/chat/completions`` works); nothing billed.
- ``huge_body:MB``: a chunked 200 whose content string is MB MiB long (``huge_body:0.5``),
  sent in 64 KiB chunks as fast as the client reads, generated as it goes; billed (never
  replayed by Idempotency-Key).
- ``deep_json`` / ``deep_json:STATUS``: a body (200, or STATUS with ``{"error": ...}``)
  nested 100,000 arrays deep, on which ``json.loads`` raises RecursionError.
- ``bad_usage:KIND``: a normal completion (billed with the real count) whose
  ``usage.prompt_tokens`` and ``usage.total_tokens`` are ``big`` (10**30), ``inf`` (the
  literal ``1e400``), ``negative`` (-5) or ``text`` ("many"), or whose ``usage`` is
  ``missing``; plain ``bad_usage`` means ``big``.
- ``insufficient_quota``: OpenAI's out-of-credit 429 (``"type": "insufficient_quota"``),
  with no Retry-After: waiting does not help.
- a status: 400, 401, 403, 404, 422, 429, 500, 501, 502, 503, 504, 529, with options
  ``:retry-after=N``, ``:retry-after-ms=N`` and ``:x-should-retry=true|false`` (the header
  the official ``openai`` SDK obeys), several at once: ``429:retry-after=2:x-should-retry=false``.

Error bodies are provider-shaped: ``{"error": {"message", "type", "param", "code"}}``.

Server options beyond faults:

- ``compress="gzip" | "deflate"``: when the request's ``Accept-Encoding`` lists that
  coding, every non-empty body goes out compressed with ``Content-Encoding`` ("deflate"
  is the zlib format, as RFC 9110 defines it); otherwise bodies go out as they are.
- ``strict_request_id=True``: like llama-cpp-python's server, a request whose
  ``X-Request-ID`` is not a UUID gets a 400 with an empty body (recorded as
  ``"bad_request_id"``).
- ``rpm``/``tpm`` (its own rate limit), ``latency``, ``api_key``, ``seed``, ``models``.

Command line: ``python -m week04_lib.fakeserver --port 8000 --script 503,ok --rpm 60
--compress gzip --strict-request-id``.
"""

from __future__ import annotations

from collections.abc import Sequence

from .faults import Fault
from .latency import DEFAULT_LATENCY, LatencyModel
from .replies import MODELS, STATUS_TEXT
from .server import Attempt, FakeLLMServer

__all__ = ["DEFAULT_LATENCY", "MODELS", "STATUS_TEXT", "Attempt", "FakeLLMServer", "Fault", "LatencyModel", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """The command line (``python -m week04_lib.fakeserver``); see ``__main__.py``.

    Imported on call: a package that imports its own ``__main__`` makes ``python -m`` warn.
    """
    from .__main__ import main as command_line

    return command_line(argv)
