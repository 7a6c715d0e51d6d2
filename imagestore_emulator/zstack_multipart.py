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
    """Streams the first file part of a multipart/form-data body without holding the body in memory.

    The body is read with ``readinto`` into one buffer of ``BUFFER`` bytes, reused to the end; ``sink`` is given
    memoryviews of it (valid until it returns), so a slice's bytes are copied once, from the socket into the buffer.
    A body that only has ``read`` (a test double) is copied in, and ``sink`` then gets ``bytes`` it may keep.
    """

    BUFFER = 4 * COPY_BLOCK

    def __init__(self, body, boundary):
        self._body = body
        self._delimiter = b"\r\n--" + boundary
        self._buf = bytearray(self.BUFFER)
        self._view = memoryview(self._buf)
        self._buf[:2] = b"\r\n"             # so the opening delimiter looks like every other one
        self._start, self._end = 0, 2        # the bytes received and not consumed yet: _buf[_start:_end]
        self._readinto = getattr(body, "readinto", None)

    def _fill(self):
        if self._body.remaining <= 0:
            return False
        if self._start:                      # what is left (a delimiter's length at most, or a header) to the front
            left = self._end - self._start
            self._view[:left] = self._view[self._start:self._end]
            self._start, self._end = 0, left
        if self._end == len(self._buf):
            raise MultipartError("malformed multipart part headers")
        if self._readinto is not None:
            self._end += self._readinto(self._view[self._end:])
        else:
            data = self._body.read(min(COPY_BLOCK, len(self._buf) - self._end))
            self._view[self._end:self._end + len(data)] = data
            self._end += len(data)
        return True

    def _piece(self, start, end):
        view = self._view[start:end]
        return view if self._readinto is not None else bytes(view)

    def _find(self, needle):
        index = self._buf.find(needle, self._start, self._end)
        return -1 if index < 0 else index

    def _pump(self, sink):
        """Pass the bytes before the next delimiter to ``sink``, consume the delimiter, return the count."""
        keep = len(self._delimiter) - 1
        total = 0
        while True:
            index = self._find(self._delimiter)
            if index >= 0:
                if index > self._start:
                    sink(self._piece(self._start, index))
                total += index - self._start
                self._start = index + len(self._delimiter)
                return total
            if self._end - self._start > keep:
                cut = self._end - keep
                sink(self._piece(self._start, cut))
                total += cut - self._start
                self._start = cut
            if not self._fill():
                raise MultipartError("the multipart body ends before its closing boundary")

    def _part_follows(self):
        while self._end - self._start < 2:
            if not self._fill():
                raise MultipartError("the multipart body ends after a boundary")
        if self._buf[self._start:self._start + 2] == b"--":
            return False
        while self._find(b"\r\n") < 0:
            if self._end - self._start > 1024 or not self._fill():
                raise MultipartError("malformed multipart boundary line")
        self._start = self._find(b"\r\n") + 2
        return True

    def _headers(self):
        while self._find(b"\r\n\r\n") < 0:
            if self._end - self._start > MAX_PART_HEADERS or not self._fill():
                raise MultipartError("malformed multipart part headers")
        end = self._find(b"\r\n\r\n")
        text = bytes(self._buf[self._start:end]).decode("latin-1")
        self._start = end + 4
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
    """Writes at most ``limit`` bytes of a slice to ``fh``; digests every byte it is given when ``digest`` (the slice
    came with an MD5 to check), and nothing otherwise."""

    def __init__(self, fh, limit, digest=True):
        self.fh = fh
        self.limit = limit
        self.length = 0
        self.md5 = hashlib.md5() if digest else None

    def __call__(self, chunk):
        room = self.limit - self.length
        if room > 0:
            data = chunk if len(chunk) <= room else chunk[:room]
            check_space(len(data))
            self.fh.write(data)
        if self.md5 is not None:
            self.md5.update(chunk)
        self.length += len(chunk)
