"""The multipart/form-data body a slice arrives in, streamed without holding it in memory."""

import hashlib

from imagestore_emulator.storage import check_space
from imagestore_emulator.wire import COPY_BLOCK

MAX_PART_HEADERS = 64 * 1024


class MultipartError(ValueError):
    """The slice body is not the multipart/form-data document the receiver expects."""


def multipart_boundary(content_type):
    """The boundary of a multipart/form-data Content-Type, as bytes."""
    kind, _, params = (content_type or "").partition(";")
    if kind.strip().lower() != "multipart/form-data":
        raise MultipartError("the slice must be sent as multipart/form-data")
    for param in params.split(";"):
        key, _, value = param.strip().partition("=")
        value = value.strip().strip('"')
        if key.strip().lower() == "boundary" and 0 < len(value) <= 200:
            return value.encode("latin-1")
    raise MultipartError("the multipart/form-data Content-Type has no boundary")


class MultipartReader:
    """Streams the first file part of a multipart/form-data body without holding the body in memory."""

    def __init__(self, body, boundary):
        self._body = body
        self._delimiter = b"\r\n--" + boundary
        self._buf = bytearray(b"\r\n")      # so the opening delimiter looks like every other one

    def _fill(self):
        if self._body.remaining <= 0:
            return False
        self._buf += self._body.read(COPY_BLOCK)
        return True

    def _pump(self, sink):
        """Pass the bytes before the next delimiter to ``sink``, consume the delimiter, return the count."""
        keep = len(self._delimiter) - 1
        total = 0
        while True:
            index = self._buf.find(self._delimiter)
            if index >= 0:
                sink(self._buf[:index])
                del self._buf[:index + len(self._delimiter)]
                return total + index
            if len(self._buf) > keep:
                count = len(self._buf) - keep
                sink(self._buf[:count])
                del self._buf[:count]
                total += count
            if not self._fill():
                raise MultipartError("the multipart body ends before its closing boundary")

    def _part_follows(self):
        while len(self._buf) < 2:
            if not self._fill():
                raise MultipartError("the multipart body ends after a boundary")
        if self._buf[:2] == b"--":
            return False
        while self._buf.find(b"\r\n") < 0:
            if len(self._buf) > 1024 or not self._fill():
                raise MultipartError("malformed multipart boundary line")
        del self._buf[:self._buf.find(b"\r\n") + 2]
        return True

    def _headers(self):
        while self._buf.find(b"\r\n\r\n") < 0:
            if len(self._buf) > MAX_PART_HEADERS or not self._fill():
                raise MultipartError("malformed multipart part headers")
        end = self._buf.find(b"\r\n\r\n")
        text = bytes(self._buf[:end]).decode("latin-1")
        del self._buf[:end + 4]
        headers = {}
        for line in text.split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return headers

    def copy_file_part(self, sink):
        """Feed the content of the first part that has a filename to ``sink``; return its length."""
        self._pump(lambda chunk: None)                  # preamble
        while self._part_follows():
            if "filename=" in self._headers().get("content-disposition", ""):
                return self._pump(sink)
            self._pump(lambda chunk: None)              # a form field: not part of the image
        raise MultipartError("the multipart body has no file part")


class SliceSink:
    """Writes at most ``limit`` bytes of a slice to ``fh`` and digests every byte it is given."""

    def __init__(self, fh, limit):
        self.fh = fh
        self.limit = limit
        self.length = 0
        self.md5 = hashlib.md5()

    def __call__(self, chunk):
        room = self.limit - self.length
        if room > 0:
            data = chunk if len(chunk) <= room else chunk[:room]
            check_space(len(data))
            self.fh.write(data)
        self.md5.update(chunk)
        self.length += len(chunk)

