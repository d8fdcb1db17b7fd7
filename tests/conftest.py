import gc
import io
import logging
import os
import subprocess
import sys
import threading

import pytest

HELLO = [{"role": "user", "content": "hello"}]


def socket_inodes() -> set[str]:
    """The sockets this process holds open (Linux /proc), by inode."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:"):
            found.add(target)
    return found


def open_sockets() -> int:
    """How many sockets this process holds open."""
    return len(socket_inodes())


@pytest.fixture
def no_leaks():
    """Assert the test leaves no thread and no socket behind (ones that earlier tests
    left and that end meanwhile are not this test's business)."""
    gc.collect()  # sockets dropped by earlier tests are not this test's
    threads, sockets = set(threading.enumerate()), socket_inodes()
    yield
    gc.collect()
    assert not [t for t in threading.enumerate() if t not in threads], [t.name for t in threading.enumerate()]
    assert not socket_inodes() - sockets


@pytest.fixture(scope="session")
def redis_server():
    """One real redis-server per test worker (tests/redis_server.py)."""
    from week04_lib.shared.server import RedisServer

    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server):
    """The session's Redis, emptied for this test."""
    with redis_server.client() as client:
        client.flushall()
    return redis_server.url


@pytest.fixture(autouse=True, scope="module")
def frozen_heap():
    """Before each test file, collect the garbage, then hide what is left (mostly imported
    modules: numpy, pandas, openai, ...) from the garbage collector: each later
    ``gc.collect()`` (two per ``no_leaks`` test, plus Python's own full collections) then
    scans only what this file's tests made, a few ms instead of ~150 ms. What an earlier
    file dropped is collected before the freeze, and nothing a test makes is frozen while
    its file runs, so ``no_leaks`` sees exactly the sockets and threads it saw before."""
    gc.collect()
    gc.freeze()


@pytest.fixture
def run_cli(monkeypatch, capsys):
    """``run_cli(*args, stdin=None, **env)``: what ``python -m week04_lib ARGS`` would do,
    run in this process (``week04_lib.cli.main``), as a ``CompletedProcess``: the exit
    status ``sys.exit`` would give, and the captured stdout and stderr. No ``WEEK04_*`` or
    ``OPENAI_*`` variable but ``env``; ``stdin`` (bytes) becomes ``sys.stdin``; the root
    logger has no handler, as in a fresh process, so a warning logged reaches stderr
    (Python's last-resort handler) and counts against "one line on stderr". Saves the
    interpreter start and imports, ~0.5 s a call; tests/test_cli.py keeps real ones."""
    from week04_lib.cli import main

    def run(*args: str, stdin: bytes | None = None, **env: str) -> subprocess.CompletedProcess:
        capsys.readouterr()  # what the test printed before is not the command's
        root = logging.getLogger()
        with monkeypatch.context() as patch:
            for name in [n for n in os.environ if n.startswith(("WEEK04_", "OPENAI_"))]:
                patch.delenv(name)
            for name, value in env.items():
                patch.setenv(name, value)
            if stdin is not None:
                patch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8"))
            patch.setattr(root, "handlers", [])
            try:
                code = main(list(args))
            except SystemExit as exit_:  # argparse: --help, a usage error
                code = exit_.code
        out, err = capsys.readouterr()
        code = 0 if code is None else code
        return subprocess.CompletedProcess(["python", "-m", "week04_lib", *args], code, out, err)

    return run
