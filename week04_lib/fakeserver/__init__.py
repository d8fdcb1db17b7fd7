r"""A real HTTP server on 127.0.0.1 that speaks OpenAI chat completions (plain and
streamed) and embeddings, and misbehaves on request: hangs, trickles, resets, 429s, 5xx,
broken JSON, HTML, empty bodies, the wire's odder tricks (slow headers, endless
trailers, redirects, huge or deeply nested bodies, nonsense usage, compressed bodies)
and broken streams (stalled, cut, garbled, silent, kept alive forever).

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

Streaming (``POST /v1/chat/completions`` with ``"stream": true``): a chunked 200,
``Content-Type: text/event-stream; charset=utf-8``, ``Cache-Control: no-cache``, never
compressed. Each event ``data: <json>\n\n`` is its own HTTP chunk: a
``chat.completion.chunk`` with delta ``{"role": "assistant", "content": ""}``, then one
per word (``{"content": "word "}``; together exactly the text a plain request gets, billed
and replayed by Idempotency-Key the same way), then delta ``{}`` with the
``finish_reason``; with ``"stream_options": {"include_usage": true}`` every chunk carries
``"usage": null`` and a last chunk ``"choices": []`` carries the usage; then
``data: [DONE]`` and the last HTTP chunk. The sampled latency passes before the headers
and the first event, then ``chunk_interval_s`` (default 0) between events.

The faults above on a stream: the ones that answer before any work (statuses, redirect,
``insufficient_quota``, ``deep_json``, ``hang``, ``reset``, the broken bodies) as for a
plain request; ``slow:S`` delays the first event by S; ``drop`` bills and closes;
``trickle``, ``header_trickle``, ``body_stall`` and ``chunked_stall`` send the whole event
stream slowly; ``bad_usage:KIND`` puts its nonsense in the usage chunk (``missing``: no
usage chunk); ``huge_body:MB`` streams content deltas of 64 KiB, MB MiB in all. The
stream faults (a request that does not stream gets a normal answer, as ``ok``):

- ``stream_stall:N``: the role chunk and N content chunks, then silence until the server
  stops. ``stream_cut:N``: the same, then a FIN: no last chunk, no ``[DONE]``.
  ``stream_garbage:N``: the role chunk, N content chunks, then a malformed event (JSON cut
  short), then the rest of the stream. An N past the last word means every word.
- ``stream_slow_start:S``: the headers at once, then S s of silence (in place of the
  sampled latency), then the whole stream.
- ``stream_keepalive``: the headers at once, then an SSE comment ``: keep-alive`` every
  0.1 s until the server stops; never a data event, never billed.

Embeddings (``POST /v1/embeddings``): ``{"model", "input": str | [str, ...], "dimensions"
(default 64, at most 4096), "encoding_format": "float" | "base64"}``; the reply's vectors
are unit vectors that depend only on model, text and dimensions (fewer dimensions give
the start of the longer vector, renormalized); ``base64`` is little-endian float32, as
the official ``openai`` package asks for and decodes. Billed by the input's tokens (a
quarter of its characters, at least one a text), which the server's ``tpm`` charges;
Idempotency-Key replays. A bad request (no model, empty input, token arrays, more than
2048 texts, bad dimensions or encoding_format) gets a 400 that names the field. Every
fault applies as for chat, the embeddings JSON as the body (``invalid_json`` and
``empty`` in the embeddings' shape); ``huge_body:MB`` sends the billed embeddings padded
with spaces to MB MiB (still valid JSON), chunked; the stream faults answer normally.
``GET /v1/models`` lists ``EMBEDDING_MODELS`` too.

Server options beyond faults:

- ``compress="gzip" | "deflate"``: when the request's ``Accept-Encoding`` lists that
  coding, every non-empty body goes out compressed with ``Content-Encoding`` ("deflate"
  is the zlib format, as RFC 9110 defines it); otherwise bodies go out as they are.
- ``strict_request_id=True``: like llama-cpp-python's server, a request whose
  ``X-Request-ID`` is not a UUID gets a 400 with an empty body (recorded as
  ``"bad_request_id"``).
- ``chunk_interval_s=0.05``: the pause between a stream's events (default 0).
- ``rpm``/``tpm`` (its own rate limit), ``latency``, ``api_key``, ``seed``, ``models``.

Command line: ``python -m week04_lib.fakeserver --port 8000 --script 503,ok --rpm 60
--compress gzip --strict-request-id --chunk-interval 0.05``.
"""

from __future__ import annotations

from collections.abc import Sequence

from .embeddings import DEFAULT_EMBEDDING_DIMENSIONS, EMBEDDING_MODELS, MAX_EMBEDDING_INPUTS
from .faults import Fault
from .latency import DEFAULT_LATENCY, LatencyModel
from .replies import MODELS, STATUS_TEXT
from .server import Attempt, FakeLLMServer

__all__ = [
    "DEFAULT_EMBEDDING_DIMENSIONS",
    "DEFAULT_LATENCY",
    "EMBEDDING_MODELS",
    "MAX_EMBEDDING_INPUTS",
    "MODELS",
    "STATUS_TEXT",
    "Attempt",
    "FakeLLMServer",
    "Fault",
    "LatencyModel",
    "main",
]


def main(argv: Sequence[str] | None = None) -> int:
    """The command line (``python -m week04_lib.fakeserver``); see ``__main__.py``.

    Imported on call: a package that imports its own ``__main__`` makes ``python -m`` warn.
    """
    from .__main__ import main as command_line

    return command_line(argv)
