# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The local file to upload (private): what may be uploaded, its identity, its bytes and its digests.

* ``open_source()`` decides once, for every provider, which kinds of file upload: a regular file, or a
  block device (its whole size: disk images live on LVM volumes); a character device, a FIFO or a
  socket is refused with a message naming its kind (they have no size, so uploading one would store a
  0-byte or endless file over what the store holds).
* ``Source`` fixes the file's identity when the run starts: (device, inode, size, mtime, ctime) in
  nanoseconds. Any write changes the ctime, which no tool can set back, so a file rewritten in place
  never passes for the file it was. Its bytes are read with ``os.pread`` in windows (memory stays
  bounded by chunk size x parallel); digests come from one read, several algorithms side by side, or
  in the background while the bytes go out, and are cached by identity (never for a block device,
  whose content can change without its metadata).
* the digest cache is ``_digest_cache.DigestCache``;
* ``checksum`` (``sha256:<hex>``): a digest the user declares is used for identity at once (no pass
  before the first byte) and verified against the bytes actually read before the commit.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import os
import stat
import threading

from ansible_collections.imagestore.upload.plugins.module_utils._bodies import FileRange
from ansible_collections.imagestore.upload.plugins.module_utils._digest_cache import identity_text
from ansible_collections.imagestore.upload.plugins.module_utils._errors import LocalFileError, SourceChangedError, VerificationError
from ansible_collections.imagestore.upload.plugins.module_utils._hashing import feed

