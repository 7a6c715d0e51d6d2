# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Request bodies read from the file to upload (private).

``FileRange`` is a byte range of a file as a request body. On a plain-HTTP connection of this collection's HTTP layer
(``_http.py``) it goes by ``socket.sendfile``: the kernel copies the file's pages to the socket, with no Python
bytes in between (the client's CPU per GiB falls below curl's). On TLS, or where the bytes sent must also be digested
(``hashers``), or from a file whose size ``fstat`` does not tell (a block device: ``socket.sendfile`` would take it for
empty), it is read in large blocks and written as such. Either way ``check()`` (the run's deadline) runs
between pieces, and a file that became shorter fails as a changed source, never as a short body.

requests sees an iterable with a length: it sends ``Content-Length`` and hands each piece to the connection.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import stat

from ansible_collections.imagestore.upload.plugins.module_utils._errors import SourceChangedError

MiB = 1024 * 1024
READ_BLOCK = 4 * MiB
#: bytes per sendfile call: progress and the deadline check move at least this often (1 MiB: a slow link still shows
#: its progress every second or so; a call per MiB costs nothing measurable beside the copy)
SEGMENT = 1 * MiB


class Segment(object):
    """A piece of a FileRange that a connection may send with sendfile (others iterate it: large reads)."""

    __slots__ = ("body", "offset", "count")

    def __init__(self, body, offset, count):
        self.body = body
        self.offset = offset
        self.count = count

    def __len__(self):
        return self.count

    def __iter__(self):
        return self.body.buffered(self.offset, self.count)


class FileRange(object):
    """Bytes ``[start, end]`` of ``path`` as a request body (``end < start``: empty)."""

    def __init__(self, path, start, end, hashers=(), check=None, progress=None):
        self.path = path
        self.start = start
        self.count = max(0, end - start + 1)
        self.hashers = tuple(hashers)
        self.check = check
        self.progress = progress        # progress(n): n more bytes went out
        self._file = None
        self._regular = None
        self.len = self.count

    def __len__(self):
        return self.count

    def __iter__(self):
        if self.hashers:                    # the bytes themselves are needed: read them
            yield from self.buffered(self.start, self.count)
            return
        pos, end = self.start, self.start + self.count
        while pos < end:
            if self.check is not None:
                self.check()
            count = min(SEGMENT, end - pos)
            yield Segment(self, pos, count)
            pos += count
            if self.progress is not None:
                self.progress(count)

    def buffered(self, offset, count):
        fd = self.fileobj().fileno()
        pos, end = offset, offset + count
        while pos < end:
            if self.check is not None:
                self.check()
            data = os.pread(fd, min(READ_BLOCK, end - pos), pos)
            if not data:
                raise self.shorter()
            for hasher in self.hashers:
                hasher.update(data)
            pos += len(data)
            yield data
            if self.progress is not None and self.hashers:
                self.progress(len(data))

    def sendfile_ok(self):
        """May the pieces go by ``socket.sendfile``? Only from a regular file: it sizes the file by ``fstat``, which says 0
        bytes for a block device (it would send nothing)."""
        if self._regular is None:
            self._regular = stat.S_ISREG(os.fstat(self.fileobj().fileno()).st_mode)
        return self._regular

    def fileobj(self):
        if self._file is None:
            self._file = open(self.path, "rb")
        return self._file

    def shorter(self):
        return SourceChangedError("%s became shorter while it was being uploaded; run again to upload its current content"
                                  % self.path)

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None
