# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Provider-neutral upload engine (private; not a public API).

* range arithmetic on inclusive ``(start, end)`` byte ranges;
* ``plan()``: cut what the server says is missing into chunks (optionally on a fixed slice grid);
* ``Source``: the local file, read in slices with ``os.pread`` (each worker its own window, memory
  bounded by chunk size x parallel), digests computed in one sequential pass (one thread per
  algorithm, so two digests cost the time of the slower one) or in the background while the
  chunks go out, and cached by the file's identity (device, inode, size, mtime, ctime);
* ``Transfer``: drives one file to "nothing missing": ask the server what is missing, plan, send
  with a bounded worker pool, and on a conflict (the server's account changed under us: a retried
  chunk that had landed, a concurrent client) re-read and re-plan instead of failing.

The engine never looks at the provider's name: an adapter gives it two callables,
``missing() -> [(start, end), ...]`` and ``send(start, end, source)``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import os
import tempfile
import threading
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

try:
    import queue
except ImportError:  # pragma: no cover - Python 2 is not supported, but sanity imports on it
    import Queue as queue

MiB = 1024 * 1024
READ_BLOCK = 4 * MiB
DEFAULT_CHUNK_SIZE = 16 * MiB
DEFAULT_PARALLEL = 4


# ---------------------------------------------------------------------------------------------
# range arithmetic (inclusive ends, as Service Fabric's ExpectedRanges)

def normalize(ranges):
    """Sort and merge overlapping or touching inclusive ranges."""
    merged = []
    for start, end in sorted((int(s), int(e)) for s, e in ranges):
        if end < start:
            continue
        if merged and start <= merged[-1][1] + 1:
            if end > merged[-1][1]:
                merged[-1][1] = end
        else:
            merged.append([start, end])
    return [tuple(pair) for pair in merged]


def total(ranges):
    """Number of bytes in a list of inclusive ranges."""
    return sum(e - s + 1 for s, e in normalize(ranges))


def complement(ranges, size):
    """The parts of [0, size-1] not covered by ``ranges``."""
    gaps = []
    pos = 0
    for start, end in normalize(ranges):
        start, end = max(start, 0), min(end, size - 1)
        if start > pos:
            gaps.append((pos, start - 1))
        pos = max(pos, end + 1)
    if pos <= size - 1:
        gaps.append((pos, size - 1))
    return gaps


