"""The command line: ``python -m week04_lib {chat,checklist,serve,logs} ...``.

Taught in notebook 05. Errors are one line on stderr, never a traceback, and the exit
status says what kind of failure it was, so scripts can branch on it:

    0 ok   1 checklist row failed   2 bad input or usage
    3 permanent error (key, model, request)   4 transient error (gave up after retries)
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

from . import errors
from .config import ClientConfig, Timeouts

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PERMANENT, EXIT_TRANSIENT = 0, 1, 2, 3, 4
CONFIGURED_BY = ("WEEK04_BASE_URL", "OPENAI_BASE_URL", "WEEK04_API_KEY", "OPENAI_API_KEY")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m week04_lib",
        description="A reliable, cheap LLM client and its fake server (week 4 of LLM API Engineering).",
        epilog="Exit status: 0 ok, 1 a checklist row failed, 2 bad input, 3 permanent error "
        "(key, model, request), 4 transient error after retries. Settings not given as flags "
        "come from WEEK04_* variables (see README).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{chat,checklist,serve,logs}")

    chat = commands.add_parser("chat", help="send one prompt and print the answer")
    chat.add_argument("prompt", help="the user message")
    chat.add_argument("--system", help="a system prompt")
    chat.add_argument("--model", help="model (default: WEEK04_MODEL or gpt-4o-mini)")
    chat.add_argument("--fallback", help="comma-separated fallback models")
    chat.add_argument("--base-url", help="an OpenAI-compatible /v1 URL (default: WEEK04_BASE_URL)")
    chat.add_argument(
        "--preset",
        choices=["quick_chat", "standard", "long_form", "embedding"],
        help="timeout preset (connect/read/total)",
    )
    chat.add_argument("--connect", type=float, metavar="S", help="connect timeout, seconds")
    chat.add_argument("--read", type=float, metavar="S", help="read timeout, seconds")
    chat.add_argument("--total", type=float, metavar="S", help="total deadline, seconds")
    chat.add_argument("--attempts", type=int, metavar="N", help="attempts per model")
    chat.add_argument("--cache", help="memory or sqlite:PATH")
    chat.add_argument("--log", metavar="PATH", help="append JSON-lines logs to PATH")
    chat.add_argument("--temperature", type=float, default=0.0, help="default 0 (cacheable)")
    chat.add_argument("--max-tokens", type=int, help="cap on the answer's tokens")
    chat.add_argument("--json", action="store_true", help="print the whole result as JSON")

    commands.add_parser("checklist", help="run the forced-failure checklist against the embedded fake server")
    commands.add_parser("serve", help="run the fake server (see: serve --help)", add_help=False)

    logs = commands.add_parser("logs", help="read a JSON-lines log")
    logs_commands = logs.add_subparsers(dest="logs_command", required=True)
    summarize = logs_commands.add_parser("summarize", help="calls, latency percentiles, errors, cost")
    summarize.add_argument("path")
    summarize.add_argument("--json", action="store_true")
    return parser


def _config(args: argparse.Namespace) -> ClientConfig:
    overrides = {
        name: value
        for name, value in (
            ("base_url", args.base_url),
            ("model", args.model),
            ("fallback_models", args.fallback),
            ("max_attempts", args.attempts),
            ("cache", args.cache),
            ("log_path", args.log),
        )
        if value is not None
    }
    config = ClientConfig.from_env(**overrides)
    timeouts = Timeouts.preset(args.preset) if args.preset else config.timeouts
    parts = {k: v for k, v in (("connect", args.connect), ("read", args.read), ("total", args.total)) if v is not None}
    return replace(config, timeouts=replace(timeouts, **parts))


def _chat(args: argparse.Namespace) -> int:
    from .client import LLMClient
    from .fakeserver import FakeLLMServer

    with ExitStack() as stack:
        if args.base_url is None and not any(os.environ.get(name) for name in CONFIGURED_BY):
            server = stack.enter_context(FakeLLMServer(latency=(0.2, 1.0)))
            args.base_url = server.url
            if args.model is None and not os.environ.get("WEEK04_MODEL"):
                args.model = "fake-mini"
            print(
                f"(no WEEK04_BASE_URL or API key set: using an embedded fake server at {server.url})", file=sys.stderr
            )
        client = stack.enter_context(LLMClient(_config(args)))
        messages = ([{"role": "system", "content": args.system}] if args.system else []) + [
            {"role": "user", "content": args.prompt}
        ]
        params = {"temperature": args.temperature}
        if args.max_tokens is not None:
            params["max_tokens"] = args.max_tokens
        result = client.chat(messages, **params)
    if args.json:
        shown = {k: v for k, v in vars(result).items() if k != "raw"}
        shown["usage"] = vars(result.usage)
        print(json.dumps(shown, indent=2))
    else:
        print(result.text)
        cost = "cost unknown" if result.cost_usd is None else f"${result.cost_usd:.6f}"
        print(
            f"[{result.model}, {result.attempts} attempt(s), {result.latency_s:.2f}s, "
            f"{result.usage.total_tokens} tokens, {cost}"
            f"{', cached' if result.cached else ''}{', stale' if result.stale else ''}]",
            file=sys.stderr,
        )
    return EXIT_OK


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
        return _chat(args)
    except (errors.InvalidRequest, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except errors.PermanentError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_PERMANENT
    except errors.LLMError as exc:
        print(f"error: {type(exc).__name__}: {exc} (gave up; try again later)", file=sys.stderr)
        return EXIT_TRANSIENT
    except KeyboardInterrupt:
        return 130
