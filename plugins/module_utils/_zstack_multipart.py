# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The body of one ZStack slice POST (private): multipart/form-data with one file part, streamed from the file."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re


def multipart_filename(src):
    """A file name for the multipart part that needs no quoting: the basename with other characters replaced."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", os.path.basename(src or ""))[:200] or "image"


class MultipartSlice:
    """A multipart/form-data body with one file part, streamed: preamble, the slice from the file, epilogue.

    ``len()`` is the exact body size before anything is read, so the request carries a Content-Length; the slice goes
    as the pieces of a FileRange (sendfile on plain HTTP, large reads on TLS), never held whole.
    """

    def __init__(self, source, start, end, filename, boundary):
        self.boundary = boundary
        self._head = ('--%s\r\nContent-Disposition: form-data; name="file"; filename="%s"\r\n'
                      'Content-Type: application/octet-stream\r\n\r\n' % (boundary, filename)).encode("ascii")
        self._tail = ("\r\n--%s--\r\n" % boundary).encode("ascii")
        self._body = source.body(start, end)
        self.len = len(self._head) + len(self._body) + len(self._tail)

    @property
    def content_type(self):
        return "multipart/form-data; boundary=%s" % self.boundary

    def __len__(self):
        return self.len

    def __iter__(self):
        yield self._head
        yield from self._body
        yield self._tail

    def close(self):
        self._body.close()
