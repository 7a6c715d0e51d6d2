"""Every fieldkit test must leave no fieldkit thread running and no socket open behind it."""

import os
import threading
import time

import pytest


def _sockets():
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink("/proc/self/fd/" + fd).startswith("socket:"):
                found.add(fd)
        except OSError:
            pass
    return found


@pytest.fixture(autouse=True)
def leaves_nothing_behind():
    before = _sockets()
    yield
    deadline = time.monotonic() + 2   # a daemon thread may still be between its last check and its end
    while True:
        threads = [t.name for t in threading.enumerate() if t.name.startswith("fieldkit-")]
        sockets = _sockets() - before
        if not threads and not sockets or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert not threads, "fieldkit threads still running: %s" % threads
    assert not sockets, "sockets left open: %s" % sorted(sockets)
