"""The command line: ``python -m week04_lib {chat,embed,checklist,serve,logs} ...``.

Taught in notebook 05. Errors are one line on stderr, never a traceback, and the exit
status says what kind of failure it was, so scripts can branch on it:

    0 ok   1 checklist row failed   2 bad input or usage
    3 permanent error (key, model, request)   4 transient error (gave up after retries;
    also a stream cut short, whose text so far stays printed)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TextIO

from . import errors
from .config import ENV_VARIABLES, ClientConfig, Timeouts, check_file_path

if TYPE_CHECKING:
    from .client import ChatResult, LLMClient

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PERMANENT, EXIT_TRANSIENT = 0, 1, 2, 3, 4
CONFIGURED_BY = ("WEEK04_BASE_URL", "OPENAI_BASE_URL", "WEEK04_API_KEY", "OPENAI_API_KEY")
# ClientConfig field -> the flag's dest; a command without that flag leaves the field alone
FLAGS = {
    "base_url": "base_url",
    "model": "model",
    "fallback_models": "fallback",
    "embedding_model": "embedding_model",
    "max_attempts": "attempts",
    "cache": "cache",
    "log_path": "log",
}
TIMEOUT_FLAGS = ("connect", "read", "total", "first_token", "idle")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m week04_lib",
        description="A reliable, cheap LLM client and its fake server (week 4 of LLM API Engineering).",
        epilog="Exit status: 0 ok, 1 a checklist row failed, 2 bad input, 3 permanent error "
        "(key, model, request), 4 transient error after retries (or a stream cut short). Settings not "
        "given as flags come from WEEK04_* variables (see README).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{chat,embed,checklist,serve,logs}")
    shared = argparse.ArgumentParser(add_help=False)  # what every calling command takes
    shared.add_argument("--base-url", help="an OpenAI-compatible /v1 URL (default: WEEK04_BASE_URL)")
    shared.add_argument("--cache", help="memory or sqlite:PATH")
    shared.add_argument("--log", metavar="PATH", help="append JSON-lines logs to PATH")

    chat = commands.add_parser("chat", parents=[shared], help="send one prompt and print the answer")
    chat.add_argument("prompt", help="the user message")
    chat.add_argument("--system", help="a system prompt")
    chat.add_argument("--model", help="model (default: WEEK04_MODEL or gpt-4o-mini)")
    chat.add_argument("--fallback", help="comma-separated fallback models")
    chat.add_argument(
        "--preset",
        choices=["quick_chat", "standard", "long_form", "embedding"],
        help="timeout preset (connect/read/total)",
    )
    chat.add_argument("--connect", type=float, metavar="S", help="connect timeout, seconds")
    chat.add_argument("--read", type=float, metavar="S", help="read timeout, seconds")
    chat.add_argument("--total", type=float, metavar="S", help="total deadline, seconds")
    chat.add_argument("--attempts", type=int, metavar="N", help="attempts per model")
    chat.add_argument("--temperature", type=float, default=0.0, help="default 0 (cacheable)")
    chat.add_argument("--max-tokens", type=int, help="cap on the answer's tokens")
    chat.add_argument("--json", action="store_true", help="print the whole result as JSON")
    chat.add_argument("--stream", action="store_true", help="print the answer as it arrives")
    chat.add_argument("--first-token", type=float, metavar="S", help="with --stream: longest wait for the first token")
    chat.add_argument("--idle", type=float, metavar="S", help="with --stream: longest silence between chunks")

    embed = commands.add_parser("embed", parents=[shared], help="embed each line of a file, print JSON lines")
    embed.add_argument("file", help="one text per line; - for stdin")
    embed.add_argument(
        "--model",
        dest="embedding_model",
        help="embedding model (default: WEEK04_EMBEDDING_MODEL or text-embedding-3-small)",
    )
    embed.add_argument("--dimensions", type=int, metavar="N", help="shorter vectors, if the model can")
    embed.add_argument("--out", metavar="PATH", help="write the JSON lines here instead of stdout")
    embed.add_argument("--max-batch", type=int, default=256, metavar="N", help="texts per request (default 256)")
    embed.add_argument("--skip-blank", action="store_true", help="skip blank lines instead of failing on them")

    commands.add_parser("checklist", help="run the forced-failure checklist against the embedded fake server")
    commands.add_parser("serve", help="run the fake server (see: serve --help)", add_help=False)

    logs = commands.add_parser("logs", help="read a JSON-lines log")
    logs_commands = logs.add_subparsers(dest="logs_command", required=True)
    summarize = logs_commands.add_parser("summarize", help="calls, latency percentiles, errors, cost")
    summarize.add_argument("path")
    summarize.add_argument("--json", action="store_true")
    return parser


def _config(args: argparse.Namespace) -> ClientConfig:
    """WEEK04_* variables, overridden by whichever flags this command has and was given."""
    given = {name: getattr(args, flag, None) for name, flag in FLAGS.items()}
    config = ClientConfig.from_env(**{name: value for name, value in given.items() if value is not None})
    preset = getattr(args, "preset", None)
    timeouts = Timeouts.preset(preset) if preset else config.timeouts
    parts = {name: getattr(args, name) for name in TIMEOUT_FLAGS if getattr(args, name, None) is not None}
    return replace(config, timeouts=replace(timeouts, **parts))


def _open_client(stack: ExitStack, args: argparse.Namespace, model_field: str, fake_model: str) -> LLMClient:
    """The configured client; with nothing configured, one talking to an embedded fake
    server (and its ``fake_model``, unless a model was chosen)."""
    from .client import LLMClient
    from .fakeserver import FakeLLMServer

    if args.base_url is None and not any(os.environ.get(name) for name in CONFIGURED_BY):
        server = stack.enter_context(FakeLLMServer(latency=(0.2, 1.0)))
        args.base_url = server.url
        if getattr(args, FLAGS[model_field]) is None and not os.environ.get(ENV_VARIABLES[model_field][0]):
            setattr(args, FLAGS[model_field], fake_model)
        print(f"(no WEEK04_BASE_URL or API key set: using an embedded fake server at {server.url})", file=sys.stderr)
    return stack.enter_context(LLMClient(_config(args)))


def _chat(args: argparse.Namespace) -> int:
    if not args.stream and (args.first_token is not None or args.idle is not None):
        raise errors.InvalidRequest("--first-token and --idle bound a stream: add --stream, or leave them out")
    ttft_s = None
    with ExitStack() as stack:
        client = _open_client(stack, args, "model", "fake-mini")
        messages = ([{"role": "system", "content": args.system}] if args.system else []) + [
            {"role": "user", "content": args.prompt}
        ]
        params: dict[str, Any] = {"temperature": args.temperature}
        if args.max_tokens is not None:
            params["max_tokens"] = args.max_tokens
        if args.stream:
            # with --json, stdout is one JSON document: the text goes to stderr as it comes
            result, ttft_s = _print_stream(client, messages, params, sys.stderr if args.json else sys.stdout)
        else:
            result = client.chat(messages, **params)
    if args.json:
        shown = {k: v for k, v in vars(result).items() if k != "raw"}
        shown["usage"] = vars(result.usage)
        if args.stream:
            shown["ttft_s"] = ttft_s
        print(json.dumps(shown, indent=2))
    else:
        if not args.stream:
            print(result.text)
        cost = "cost unknown" if result.cost_usd is None else f"${result.cost_usd:.6f}"
        first = "" if ttft_s is None else f"first token {ttft_s:.2f}s, "
        print(
            f"[{result.model}, {result.attempts} attempt(s), {result.latency_s:.2f}s, {first}"
            f"{result.usage.total_tokens} tokens, {cost}"
            f"{', cached' if result.cached else ''}{', stale' if result.stale else ''}]",
            file=sys.stderr,
        )
    return EXIT_OK


def _print_stream(
    client: LLMClient, messages: list[dict[str, str]], params: dict[str, Any], out: TextIO
) -> tuple[ChatResult, float | None]:
    """Print each delta to ``out`` as it arrives, then end the line, even when the stream
    breaks (what was printed stays; the error says it is incomplete)."""
    printed = False
    try:
        with client.stream(messages, **params) as stream:
            for delta in stream:
                print(delta, end="", flush=True, file=out)
                printed = True
    finally:
        if printed:
            print(flush=True, file=out)
    return stream.result, stream.ttft_s


def _embed(args: argparse.Namespace) -> int:
    lines = _numbered_texts(args.file, args.skip_blank)
    if args.out is not None:
        check_file_path(args.out, "--out")  # before anything is sent (and paid for)
    params = {} if args.dimensions is None else {"dimensions": args.dimensions}
    with ExitStack() as stack:
        client = _open_client(stack, args, "embedding_model", "fake-embed")
        texts = [text for _, text in lines]
        emb = client.embed(texts, max_batch=args.max_batch, **params)
    with ExitStack() as stack:
        out: TextIO = sys.stdout if args.out is None else stack.enter_context(open(args.out, "w", encoding="utf-8"))
        for (number, text), vector in zip(lines, emb.vectors, strict=True):
            out.write(json.dumps({"line": number, "text": text, "embedding": vector}, ensure_ascii=False) + "\n")
    sent = len({text for text, cached in zip(texts, emb.cached, strict=True) if not cached})  # each text goes once
    tokens = f"{emb.usage.prompt_tokens} tokens" if emb.usage.known else "tokens unknown"
    cost = "cost unknown" if emb.cost_usd is None else f"${emb.cost_usd:.8f}"  # cents per million tokens
    print(
        f"[{emb.model}, {len(texts)} texts, {sent} sent, {sum(emb.cached)} from cache, {tokens}, {cost}, "
        f"{emb.attempts} attempt(s), {emb.latency_s:.2f}s]",
        file=sys.stderr,
    )
    return EXIT_OK


def _numbered_texts(path: str, skip_blank: bool) -> list[tuple[int, str]]:
    """(line number, text) for each line of ``path`` (``-``: stdin). A blank line is an
    error unless ``skip_blank``: silently dropping one would shift the output."""
    name = "stdin" if path == "-" else path
    try:
        if path == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(path, "rb") as f:
                data = f.read()
        text = data.decode("utf-8-sig")
    except FileNotFoundError:
        raise errors.InvalidRequest(f"no file at {path}") from None
    except UnicodeDecodeError as exc:
        raise errors.InvalidRequest(f"{name} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise errors.InvalidRequest(f"cannot read {name}: {exc.strerror or exc}") from None
    # only line ends split (str.splitlines would also split at \f or U+2028, shifting the numbers)
    raw = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if raw[-1] == "":  # the last line's own line end
        raw.pop()
    blank = [n for n, text in enumerate(raw, 1) if not text.strip()]
    if blank and not skip_blank:
        more = f" (and {len(blank) - 1} more)" if len(blank) > 1 else ""
        raise errors.InvalidRequest(
            f"line {blank[0]} of {name} is blank{more}: remove it, or pass --skip-blank to leave blank lines out"
        )
    lines = [(n, text) for n, text in enumerate(raw, 1) if text.strip()]
    if not lines:
        raise errors.InvalidRequest(f"{name} has no text to embed: one text per line")
    return lines


def _logs(args: argparse.Namespace) -> int:
    from .logs import format_summary, read_logs, summarize

    if not os.path.isfile(args.path):
        raise errors.InvalidRequest(
            f"no log file at {args.path}" + (" (a directory)" if os.path.isdir(args.path) else "")
        )
    summary = summarize(read_logs(args.path))
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:  # the fake server has its own flags
        from .fakeserver import main as serve

        return serve(argv[1:])
    args = _parser().parse_args(argv)
    with warnings.catch_warnings(record=True) as said:  # one line each, not Python's two
        warnings.simplefilter("default")
        code = _run(args)
    for warning in said:
        print(f"warning: {warning.message}", file=sys.stderr)
    return code


def _run(args: argparse.Namespace) -> int:
    try:
        if args.command == "checklist":
            from .checklist import main as checklist

            return checklist([])
        if args.command == "logs":
            return _logs(args)
        if args.command == "embed":
            return _embed(args)
        return _chat(args)
    except (errors.InvalidRequest, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except errors.PermanentError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_PERMANENT
    except errors.StreamInterrupted as exc:
        print(f"error: {type(exc).__name__}: {exc} (the answer above is incomplete)", file=sys.stderr)
        return EXIT_TRANSIENT
    except errors.LLMError as exc:
        print(f"error: {type(exc).__name__}: {exc} (gave up; try again later)", file=sys.stderr)
        return EXIT_TRANSIENT
    except KeyboardInterrupt:
        return 130
