"""Control of an emulator child process: start, stop, kill, restart on the same data, read back, stats.

Used by the pytest plugin, the demo and the benchmark; needs only requests."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from urllib.parse import quote

import requests


class EmulatorError(RuntimeError):
    pass


class ServerProcess:
    """A local server in a child process that prints one JSON line (its ``url``, ``credentials``) once it listens.

    ``start()`` reads that line; ``restart()`` starts a new process on the same data dir (and the same port when it is
    free again); ``kill()`` sends SIGKILL, as a crash would. A subclass says the command (``command()``), the log file
    and the environment."""

    error = RuntimeError
    log_name = "server.log"
    what = "the server"

    def __init__(self, data_dir, extra_args=(), port=0, env=None):
        self.data_dir = str(data_dir)
        self.extra_args = list(extra_args)
        self.port = port
        self.env = env
        self.proc = None
        self.info = {}
        self._log = None

    def command(self):
        raise NotImplementedError

    def environment(self):
        return dict(self.env if self.env is not None else os.environ)

    # -- life cycle ----------------------------------------------------------------------------
    def start(self, timeout=30):
        os.makedirs(self.data_dir, exist_ok=True)
        self._log = open(os.path.join(self.data_dir, self.log_name), "ab")
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.PIPE, stderr=self._log, stdin=subprocess.DEVNULL,
                                     env=self.environment())
        line = _readline_with_timeout(self.proc.stdout, timeout)
        if not line:
            code = self.proc.poll()
            self.kill()
            raise self.error("%s did not start (exit code %s); see %s/%s" % (self.what, code, self.data_dir, self.log_name))
        self.info = json.loads(line)
        self.port = int(self.info["url"].rsplit(":", 1)[1])
        return self

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

    def restart(self, timeout=30):
        """A new process on the same data (after stop() or kill()); the same port once the old one let it go."""
        self.stop()
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.start()
            except self.error:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def _close(self):
        if self.proc is not None and self.proc.stdout:
            self.proc.stdout.close()
        if self._log:
            self._log.close()
            self._log = None
        self.proc = None

    @property
    def url(self):
        return self.info["url"]

    @property
    def credentials(self):
        return dict(self.info.get("credentials") or {})


class EmulatorProcess(ServerProcess):
    """``python -m imagestore_emulator`` in a child process, on 127.0.0.1 and a free port (log: emulator.stderr.log)."""

    error = EmulatorError
    log_name = "emulator.stderr.log"
    what = "the emulator"

    def __init__(self, data_dir, extra_args=(), python=sys.executable, port=0, env=None):
        super(EmulatorProcess, self).__init__(data_dir, extra_args, port, env)
        self.python = python

    def command(self):
        return [self.python, "-m", "imagestore_emulator", "--host", "127.0.0.1", "--port", str(self.port),
                "--data-dir", self.data_dir] + self.extra_args

    def environment(self):
        env = super(EmulatorProcess, self).environment()
        # the child imports this very copy of the emulator, installed or not
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
        return env

    # -- what tests use ------------------------------------------------------------------------
    def control(self, method, path, **kwargs):
        r = requests.request(method, "%s/_emulator/%s" % (self.url, path.lstrip("/")), timeout=60, **kwargs)
        return r

    def health(self):
        return self.control("GET", "health").json()

    def reset(self):
        self.control("POST", "reset").raise_for_status()

    def configure(self, **settings):
        r = self.control("POST", "config", json=settings)
        r.raise_for_status()
        return r.json()

    def stats(self, provider):
        return self.control("GET", "%s/stats" % provider).json()

    def readback_path(self, provider, *parts):
        """The control path that returns stored bytes (see DESIGN.md)."""
        if provider == "servicefabric":
            return "servicefabric/content/%s" % quote(parts[0])
        if provider == "vsphere":
            return "vsphere/items/%s/files/%s" % (quote(parts[0], safe=""), quote(parts[1], safe=""))
        if provider == "zstack":
            return "zstack/images/%s/content" % quote(parts[0], safe="")
        raise ValueError(provider)

    def stored_sha256(self, provider, *parts):
        """SHA-256 of what the emulator stored, or None when nothing is there (streamed, any size)."""
        r = requests.get("%s/_emulator/%s" % (self.url, self.readback_path(provider, *parts)), stream=True, timeout=120)
        if r.status_code == 404:
            return None
        r.raise_for_status()
        h = hashlib.sha256()
        for block in r.iter_content(1024 * 1024):
            h.update(block)
        return h.hexdigest()

    def stored_bytes(self, provider, *parts):
        r = self.control("GET", self.readback_path(provider, *parts))
        return None if r.status_code == 404 else r.content


def _readline_with_timeout(stream, timeout):
    result = []
    reader = threading.Thread(target=lambda: result.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return result[0].decode("utf-8") if result else ""
