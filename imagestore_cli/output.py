# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the command line shows while it runs (on stderr) and at the end (on stdout).

The engine tells a reporter how far it is (``_engine.NullReporter`` has the interface). On a terminal, ``Bar`` draws a
tqdm bar with the bytes, the rate and the time left; otherwise ``Lines`` prints what the run does and, every
``interval`` seconds, a line with percent, bytes, rate and time left. Both measure with the collection's ``Meter``,
so they say what a playbook's progress lines say.
"""

import json
import os
import sys
import threading
import time

from ansible_collections.imagestore.upload.plugins.module_utils._engine import NullReporter
from ansible_collections.imagestore.upload.plugins.module_utils._progress import Meter, describe, human_bytes, human_duration
from ansible_collections.imagestore.upload.plugins.module_utils._wait import Ticker

from imagestore_cli.docs import replace_module_names

PROG = "imagestore-upload"


class Quiet(NullReporter):
    """Says nothing while the run goes on (--quiet, --json)."""

    def note(self, text):
        pass

    def close(self):
        pass


class _Measured(Quiet):
    def __init__(self, stream):
        self.stream = stream
        self.meter = Meter()
        self.wall_start = time.time()
        self.current = "starting"
        self.lock = threading.Lock()

    def record(self):
        record = dict(self.meter.snapshot(), phase=self.current, state="running", started=self.wall_start)
        return record

    def held(self, n):
        self.meter.held(n)

    def advance(self, n):
        self.meter.advance(n)

    def start(self, total_bytes, done_bytes=0):
        self.meter.start(total_bytes, done_bytes)

    def _print(self, text):
        with self.lock:
            self.stream.write(text + "\n")
            self.stream.flush()


class Lines(_Measured):
    """Plain lines for logs (CI, a pipe): each phase once, and every ``interval`` seconds how far the upload is."""

    def __init__(self, stream, interval):
        super(Lines, self).__init__(stream)
        self.interval = interval
        self.ticker = Ticker(interval, self._line, name="imagestore-progress-lines", join_timeout=2).start() if interval else None

    def phase(self, text):
        if text != self.current:
            self.current = text
            self._print("%s: %s" % (PROG, text))

    def start(self, total_bytes, done_bytes=0):
        super(Lines, self).start(total_bytes, done_bytes)
        self._print("%s: %s to send" % (PROG, human_bytes(total_bytes)))

    def held(self, n):
        super(Lines, self).held(n)
        self._print("%s: resuming: the store holds %s of it already" % (PROG, human_bytes(n)))

    def note(self, text):
        self._print("%s: %s" % (PROG, text))

    def _line(self):
        self._print("%s: %s" % (PROG, describe(self.record())))

    def close(self):
        if self.ticker is not None:
            self.ticker.stop()


def _tqdm_class():
    from tqdm import tqdm

    class Tqdm(tqdm):
        """tqdm whose line ends with our words (bytes, rate, time left from the collection's meter)."""
        stats = ""

        @property
        def format_dict(self):
            d = super(Tqdm, self).format_dict
            d["stats"] = self.stats
            return d

    return Tqdm


def _columns(stream):
    """The terminal's width, or None when it says 0 (a pseudo-terminal nobody sized: tqdm would draw nothing there, so
    the bar is then 100 columns wide on a screen of 24 lines)."""
    try:
        return os.get_terminal_size(stream.fileno()).columns or None
    except (AttributeError, ValueError, OSError):
        return None


class Bar(_Measured):
    """A progress bar on a terminal (tqdm): bytes done of the total, the rate and the time left (our meter's)."""

    FORMAT = "{desc}{percentage:5.1f}% |{bar}| {stats}"

    def __init__(self, stream):
        super(Bar, self).__init__(stream)
        self.bar = None
        self.status = False

    def phase(self, text):
        self.current = text
        with self.lock:
            if self.bar is not None:
                self.bar.set_description_str(_short(text).ljust(11), refresh=True)
            else:
                self.stream.write("\r\x1b[K%s..." % text)
                self.stream.flush()
                self.status = True

    def start(self, total_bytes, done_bytes=0):
        super(Bar, self).start(total_bytes, done_bytes)
        columns = _columns(self.stream)
        with self.lock:
            if self.status:
                self.stream.write("\r\x1b[K")
                self.status = False
            self.bar = _tqdm_class()(total=total_bytes, initial=done_bytes, file=self.stream, bar_format=self.FORMAT,
                                     dynamic_ncols=columns is not None, ncols=None if columns else 100,
                                     nrows=None if columns else 24, mininterval=0.2, desc=_short(self.current).ljust(11),
                                     leave=True)
            self.bar.stats = self._stats()
            self.bar.refresh()

    def held(self, n):
        super(Bar, self).held(n)
        self._update(n)

    def advance(self, n):
        super(Bar, self).advance(n)
        self._update(n)

    def _update(self, n):
        with self.lock:
            if self.bar is not None:
                self.bar.stats = self._stats()
                self.bar.update(n)

    def _stats(self):
        snap = self.meter.snapshot()
        rate = "%s/s" % human_bytes(snap["rate"]) if snap["rate"] else "-- B/s"
        eta = human_duration(snap["eta"]) if snap["eta"] is not None else "--"
        return "%s of %s, %s, %s left" % (human_bytes(snap["done"]), human_bytes(snap["size"]), rate, eta)

    def note(self, text):
        with self.lock:
            if self.bar is not None:
                self.bar.write(text, file=self.stream)
            else:
                self.stream.write("\r\x1b[K%s\n" % text)
                self.status = False
            self.stream.flush()

    def close(self):
        with self.lock:
            if self.bar is not None:
                self.bar.stats = self._stats()
                self.bar.close()
                self.bar = None
            if self.status:
                self.stream.write("\r\x1b[K")
                self.stream.flush()
                self.status = False


def _short(text):
    """The first words of a phase, for the bar's description (the destination is in the final message)."""
    for word in ("uploading", "committing", "waiting", "computing", "looking"):
        if text.startswith(word):
            return word
    return text.split(" ")[0]


def reporter_for(stream, quiet, interval, isatty=None):
    if quiet:
        return Quiet()
    if isatty if isatty is not None else stream.isatty():
        return Bar(stream)
    return Lines(stream, interval)


def print_result(result, command, as_json, quiet, show_diff=False, out=None):
    """The result on stdout: the module's JSON with --json, else its message (and the sessions of info)."""
    out = out or sys.stdout
    if as_json:
        out.write(json.dumps(result, indent=2, sort_keys=True, default=str) + "\n")
        return
    if quiet:
        return
    if command == "info" and not result.get("failed"):
        sessions = result.get("sessions") or []
        if not sessions:
            out.write("no upload session\n")
        for s in sessions:
            size = "%s of %s" % (human_bytes(s.get("bytes_received")), human_bytes(s.get("size"))) if s.get("size") else "size unknown"
            out.write("%s  %s  %s%%  %s  %s\n" % (s.get("id"), s.get("state"), s.get("progress"), size,
                                                  ", ".join("%s=%s" % kv for kv in sorted((s.get("destination") or {}).items()))))
        return
    if result.get("failed"):
        return
    out.write(replace_module_names(result.get("msg") or "") + "\n")
    diff = result.get("diff")
    if diff and show_diff:
        out.write("before: %s\nafter:  %s\n" % (json.dumps(diff.get("before"), sort_keys=True),
                                              json.dumps(diff.get("after"), sort_keys=True)))
    out.flush()
