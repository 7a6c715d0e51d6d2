# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The body of one ZStack slice POST (private): multipart/form-data with one file part, streamed from the file."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import os
import re


def multipart_filename(src):
    """A file name for the multipart part that needs no quoting: the basename with other characters replaced."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", os.path.basename(src or ""))[:200] or "image"


def slice_md5(source, start, end):
    """MD5 of bytes [start, end] of the file, in one pass over that slice (it is not kept in memory)."""
    digest = hashlib.md5()
    for block in source.blocks(start, end):
        digest.update(block)
    return digest.hexdigest()


class MultipartSlice:
    """A multipart/form-data body with one file part, streamed: preamble, the slice read from the file, epilogue.

    ``len`` (and ``len()``) is the exact body size before anything is read, so the request carries a
    Content-Length; the file is opened on the first ``read()`` and read in blocks, never held whole.
    """

    def __init__(self, source, start, end, filename, boundary):
        self.boundary = boundary
        self._head = ('--%s\r\nContent-Disposition: form-data; name="file"; filename="%s"\r\n'
                      'Content-Type: application/octet-stream\r\n\r\n' % (boundary, filename)).encode("ascii")
        self._tail = ("\r\n--%s--\r\n" % boundary).encode("ascii")
        self._source = source
        self._range = (start, end)
        self._reader = None
        self._parts = None
        self.len = len(self._head) + (end - start + 1) + len(self._tail)
        self._read = 0

    @property
    def content_type(self):
        return "multipart/form-data; boundary=%s" % self.boundary

    def __len__(self):
        return self.len - self._read

    def read(self, size=-1):
        if self._parts is None:
            self._reader = self._source.reader(*self._range)
            self._parts = [self._head, self._reader, self._tail]
        while self._parts:
            part = self._parts[0]
            if isinstance(part, bytes):
                if size is None or size < 0 or size >= len(part):
                    data = self._parts.pop(0)
                else:
                    data, self._parts[0] = part[:size], part[size:]
            else:
                data = part.read(size)
                if not data:
                    self._parts.pop(0)
                    continue
            if data:
                self._read += len(data)
                return data
        return b""

    def close(self):
        if self._reader is not None:
            self._reader.close()