def plan(missing, chunk_size, grid=None, size=None):
    """Chunks that cover exactly the ``missing`` bytes, none larger than ``chunk_size``.

    With ``grid`` (a fixed slice size, as ZStack requires) and the file's ``size``, every chunk is
    one whole slice of that grid, ``[i*grid, min((i+1)*grid, size) - 1]``; a missing range that
    starts inside a slice sends that whole slice. Without it, chunks start where the missing ranges
    start.
    """
    if chunk_size < 1:
        raise ValueError("chunk_size must be positive")
    chunks = []
    missing = normalize(missing)
    if grid:
        if size is None:
            raise ValueError("a grid plan needs the file size")
        indexes = []
        for start, end in missing:
            for index in range(start // grid, end // grid + 1):
                if not indexes or index > indexes[-1]:
                    indexes.append(index)
        return [(i * grid, min((i + 1) * grid, size) - 1) for i in indexes]
    for start, end in missing:
        pos = start
        while pos <= end:
            stop = min(end, pos + chunk_size - 1)
            chunks.append((pos, stop))
            pos = stop + 1
    return chunks


# ---------------------------------------------------------------------------------------------
# the local file

class SliceReader:
    """File-like view of ``[start, end]`` of a file, for streaming one request body.

    ``read(n)`` returns up to ``max(n, block)`` bytes: http.client asks for 8-16 KiB at a time and
    sends what it gets, so this makes its socket writes large.
    """

    def __init__(self, path, start, end, block=READ_BLOCK, hashers=()):
        self._fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        self._pos = start
        self._end = end
        self._block = block
        self._hashers = hashers
        self.len = end - start + 1

    def __len__(self):
        return max(0, self._end - self._pos + 1)

    def read(self, size=-1):
        remaining = self._end - self._pos + 1
        if remaining <= 0:
            return b""
        want = remaining if size is None or size < 0 else min(remaining, max(size, self._block))
        data = os.pread(self._fd, want, self._pos)
        if not data:
            raise IOError("the source file became shorter while it was being uploaded")
        self._pos += len(data)
        for hasher in self._hashers:
            hasher.update(data)
        return data

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class SourceChangedError(Exception):
    pass


def identity_text(identity):
    """``dev:ino:size:mtime_ns:ctime_ns``: the text form of a Source's identity."""
    return ":".join(str(x) for x in identity)


class SliceDigests:
    """A hasher-like object giving the digest of every slice of a fixed grid, fed with the whole file in order."""

    def __init__(self, algorithm, grid, size):
        self.algorithm = algorithm
        self.grid = grid
        self.size = size
        self.digests = {}
        self._start = 0
        self._current = hashlib.new(algorithm)
        self._filled = 0

    def update(self, data):
        view = memoryview(data)
        while len(view):
            take = min(len(view), self.grid - self._filled)
            self._current.update(view[:take])
            self._filled += take
            view = view[take:]
            if self._filled == self.grid or self._start + self._filled == self.size:
                self._close()

    def _close(self):
        end = self._start + self._filled - 1
        self.digests[(self._start, end)] = self._current.hexdigest()
        self._start = end + 1
        self._current = hashlib.new(self.algorithm)
        self._filled = 0


class ThreadedHasher:
    """A hasher fed from one thread and computed in another: ``update()`` queues the block (at most two
    waiting), so a sender hashing what it sends does not wait for the digest between socket writes.
    ``hexdigest()`` waits for the queued blocks; ``close()`` ends the thread of a hasher left unused."""

    def __init__(self, hasher):
        self._hasher = hasher
        self._queue = queue.Queue(maxsize=2)
        self._thread = threading.Thread(target=self._work, name="imagestore-hasher")
        self._thread.daemon = True
        self._thread.start()

    def _work(self):
        while True:
            block = self._queue.get()
            if block is None:
                return
            self._hasher.update(block)

    def update(self, data):
        if self._thread is None:
            raise ValueError("update() after hexdigest() or close()")
        self._queue.put(data)

    def close(self):
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def hexdigest(self):
        self.close()
        return self._hasher.hexdigest()


def _feed(hashers, blocks):
    """Feed every block to every hasher, each hasher in a thread of its own when there are several.

    hashlib releases the GIL on large buffers, so MD5 and SHA-256 of one read run side by side on two
    cores; each hasher's queue holds at most two blocks (memory stays a few blocks).
    """
    hashers = list(hashers)
    if len(hashers) == 1:
        for block in blocks:
            hashers[0].update(block)
        return
    threaded = [ThreadedHasher(h) for h in hashers]
    try:
        for block in blocks:
            for t in threaded:
                t.update(block)
    finally:
        for t in threaded:
            t.close()


class Source:
    """A local file to upload, with its identity fixed when the run starts.

    ``identity`` is (device, inode, size, mtime, ctime) in nanoseconds: any write to the file changes
    its ctime, which no tool can set back (unlike mtime, which ``touch -r`` or ``rsync --inplace -t``
    restore), so a file rewritten in place never passes for the file it was.
    """

    def __init__(self, path, digest_cache=None):
        self.path = path
        st = os.stat(path)
        self.size = st.st_size
        self.identity = self._identity(st)
        self.cache = digest_cache
        self._digests = {}
        self._lock = threading.Lock()
        self._cache_read = False
        self.from_cache = set()         # the algorithms whose digest the cache gave (not computed by this run)

    @property
    def digest_from_cache(self):
        return bool(self.from_cache)

    @staticmethod
    def _identity(st):
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    @property
    def fingerprint(self):
        """A string naming this version of this file on this host (its identity)."""
        return identity_text(self.identity)

    def reader(self, start, end, hashers=()):
        return SliceReader(self.path, start, end, hashers=hashers)

    def read(self, start, end):
        return b"".join(self.blocks(start, end))

    def blocks(self, start=0, end=None):
        """The bytes of ``[start, end]`` in READ_BLOCK pieces, in order."""
        end = self.size - 1 if end is None else end
        with self.reader(start, end) as r:
            while len(r):
                yield r.read(READ_BLOCK)

    def check_unchanged(self):
        """Fail when the file changed since the run began (its bytes would not match its digest)."""
        if self._identity(os.stat(self.path)) != self.identity:
            raise SourceChangedError("%s changed while it was being uploaded; run again to upload the new content" % self.path)

    def cached_digests(self, algorithms=("sha256",)):
        """The digests already known (computed in this run or found in the cache), without reading the file."""
        with self._lock:
            read = self._cache_read or self.cache is None
            self._cache_read = True
        if not read:                    # once per Source: its identity, hence its cache entry, is fixed
            cached = self.cache.get(self.path, self.identity)
            with self._lock:
                for a, value in cached.items():
                    if a not in self._digests:
                        self._digests[a] = value
                        self.from_cache.add(a)
        with self._lock:
            return dict((a, self._digests[a]) for a in algorithms if a in self._digests)

    def digests(self, algorithms=("sha256",), also=()):
        """Hex digests of the whole file for each algorithm, in one sequential read (cached).

        ``also``: more hasher-like objects (``update(bytes)``) fed with the same read when the file
        has to be read anyway, such as a SliceDigests.
        """
        known = self.cached_digests(algorithms)
        wanted = [a for a in algorithms if a not in known]
        if not wanted:
            return known
        hashers = [hashlib.new(a) for a in wanted]
        _feed(hashers + list(also), self.blocks() if self.size else iter(()))
        with self._lock:
            for a, h in zip(wanted, hashers):
                self._digests[a] = h.hexdigest()
            found = dict(self._digests)
        self.check_unchanged()
        if self.cache is not None:
            self.cache.put(self.path, self.identity, found)
        return dict((a, found[a]) for a in algorithms)

    def digest(self, algorithm="sha256"):
        return self.digests((algorithm,))[algorithm]

    def digests_in_background(self, algorithms=("sha256",)):
        """Start computing digests in a thread of their own (while the chunks go out); see BackgroundDigests."""
        return BackgroundDigests(self, algorithms)


class BackgroundDigests:
    """Digests computed by a background thread reading the file in order, beside the upload's own reads.

    The second read of each block comes from the page cache (the workers just read it, or the hasher
    read it first and the workers find it there), so the file is read from disk once.
    """

    def __init__(self, source, algorithms):
        self.algorithms = tuple(algorithms)
        self._source = source
        self._error = None
        self._result = source.cached_digests(self.algorithms)
        self._thread = None
        if len(self._result) < len(self.algorithms):
            self._thread = threading.Thread(target=self._run, name="imagestore-background-digest")
            self._thread.daemon = True
            self._thread.start()

    def _run(self):
        try:
            self._result = self._source.digests(self.algorithms)
        except Exception as exc:
            self._error = exc

    def result(self):
        """The digests; waits for the thread, and raises what it raised (SourceChangedError, IOError)."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            raise self._error
        return dict(self._result)


class DigestCache:
    """Digests of local files keyed by (path, device, inode, size, mtime_ns, ctime_ns), in one small JSON file.

    A file that is written to gets a new ctime (and usually mtime, size or inode), so its old entry no
    longer matches and the digest is computed again. ``path=None`` disables the cache.
    """

    MAX_ENTRIES = 512

    def __init__(self, path):
        self.path = path
        self._lock = threading.Lock()

    @staticmethod
    def default_path():
        override = os.environ.get("IMAGESTORE_DIGEST_CACHE")
        if override is not None:
            return override or None
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        return os.path.join(base, "imagestore-upload", "digests.json")

    @staticmethod
    def _key(path, identity):
        return "%s|%s" % (os.path.abspath(path), identity_text(identity))

    def _load(self):
        try:
            with open(self.path) as fh:
                data = json.load(fh)
            return data if isinstance(data, dict) else {}
        except (OSError, IOError, ValueError):
            return {}

    def get(self, path, identity):
        if not self.path:
            return {}
        return dict(self._load().get(self._key(path, identity), {}))

    def put(self, path, identity, digests):
        if not self.path:
            return
        with self._lock:
            try:
                data = self._load()
                prefix = os.path.abspath(path) + "|"
                for key in [k for k in data if k.startswith(prefix)]:
                    del data[key]          # older versions of the same file
                data[self._key(path, identity)] = dict(digests)
                while len(data) > self.MAX_ENTRIES:
                    data.pop(next(iter(data)))
                folder = os.path.dirname(self.path)
                if folder and not os.path.isdir(folder):
                    os.makedirs(folder, mode=0o700)
                fd, tmp = tempfile.mkstemp(dir=folder or ".", prefix=".digests.")
                with os.fdopen(fd, "w") as fh:
                    json.dump(data, fh)
                os.replace(tmp, self.path)
            except (OSError, IOError):
                pass               # a cache that cannot be written only costs a re-read next time


# ---------------------------------------------------------------------------------------------
# the transfer loop

class Conflict(Exception):
    """The server's account of what is missing changed under us: re-read it and re-plan."""


class TransferError(Exception):
    def __init__(self, message, cause=None):
        super(TransferError, self).__init__(message)
        self.cause = cause


class Progress:
    """Thread-safe byte counter with an optional callback (bytes_sent, size)."""

    def __init__(self, size, callback=None):
        self.size = size
        self.sent = 0
        self._callback = callback
        self._lock = threading.Lock()

    def add(self, n):
        with self._lock:
            self.sent += n
            sent = self.sent
        if self._callback is not None:
            self._callback(sent, self.size)


class Transfer:
    """Send every byte the server reports missing, with ``parallel`` workers; re-plan on conflict.

    ``missing()`` returns the server's current list of missing inclusive ranges.
    ``send(start, end, source)`` uploads that range (reading it from ``source``); it raises
    ``Conflict`` when the server rejects it because its state moved, anything else is fatal.
    ``grid``: fixed slice size the server requires (every chunk one slice of that grid).
    """

    def __init__(self, source, missing, send, chunk_size=DEFAULT_CHUNK_SIZE, parallel=DEFAULT_PARALLEL,
                 grid=None, progress=None, max_stalled_rounds=3):
        self.source = source
        self.missing = missing
        self.send = send
        self.chunk_size = grid or chunk_size
        self.parallel = max(1, parallel)
        self.grid = grid
        self.progress = progress or Progress(source.size)
        self.max_stalled_rounds = max_stalled_rounds
        self.rounds = 0
        self.conflicts = 0
        self.bytes_sent = 0
        self.initial_missing = None

    def run(self):
        """Return the number of bytes sent; raise TransferError when it cannot finish."""
        stalled = 0
        last_missing = None
        while True:
            missing = normalize(self.missing())
            if self.initial_missing is None:
                self.initial_missing = total(missing)
            if not missing:
                return self.bytes_sent
            remaining = total(missing)
            if last_missing is not None and remaining >= last_missing:
                stalled += 1
                if stalled >= self.max_stalled_rounds:
                    raise TransferError("the server still reports %d bytes missing after %d attempts to send them"
                                        % (remaining, self.rounds))
            else:
                stalled = 0
            last_missing = remaining
            self.rounds += 1
            self._send_round(plan(missing, self.chunk_size, self.grid, self.source.size))

    def _send_one(self, start, end, stop):
        if stop.is_set():
            return 0
        self.send(start, end, self.source)
        n = end - start + 1
        self.progress.add(n)
        return n

    def _send_round(self, chunks):
        stop = threading.Event()
        conflict = None
        with ThreadPoolExecutor(max_workers=min(self.parallel, len(chunks))) as pool:
            pending = set()
            queue = list(reversed(chunks))
            while queue or pending:
                while queue and len(pending) < self.parallel and not stop.is_set():
                    start, end = queue.pop()
                    pending.add(pool.submit(self._send_one, start, end, stop))
                if not pending:
                    break
                done, pending = wait(pending, return_when=FIRST_COMPLETED)   # refill as soon as one ends: no lockstep batches
                for future in done:
                    exc = future.exception()
                    if exc is None:
                        self.bytes_sent += future.result()
                    elif isinstance(exc, Conflict):
                        self.conflicts += 1
                        conflict = exc
                        stop.set()
                    else:
                        stop.set()
                        for other in pending:
                            other.cancel()
                        wait(pending)
                        raise exc
                if stop.is_set():
                    queue = []
        return conflict
