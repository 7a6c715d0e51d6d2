"""The toy store (server.py) as a child process of a test: start, stop, kill, restart, control calls."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import requests

HERE = os.path.dirname(os.path.abspath(__file__))
CONTRACT = os.path.dirname(HERE)                                # toystore.* is imported from tests/contract
ROOT = os.path.dirname(os.path.dirname(CONTRACT))               # imagestore_emulator from this checkout


class ToyStoreError(RuntimeError):
    pass


class ToyStoreProcess:
    """``python -m toystore.server`` on 127.0.0.1, on ``data_dir``; ``url``, ``port``, ``credentials`` from its start line.

    ``kill()`` sends SIGKILL, as a crash would; ``restart()`` starts a new process on the same data dir and, when it is
    free again, the same port."""

    def __init__(self, data_dir, extra_args=(), body_timeout=None, port=0):
        self.data_dir = str(data_dir)
        self.extra_args = list(extra_args) + (["--body-timeout", str(body_timeout)] if body_timeout is not None else [])
        self.port = port
        self.proc = None
        self.info = {}
        self._log = None

    def start(self, timeout=30):
        os.makedirs(self.data_dir, exist_ok=True)
        self._log = open(os.path.join(self.data_dir, "server.log"), "ab")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (CONTRACT, ROOT, os.environ.get("PYTHONPATH")) if p))
        self.proc = subprocess.Popen([sys.executable, "-m", "toystore.server", "--port", str(self.port),
                                      "--data-dir", self.data_dir] + self.extra_args,
                                     stdout=subprocess.PIPE, stderr=self._log, stdin=subprocess.DEVNULL, env=env)
        line = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not line or not line[0]:
            self.kill()
            raise ToyStoreError("the toy store did not start; see %s/server.log" % self.data_dir)
        self.info = json.loads(line[0].decode("utf-8"))
        self.port = self.port or int(self.url.rsplit(":", 1)[1])
        return self

    def restart(self, timeout=30):
        """A new process on the same data (after stop() or kill()); the same port once the old one let it go."""
        self.stop()
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.start()
            except ToyStoreError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    @property
    def url(self):
        return self.info["url"]

    @property
    def credentials(self):
        return dict(self.info.get("credentials") or {})

    def control(self, method, what, **kwargs):
        kwargs.setdefault("verify", False)              # a test's own self-signed certificate, on loopback
        return requests.request(method, "%s/_control/%s" % (self.url, what), timeout=60, **kwargs)

    def stats(self):
        r = self.control("GET", "stats")
        r.raise_for_status()
        return r.json()

    def stop(self, timeout=10):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close()

    def kill(self):
        """SIGKILL: no chance to tidy up, as in a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close()

    def _close(self):
        if self.proc is not None and self.proc.stdout:
            self.proc.stdout.close()
        if self._log:
            self._log.close()
            self._log = None
        self.proc = None
