# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How far an upload is, for people (private): a meter (bytes done, rate over the last seconds, time left), the words
and numbers of a progress line, and the progress file a module run keeps for the action plugins.

The engine tells a reporter (``_engine.NullReporter`` has the interface) what it does; ``ProgressFile`` is the
reporter of a module run whose action plugin asked for one (``IMAGESTORE_PROGRESS_FILE`` in the module's
environment): it keeps one small JSON record, replaced atomically at most once a second and at every phase, which
``plugins/action/image_upload.py`` and ``plugins/action/upload_progress.py`` read and print. The command line
(``imagestore_cli``) draws its bar and lines from the same meter.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import threading
import time
from collections import deque

from ansible_collections.imagestore.upload.plugins.module_utils._options import redact_endpoint

#: the progress file of this module run (set by the action plugin in the module's environment)
PROGRESS_FILE_ENV = "IMAGESTORE_PROGRESS_FILE"
#: where the action plugins keep progress files (default ~/.cache/imagestore-upload/progress)
PROGRESS_DIR_ENV = "IMAGESTORE_PROGRESS_DIR"
#: seconds between two writes of the progress file while bytes go out
WRITE_EVERY = 1.0
#: the rate is measured over this many seconds
RATE_WINDOW = 20.0
RUNNING, DONE, FAILED = "running", "done", "failed"
#: result keys the progress file keeps of the outcome (the module's result has them all)
OUTCOME_KEYS = ("changed", "failed", "msg", "destination", "size", "bytes_sent", "resumed", "session_id", "sha256",
                "would_send", "elapsed", "session_cleanup", "status", "error_code")


def progress_dir():
    return os.environ.get(PROGRESS_DIR_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "imagestore-upload", "progress")


def human_bytes(n):
    """``512 B``, ``1.5 KiB``, ``420.0 MiB``, ``3.20 GiB``."""
    n = float(n or 0)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            if unit == "B":
                return "%d B" % n
            return ("%.2f %s" if unit in ("GiB", "TiB") else "%.1f %s") % (n, unit)
        n /= 1024.0
    return "%d B" % n  # pragma: no cover


