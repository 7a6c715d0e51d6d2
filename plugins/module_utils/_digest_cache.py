# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Digests of local files, remembered between runs (private).

One small JSON file (``~/.cache/imagestore-upload/digests.json``, or ``IMAGESTORE_DIGEST_CACHE``) maps a file's
absolute path to its identity (device, inode, size, mtime_ns, ctime_ns) and the digests computed for that version.
Any write gives the file a new ctime, so an old entry never matches a new version. It is read once per run and
written once at its end (and at once after hashing a large file, for other processes); a write merges with what
other runs wrote meanwhile. Processes hashing the same large file take turns (a lock per file identity), so the
forks of one play uploading an image to several stores hash it once.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import hashlib
import json
import os
import tempfile
import threading
import time

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows; the lock is then skipped
    fcntl = None

MAX_ENTRIES = 100000
LOCK_POLL = 0.2


def identity_text(identity):
    """``dev:ino:size:mtime_ns:ctime_ns``: the text form of a Source's identity."""
    return ":".join(str(x) for x in identity)


class DigestCache:
    """``get(path, identity)`` / ``put(path, identity, digests)`` in memory; ``flush()`` writes; ``path=None``: off."""

    def __init__(self, path):
        self.path = path
        self._lock = threading.Lock()
        self._data = None
        self._dirty = {}

    @staticmethod
    def default_path():
        override = os.environ.get("IMAGESTORE_DIGEST_CACHE")
        if override is not None:
            return override or None
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        return os.path.join(base, "imagestore-upload", "digests.json")

    def _load(self):
        try:
            with open(self.path) as fh:
                data = json.load(fh)
        except (OSError, IOError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        # entries are {abspath: [identity text, {algorithm: hex}]}; older files keyed "path|identity" are dropped
        return dict((k, v) for k, v in data.items() if isinstance(v, list) and len(v) == 2 and isinstance(v[1], dict))

    def get(self, path, identity, fresh=False):
        """Digests remembered for this version of the file ({} when none); ``fresh``: read the file again first."""
        if not self.path:
            return {}
        key, text = os.path.abspath(path), identity_text(identity)
        with self._lock:
            if self._data is None or fresh:
                data = self._load()
                data.update(self._dirty)
                self._data = data
            entry = self._data.get(key)
        return dict(entry[1]) if entry and entry[0] == text else {}

    def put(self, path, identity, digests):
        if not self.path:
            return
        key, text = os.path.abspath(path), identity_text(identity)
        with self._lock:
            if self._data is None:
                self._data = self._load()
            old = self._data.get(key)
            merged = dict(old[1]) if old and old[0] == text else {}
            merged.update(digests)
            self._data[key] = self._dirty[key] = [text, merged]

    def flush(self):
        """Write what this run learnt, merged with what is on disk now (other runs may have written meanwhile)."""
        if not self.path:
            return
        with self._lock:
            if not self._dirty:
                return
            dirty, self._dirty = self._dirty, {}
            try:
                data = self._load()
                for key in dirty:
                    data.pop(key, None)              # re-inserted last: the most recent entries survive trimming
                data.update(dirty)
                while len(data) > MAX_ENTRIES:
                    data.pop(next(iter(data)))
                folder = os.path.dirname(self.path)
                if folder and not os.path.isdir(folder):
                    os.makedirs(folder, mode=0o700)
                fd, tmp = tempfile.mkstemp(dir=folder or ".", prefix=".digests.")
                with os.fdopen(fd, "w") as fh:
                    json.dump(data, fh, separators=(",", ":"))
                os.replace(tmp, self.path)
                self._data = data
            except (OSError, IOError):
                pass               # a cache that cannot be written only costs a re-read next time

    @contextlib.contextmanager
    def hashing(self, path, identity, check):
        """Hold the lock of this file version while it is hashed; ``check(doing)`` (the deadline) bounds the wait."""
        lock_path = self._lock_path(path, identity)
        if fcntl is None or lock_path is None:
            yield
            return
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            yield
            return
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except (OSError, IOError):
                    check("waiting for another run that computes the digests of %s" % path)
                    time.sleep(LOCK_POLL)
            yield
        finally:
            os.close(fd)                          # releases the lock
            try:
                os.unlink(lock_path)
            except OSError:
                pass

    def _lock_path(self, path, identity):
        folder = os.path.join(os.path.dirname(self.path), "locks") if self.path else None
        if folder is None:
            return None
        try:
            if not os.path.isdir(folder):
                os.makedirs(folder, mode=0o700)
        except OSError:
            return None
        key = hashlib.sha256(("%s|%s" % (os.path.abspath(path), identity_text(identity))).encode("utf-8")).hexdigest()[:32]
        return os.path.join(folder, key + ".lock")
