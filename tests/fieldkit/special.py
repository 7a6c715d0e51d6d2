"""Special files to give an upload as its source: FIFO, UNIX socket, character and block devices.

    with Fifo(tmp_path / "src.fifo", data=b"abc" * 1000) as fifo:       # a writer thread feeds a reader
        run_upload(src=fifo.path)
    with UnixSocketFile(tmp_path / "src.sock") as sock:
        run_upload(src=sock.path)
    run_upload(src=char_device("zero"))                                # /dev/zero
    with loop_device(image_path, unavailable=pytest.skip) as dev:      # /dev/loopN showing image_path
        run_upload(src=dev.path)

``file_kind(path)`` names what a path is ("regular file", "FIFO", "socket", "character device",
"block device", "directory", "missing"), following symlinks, for test ids and expected messages.
Everything made is removed on exit (the loop device detached), also when the test fails.
"""

import contextlib
import errno
import os
import select
import socket
import stat
import subprocess
import threading
import time

from fieldkit import TICK

CHAR_DEVICES = {"zero": "/dev/zero", "null": "/dev/null", "urandom": "/dev/urandom"}


class SpecialUnavailable(Exception):
    """This special file cannot be made here; the message says why (for pytest.skip)."""


def file_kind(path):
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "missing"
    for test, name in ((stat.S_ISREG, "regular file"), (stat.S_ISDIR, "directory"), (stat.S_ISFIFO, "FIFO"),
                       (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device")):
        if test(mode):
            return name
    return "other"


def char_device(name="zero"):
    """Path of a character device by short name (zero, null, urandom); SpecialUnavailable if absent."""
    path = CHAR_DEVICES[name]
    if file_kind(path) != "character device":
        raise SpecialUnavailable("%s is not a character device here" % path)
    return path


def block_size(path):
    """Size in bytes of a block device (or file), by seeking to its end."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)


class Fifo:
    """A FIFO at ``path``. With ``data`` (bytes, or an iterable of bytes), a daemon thread waits (up to
    ``timeout`` seconds) for a reader, writes the data and closes: the reader gets EOF after it. Without
    ``data`` nobody writes: a reader blocks in open(). ``release_after`` seconds (default: on exit) a
    reader still blocked in open() is released with an empty stream, so a program under test that opens
    the FIFO cannot hang the test. ``written`` counts bytes written; ``error`` holds a writer error
    (e.g. BrokenPipeError when the reader closed early; "no reader" when none came in time)."""

    def __init__(self, path, data=None, timeout=10.0, release_after=None):
        self.path = str(path)
        self.data = data
        self.timeout = timeout
        self.release_after = release_after
        self.written = 0
        self.error = None
        self._stop = threading.Event()
        self._threads = []

    def __enter__(self):
        os.mkfifo(self.path, 0o600)
        if self.data is not None:
            self._start(self._write)
        if self.release_after is not None:
            self._start(self._release_later)
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for t in self._threads:
            t.join(self.timeout)
        self.release_readers()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def wait(self, timeout=None):
        """Wait (default: the ``timeout`` given) for the writer to finish; returns True when it has."""
        for t in self._threads[:1] if self.data is not None else []:
            t.join(self.timeout if timeout is None else timeout)
            return not t.is_alive()
        return True

    def _start(self, target):
        t = threading.Thread(target=target, name="fieldkit-fifo", daemon=True)
        self._threads.append(t)
        t.start()

    def _open_writer(self, deadline):
        """Open for writing without blocking once a reader exists; None if none comes before ``deadline``."""
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                return os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno != errno.ENXIO:   # ENXIO: no reader yet
                    raise
            time.sleep(TICK / 5)
        return None

    def _write(self):
        deadline = time.monotonic() + self.timeout
        try:
            fd = self._open_writer(deadline)
            if fd is None:
                self.error = "no reader"
                return
            try:
                blocks = [self.data] if isinstance(self.data, (bytes, bytearray, memoryview)) else self.data
                for block in blocks:
                    view = memoryview(block)
                    while view:
                        if self._stop.is_set() or time.monotonic() >= deadline:
                            self.error = "stopped with %d bytes written" % self.written
                            return
                        if not select.select([], [fd], [], TICK)[1]:
                            continue
                        n = os.write(fd, view[:65536])
                        self.written += n
                        view = view[n:]
            finally:
                os.close(fd)
        except OSError as exc:
            self.error = exc

    def _release_later(self):
        if not self._stop.wait(self.release_after):
            self.release_readers()

    def release_readers(self):
        """Give a reader blocked in open() an empty stream (open for writing and close at once)."""
        try:
            os.close(os.open(self.path, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass   # no reader waiting (ENXIO) or the FIFO is gone


class UnixSocketFile:
    """A listening UNIX stream socket bound at ``path`` (at most 107 bytes long); closed and removed on exit."""

    def __init__(self, path):
        self.path = str(path)
        if len(os.fsencode(self.path)) > 107:
            raise ValueError("a UNIX socket path is at most 107 bytes: %s" % self.path)
        self._sock = None

    def __enter__(self):
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._sock.bind(self.path)
            self._sock.listen(1)
        except OSError:
            self._sock.close()
            raise
        return self

    def __exit__(self, *exc):
        self._sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class LoopDevice:
    """``losetup --find --show [--read-only] FILE``: a block device (``.path``, e.g. /dev/loop3) showing
    the bytes of ``backing``; detached on exit. Needs root and loop devices; SpecialUnavailable otherwise."""

    def __init__(self, backing, read_only=True, timeout=30):
        self.backing = str(backing)
        self.read_only = read_only
        self.timeout = timeout
        self.path = None

    def _losetup(self, *args):
        try:
            proc = subprocess.run(("losetup",) + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  timeout=self.timeout)
        except FileNotFoundError:
            raise SpecialUnavailable("losetup is not installed")
        except subprocess.TimeoutExpired:
            raise SpecialUnavailable("losetup %s did not finish in %s s" % (" ".join(args), self.timeout))
        if proc.returncode != 0:
            raise SpecialUnavailable("`losetup %s` failed: %s" % (" ".join(args),
                                                                    proc.stderr.decode("utf-8", "replace").strip()))
        return proc.stdout.decode().strip()

    def __enter__(self):
        if os.geteuid() != 0:
            raise SpecialUnavailable("a loop device needs root (euid %d)" % os.geteuid())
        args = ("--find", "--show") + (("--read-only",) if self.read_only else ()) + (self.backing,)
        self.path = self._losetup(*args)
        if file_kind(self.path) != "block device":
            self._losetup("--detach", self.path)
            raise SpecialUnavailable("losetup made %r, which is not a block device" % self.path)
        return self

    def __exit__(self, *exc):
        if self.path is not None:
            self._losetup("--detach", self.path)
            self.path = None


@contextlib.contextmanager
def loop_device(backing, unavailable, read_only=True):
    """A ``LoopDevice`` for the block; ``unavailable(reason)`` (e.g. ``pytest.skip``) is called when none can be made.
    Only attaching is guarded: a SpecialUnavailable raised by the block itself is not taken for "no loop device"."""
    device = LoopDevice(backing, read_only=read_only)
    try:
        device.__enter__()
    except SpecialUnavailable as exc:
        unavailable(str(exc))
        raise
    try:
        yield device
    finally:
        device.__exit__(None, None, None)