def human_duration(seconds):
    """``7s``, ``1m 05s``, ``2h 03m``."""
    seconds = int(round(max(0.0, float(seconds))))
    if seconds < 60:
        return "%ds" % seconds
    if seconds < 3600:
        return "%dm %02ds" % (seconds // 60, seconds % 60)
    return "%dh %02dm" % (seconds // 3600, (seconds % 3600) // 60)


class Meter:
    """Bytes done of a total (held ones included), the rate of the bytes sent over the last ``window`` seconds, the
    time left at that rate. ``advance`` may be called from several threads."""

    def __init__(self, clock=time.monotonic, window=RATE_WINDOW):
        self.clock = clock
        self.window = window
        self.lock = threading.Lock()
        self.began = clock()
        self.total = None
        self.held_bytes = 0
        self.sent = 0
        self.samples = deque([(self.began, 0)])

    def start(self, total, done=0):
        with self.lock:
            self.total = int(total)
            self.held_bytes += int(done)
            self.samples = deque([(self.clock(), self.sent)])

    def held(self, n):
        with self.lock:
            self.held_bytes += int(n)

    def advance(self, n):
        with self.lock:
            self.sent += int(n)
            now = self.clock()
            if now - self.samples[-1][0] >= 0.2:
                self.samples.append((now, self.sent))
            while len(self.samples) > 2 and now - self.samples[1][0] > self.window:
                self.samples.popleft()

    def done(self):
        total = self.total or 0
        return max(0, min(total, self.held_bytes + self.sent)) if self.total is not None else self.held_bytes + self.sent

    def rate(self):
        """Bytes per second over the window, None until a second of sending has been seen."""
        with self.lock:
            now = self.clock()
            t0, sent0 = self.samples[0]
            if now - t0 < 1.0:
                return None
            return max(0.0, (self.sent - sent0) / (now - t0))

    def snapshot(self):
        """size, done, percent, rate (bytes/s), eta (seconds), elapsed (seconds) as plain numbers (None: not known)."""
        rate = self.rate()
        done = self.done()
        total = self.total
        percent = None if total is None else (100.0 if total == 0 else round(100.0 * done / total, 1))
        eta = None
        if total is not None and rate:
            eta = round((total - done) / rate, 1)
        return {"size": total, "done": done, "percent": percent, "rate": round(rate, 1) if rate is not None else None,
                "eta": eta, "elapsed": round(self.clock() - self.began, 1)}


def where(destination):
    """A few words naming a destination: ``path images/disk.vhd``, ``library images, item ubuntu``."""
    if not destination:
        return ""
    if isinstance(destination, dict):
        return ", ".join("%s %s" % (k, v) for k, v in sorted(destination.items()) if v not in (None, "", [], {}))
    return str(destination)


def describe(record, now=None):
    """One line saying how far the upload of a progress record is."""
    now = time.time() if now is None else now
    state = record.get("state")
    result = record.get("result") or {}
    if state in (DONE, FAILED):
        return "%s: %s" % (state, result.get("msg") or "")
    elapsed = human_duration(now - record["started"]) if record.get("started") is not None else None
    if record.get("percent") is None:
        return "%s (%s)" % (record.get("phase") or "starting", "for %s" % elapsed if elapsed else "running")
    text = "%.1f%% (%s of %s)" % (record["percent"], human_bytes(record.get("done")), human_bytes(record.get("size")))
    if record.get("rate"):
        text += " at %s/s" % human_bytes(record["rate"])
    if record.get("eta") is not None:
        text += ", %s left" % human_duration(record["eta"])
    if record.get("phase") and not str(record["phase"]).startswith("uploading"):
        text += ", %s" % record["phase"]
    return text


def read_record(path):
    """The record of a progress file, or None (not written yet, being replaced, or not ours)."""
    try:
        with open(path) as fh:
            record = json.load(fh)
    except (IOError, OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("version") == 1 else None


class ProgressFile:
    """The engine reporter of a module run: keeps ``path`` up to date (atomic replace, at most every WRITE_EVERY
    seconds while bytes go out, and at every phase and at the end). A failing write never fails the upload: the
    file is then left as it is."""

    def __init__(self, path, provider, endpoint, destination, secrets=(), clock=time.monotonic, wall=time.time):
        self.path = path
        self.secrets = [s for s in secrets if s]
        self.clock = clock
        self.wall = wall
        self.meter = Meter(clock=clock)
        self.lock = threading.Lock()
        self.last_write = None
        self.broken = False
        self.timer = None           # the write of a state that came within WRITE_EVERY of the last one
        self.record = {"version": 1, "pid": os.getpid(), "state": RUNNING, "phase": "starting", "provider": provider,
                       "endpoint": endpoint, "destination": destination, "started": round(wall(), 3), "result": None}
        self._write(force=True)

    def _write(self, force=False):
        with self.lock:
            now = self.clock()
            if self.broken:
                return
            if not force and self.last_write is not None and now - self.last_write < WRITE_EVERY:
                if self.timer is None:      # written soon, even if nothing else happens until then (a slow request)
                    self.timer = threading.Timer(WRITE_EVERY - (now - self.last_write), self._write, kwargs={"force": True})
                    self.timer.daemon = True
                    self.timer.start()
                return
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            self.last_write = now
            record = dict(self.record, **self.meter.snapshot())
            record["updated"] = round(self.wall(), 3)
            tmp = "%s.%d.tmp" % (self.path, os.getpid())
            try:
                with open(tmp, "w") as fh:
                    json.dump(record, fh, sort_keys=True)
                os.rename(tmp, self.path)
            except (IOError, OSError):
                self.broken = True

    def _scrub(self, value):
        if isinstance(value, str):
            for secret in self.secrets:
                value = value.replace(secret, "********")
        return value

    def phase(self, text):
        # not forced: a package of 10,000 files names a phase per file, and a write per phase cost 3 s of a 4.5 s
        # no-op; a phase within WRITE_EVERY of the last write is written by the timer, so none waits longer
        self.record["phase"] = self._scrub(text)
        self._write()

    def start(self, total_bytes, done_bytes=0):
        self.meter.start(total_bytes, done_bytes)
        self._write(force=True)

    def held(self, n):
        self.meter.held(n)
        self._write(force=True)

    def advance(self, n):
        self.meter.advance(n)
        self._write()

    def finish(self, result):
        failed = bool(result.get("failed"))
        self.record["state"] = FAILED if failed else DONE
        self.record["phase"] = "failed" if failed else "done"
        self.record["result"] = dict((k, self._scrub(result[k])) for k in OUTCOME_KEYS if k in result)
        if result.get("destination"):
            self.record["destination"] = result["destination"]
        if not failed and self.meter.total is not None:
            self.meter.held(self.meter.total - self.meter.done())
        self._write(force=True)


def file_reporter(params, cls):
    """The ProgressFile of a module run whose environment names one (IMAGESTORE_PROGRESS_FILE), else None."""
    path = os.environ.get(PROGRESS_FILE_ENV)
    if not path:
        return None
    destination = dict((o, params.get(o)) for o in (cls.required or ()) if params.get(o) not in (None, ""))
    return ProgressFile(path, params.get("provider"), redact_endpoint(params.get("endpoint")), destination,
                        secrets=[params.get("password")])
