"""The toy store (server.py) as a child process of a test: start, stop, kill, control calls."""

import json
import os
import signal
import subprocess
import sys
import threading

import requests

SERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "server.py")


class ToyStoreProcess:
    """``python server.py`` on 127.0.0.1 and a free port, on ``data_dir``; ``url``, ``port``, ``credentials`` from its start line."""

    def __init__(self, data_dir, body_timeout=2.0):
        self.data_dir = str(data_dir)
        self.body_timeout = body_timeout
        self.proc = None
        self.info = {}
        self._log = None

    def start(self, timeout=30):
        os.makedirs(self.data_dir, exist_ok=True)
        self._log = open(os.path.join(self.data_dir, "server.log"), "ab")
        self.proc = subprocess.Popen([sys.executable, SERVER, "--port", "0", "--data-dir", self.data_dir,
                                      "--body-timeout", str(self.body_timeout)],
                                     stdout=subprocess.PIPE, stderr=self._log, stdin=subprocess.DEVNULL)
        line = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not line or not line[0]:
            self.kill()
            raise RuntimeError("the toy store did not start; see %s/server.log" % self.data_dir)
        self.info = json.loads(line[0].decode("utf-8"))
        return self

    @property
    def url(self):
        return self.info["url"]

    @property
    def port(self):
        return int(self.url.rsplit(":", 1)[1])

    @property
    def credentials(self):
        return dict(self.info.get("credentials") or {})

    def control(self, method, what, **kwargs):
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
