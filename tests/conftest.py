import gc
import os
import threading

import pytest

HELLO = [{"role": "user", "content": "hello"}]


def open_sockets() -> int:
    """How many sockets this process holds open (Linux /proc)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                count += 1
        except OSError:
            pass
    return count


@pytest.fixture
def no_leaks():
    """Assert the test leaves no thread and no socket behind."""
    gc.collect()  # sockets dropped by earlier tests are not this test's
    threads, sockets = threading.active_count(), open_sockets()
    yield
    gc.collect()
    assert threading.active_count() == threads, [t.name for t in threading.enumerate()]
    assert open_sockets() == sockets
