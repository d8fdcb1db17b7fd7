"""The fake server's command line: ``python -m week04_lib.fakeserver --port 8000 --script 503,ok``."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from .encoding import CODINGS
from .latency import DEFAULT_LATENCY
from .server import FakeLLMServer


def _parse_mix(text: str) -> dict[str, float]:
    mix = {}
    for part in text.split(","):
        name, _, weight = part.rpartition("=")
        mix[name.strip()] = float(weight)
    return mix


def _parse_latency(text: str) -> float | tuple[float, float]:
    parts = [float(p) for p in text.split(",")]
    return parts[0] if len(parts) == 1 else (parts[0], parts[1])


def _port(text: str) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535, got {port}")
    return port


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m week04_lib.fakeserver",
        description="Serve a fake OpenAI-compatible API that misbehaves on request.",
    )
    parser.add_argument("--port", type=_port, default=8000, help="port on 127.0.0.1 (0 = any free port)")
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
    parser.add_argument(
        "--compress", choices=sorted(CODINGS), help="compress bodies for clients whose Accept-Encoding lists it"
    )
    parser.add_argument(
        "--strict-request-id", action="store_true", help="answer 400 (empty body) to an X-Request-ID that is not a UUID"
    )
    parser.add_argument(
        "--chunk-interval", type=float, default=0.0, help="seconds between a streamed answer's events (default 0)"
    )
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
            compress=args.compress,
            strict_request_id=args.strict_request_id,
            chunk_interval_s=args.chunk_interval,
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
