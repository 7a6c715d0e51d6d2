"""The toy store (server.py) as a child process of a test: start, stop, kill, restart, control calls."""

import os
import sys

import requests

from imagestore_emulator.process import ServerProcess

HERE = os.path.dirname(os.path.abspath(__file__))
CONTRACT = os.path.dirname(HERE)                                # toystore.* is imported from tests/contract
ROOT = os.path.dirname(os.path.dirname(CONTRACT))               # imagestore_emulator from this checkout


class ToyStoreError(RuntimeError):
    pass


class ToyStoreProcess(ServerProcess):
    """``python -m toystore.server`` on 127.0.0.1, on ``data_dir``; ``url``, ``port``, ``credentials`` from its start line.

    ``kill()`` sends SIGKILL, as a crash would; ``restart()`` starts a new process on the same data dir and, when it is
    free again, the same port (the emulator's ServerProcess)."""

    error = ToyStoreError
    log_name = "server.log"
    what = "the toy store"

    def __init__(self, data_dir, extra_args=(), body_timeout=None, port=0):
        super(ToyStoreProcess, self).__init__(
            data_dir, list(extra_args) + (["--body-timeout", str(body_timeout)] if body_timeout is not None else []), port)

    def command(self):
        return [sys.executable, "-m", "toystore.server", "--port", str(self.port), "--data-dir", self.data_dir] + self.extra_args

    def environment(self):
        return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (CONTRACT, ROOT, os.environ.get("PYTHONPATH")) if p))

    def control(self, method, what, **kwargs):
        kwargs.setdefault("verify", False)              # a test's own self-signed certificate, on loopback
        return requests.request(method, "%s/_control/%s" % (self.url, what), timeout=60, **kwargs)

    def stats(self):
        r = self.control("GET", "stats")
        r.raise_for_status()
        return r.json()