MiB = 1024 * 1024
READ_BLOCK = 4 * MiB
#: files from this size on are hashed by one process at a time, the others waiting for its result (Ansible forks
#: uploading one image to several stores hash it once)
SHARE_ABOVE = 64 * MiB
#: files up to this size may be read into memory whole (load()), as the small files of a package are
SMALL = 1 * MiB
KINDS = ((stat.S_ISCHR, "a character device"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
         (stat.S_ISDIR, "a directory"))


def file_kind(mode):
    """'regular', 'block', or the words naming another kind ('a FIFO (named pipe)', ...)."""
    if stat.S_ISREG(mode):
        return "regular"
    if stat.S_ISBLK(mode):
        return "block"
    for test, words in KINDS:
        if test(mode):
            return words
    return "a special file"


def check_local(path, option="src", directory_ok=False):
    """Fail clearly when ``path`` cannot be uploaded; return its kind ('regular', 'block', 'directory')."""
    try:
        st = os.stat(path)
    except OSError as exc:
        if not os.path.lexists(path):
            raise LocalFileError("%s: %s does not exist on the host running the module" % (option, path))
        raise LocalFileError("%s: %s cannot be read: %s" % (option, path, exc.strerror or exc))
    kind = file_kind(st.st_mode)
    if kind == "a directory":
        if directory_ok:
            return "directory"
        raise LocalFileError("%s: %s is a directory; this provider uploads one file (give the image file)" % (option, path))
    if kind not in ("regular", "block"):
        raise LocalFileError("%s: %s is %s; upload a regular file or a block device (whose whole size is sent)"
                             % (option, path, kind))
    if not os.access(path, os.R_OK):
        raise LocalFileError("%s: %s is not readable by the user running the module" % (option, path))
    return kind


def parse_checksum(value, option="checksum"):
    """``sha256:<hex>`` (also ``sha1:``, ``md5:``, ``sha512:``) -> (algorithm, hex), as ansible.builtin.get_url takes it."""
    text = str(value or "").strip()
    algorithm, _sep, digest = text.partition(":")
    algorithm = algorithm.lower().replace("-", "")
    sizes = {"md5": 32, "sha1": 40, "sha256": 64, "sha512": 128}
    digest = digest.strip().lower()
    if algorithm not in sizes or len(digest) != sizes[algorithm] or any(c not in "0123456789abcdef" for c in digest):
        raise LocalFileError("%s %r is not a checksum: give <algorithm>:<hex digest>, e.g. sha256:%s (algorithms: md5, sha1, "
                             "sha256, sha512)" % (option, text[:80], "0" * 64))
    return algorithm, digest


class SliceReader:
    """File-like view of ``[start, end]`` of a file, for streaming one request body.

    ``read(n)`` returns up to ``max(n, block)`` bytes: http.client asks for 8-16 KiB at a time and
    sends what it gets, so this makes its socket writes large. ``check()`` runs before every read (the
    deadline), ``hashers`` see every byte read.
    """

    def __init__(self, path, start, end, block=READ_BLOCK, hashers=(), check=None, tap=None):
        self._fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        self._tap = tap
        self._path = path
        self._pos = start
        self._end = end
        self._block = block
        self._hashers = hashers
        self._check = check
        self.len = end - start + 1

    def __len__(self):
        return max(0, self._end - self._pos + 1)

    def read(self, size=-1):
        remaining = self._end - self._pos + 1
        if remaining <= 0:
            return b""
        if self._check is not None:
            self._check()
        want = remaining if size is None or size < 0 else min(remaining, max(size, self._block))
        data = os.pread(self._fd, want, self._pos)
        if not data:
            raise SourceChangedError("%s became shorter while it was being uploaded; run again to upload its current content"
                                     % self._path)
        self._pos += len(data)
        for hasher in self._hashers:
            hasher.update(data)
        if self._tap is not None:
            self._tap(len(data))
        return data

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Source:
    """A local file (or block device) to upload, with its identity fixed when the run starts."""

    def __init__(self, path, digest_cache=None, check=None, declared=None):
        self.path = path
        st = os.stat(path)
        self.kind = file_kind(st.st_mode)
        if self.kind == "block":
            fd = os.open(path, os.O_RDONLY)
            try:
                self.size = os.lseek(fd, 0, os.SEEK_END)
            finally:
                os.close(fd)
            digest_cache = None          # a device's content changes without its metadata: never trust a cached digest
        else:
            self.size = st.st_size
        self.identity = self._identity(st, self.size)
        self.cache = digest_cache
        self._check = check
        self._digests = {}
        self._lock = threading.Lock()
        self._cache_read = False
        self.from_cache = set()         # the algorithms whose digest the cache gave (not computed by this run)
        self.declared = dict(declared or {})    # algorithm -> hex the user declared (checksum option): verified later
        self._content = None            # the bytes of a small file read by load()
        self.tap = None                 # told of the bytes each reader reads (the transfer's progress within a unit)

    @staticmethod
    def _identity(st, size):
        return (st.st_dev, st.st_ino, size, st.st_mtime_ns, st.st_ctime_ns)

    @property
    def fingerprint(self):
        """A string naming this version of this file on this host (its identity)."""
        return identity_text(self.identity)

    def check(self, doing):
        if self._check is not None:
            self._check(doing)

    def load(self, algorithms=("sha256",)):
        """Read a small file into memory once: its digests come from those bytes and its request bodies are them (one
        open and one read per file of a package of many small files, instead of one for the digests and one to send)."""
        if self.size > SMALL and self.kind == "regular":
            raise ValueError("load() is for files up to %d bytes" % SMALL)
        data = self.read(0, self.size - 1) if self.size else b""
        if len(data) != self.size:
            raise SourceChangedError("%s became shorter while it was being read; run again to upload its current content" % self.path)
        self.check_unchanged()
        with self._lock:
            self._content = data
            for a in algorithms:
                if a not in self._digests or a in self.from_cache:
                    self._digests[a] = hashlib.new(a, data).hexdigest()
                    self.from_cache.discard(a)
            found = dict(self._digests)
        if self.cache is not None:
            self.cache.put(self.path, self.identity, found)
        return dict((a, found[a]) for a in algorithms)

    def body(self, start, end, hashers=(), progress=None):
        """Bytes ``[start, end]`` as a request body (sendfile where the connection allows; see _bodies.FileRange);
        ``progress(n)`` and the transfer's ``tap`` are told of each piece sent. A loaded file gives its bytes."""
        if self._content is not None and not hashers:
            piece = self._content[start:end + 1]
            for call in (progress, self.tap):
                if call is not None:
                    call(len(piece))
            return piece
        callbacks = tuple(c for c in (progress, self.tap) if c is not None)

        def tell(n):
            for call in callbacks:
                call(n)
        return FileRange(self.path, start, end, hashers=hashers, check=self._sending if self._check is not None else None,
                         progress=tell if callbacks else None)

    def reader(self, start, end, hashers=()):
        return SliceReader(self.path, start, end, hashers=hashers, check=self._sending if self._check is not None else None,
                           tap=self.tap)

    def _sending(self):
        self._check("sending %s" % self.path)

    def read(self, start, end):
        return b"".join(self.blocks(start, end))

    def blocks(self, start=0, end=None):
        """The bytes of ``[start, end]`` in READ_BLOCK pieces, in order (not counted as sent: no tap, no "sending" check)."""
        end = self.size - 1 if end is None else end
        with SliceReader(self.path, start, end) as r:
            while len(r):
                yield r.read(READ_BLOCK)

    def changed(self):
        """True when the file is no longer the one the run started with."""
        try:
            st = os.stat(self.path)
        except OSError:
            return True
        return self._identity(st, self.size if self.kind == "block" else st.st_size) != self.identity

    def check_unchanged(self):
        """Fail when the file changed since the run began (its bytes would not match its digest), naming what changed."""
        if self.changed():
            raise SourceChangedError("%s changed while it was being uploaded (%s); run again to upload its current content"
                                     % (self.path, self._what_changed()))

    def _what_changed(self):
        try:
            st = os.stat(self.path)
        except OSError as exc:
            return "it can no longer be read: %s" % (exc.strerror or exc)
        now = self._identity(st, self.size if self.kind == "block" else st.st_size)
        names = ("device", "inode", "size", "modification time", "change time")
        what = [name for name, was, is_ in zip(names, self.identity, now) if was != is_]
        return "its %s differ%s from when the run began" % (", ".join(what), "s" if len(what) == 1 else "")

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

    def known(self, algorithms=("sha256",)):
        """Digests for identity without reading: computed, cached, or declared by the user."""
        found = dict((a, v) for a, v in self.declared.items() if a in algorithms)
        found.update(self.cached_digests(algorithms))
        return found

    def checked_algorithms(self):
        """The digests a run computes of the bytes it sends: SHA-256 (the content identity) and whatever the user
        declared (verified before the commit)."""
        return tuple(sorted(set(("sha256",) + tuple(self.declared))))

    def identity_digests(self, algorithms=("sha256",)):
        """Digests that name the content (resume keys, comparisons): declared ones are taken as given (and verified
        after the transfer), the others computed in one read (or cached)."""
        known = self.known(algorithms)
        wanted = [a for a in algorithms if a not in known]
        if wanted:
            known.update(self.digests(wanted))
        return dict((a, known[a]) for a in algorithms)

    def digests(self, algorithms=("sha256",)):
        """Hex digests of the whole file for each algorithm, in one sequential read, each in a thread (cached)."""
        known = self.cached_digests(algorithms)
        wanted = [a for a in algorithms if a not in known]
        if not wanted:
            return known
        if self.cache is not None and self.size >= SHARE_ABOVE:
            # another process (a fork of the same play) may be hashing this very file: wait for it, take its result
            with self.cache.hashing(self.path, self.identity, self.check):
                found = self.cache.get(self.path, self.identity, fresh=True)
                if all(a in found for a in wanted):
                    with self._lock:
                        for a in wanted:
                            self._digests[a] = found[a]
                            self.from_cache.add(a)
                    return self.cached_digests(algorithms)
                return self._compute(algorithms, wanted)
        return self._compute(algorithms, wanted)

    def _compute(self, algorithms, wanted):
        hashers = [hashlib.new(a) for a in wanted]
        doing = "computing the %s of %s" % ("/".join(a.upper() for a in wanted), self.path)
        feed(hashers, self._checked_blocks(doing) if self.size else iter(()))
        with self._lock:
            for a, h in zip(wanted, hashers):
                self._digests[a] = h.hexdigest()
                self.from_cache.discard(a)
            found = dict(self._digests)
        self.check_unchanged()
        if self.cache is not None:
            self.cache.put(self.path, self.identity, found)
            if self.size >= SHARE_ABOVE:
                self.cache.flush()             # at once: other processes waiting for this file read it now
        return dict((a, found[a]) for a in algorithms)

    def _checked_blocks(self, doing):
        for block in self.blocks():
            self.check(doing)
            yield block

    def digest(self, algorithm="sha256"):
        return self.digests((algorithm,))[algorithm]

    def digests_in_background(self, algorithms=("sha256",)):
        """Start computing digests in a thread of their own (while the chunks go out); see BackgroundDigests."""
        return BackgroundDigests(self, algorithms)

    def verify_declared(self):
        """Compare what the user declared with the digests of the bytes read; VerificationError on a difference."""
        for algorithm, declared in sorted(self.declared.items()):
            actual = self.digests((algorithm,))[algorithm]
            if actual != declared:
                raise VerificationError("checksum: %s of %s is %s, not the declared %s; nothing was committed (the store keeps "
                                        "what it held)" % (algorithm, self.path, actual, declared))


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
