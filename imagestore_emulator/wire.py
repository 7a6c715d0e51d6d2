"""The request and response objects every provider API sees, and the readers of request bodies.

Request bodies are never buffered whole: ``request.body`` is a file-like object limited to the
Content-Length (``BodyReader``) or decoding ``Transfer-Encoding: chunked`` (``ChunkedBodyReader``), so
a provider can stream a multi-gigabyte body straight to disk. Both readers count the seconds spent
waiting for the client (``read_seconds``), so a provider can tell its own processing time apart.
"""

import json
import queue
import threading
import time
from urllib.parse import parse_qs, unquote, urlsplit

COPY_BLOCK = 1024 * 1024
MAX_JSON_BODY = 16 * 1024 * 1024
MAX_CHUNK_LINE = 4096


class PipelinedDigests:
    """Hashers fed by a thread of their own, so that a handler receiving a body does not hash between its
    socket reads (the copy and the digest run on two cores). ``update()`` takes bytes the caller will not
    reuse (at most four pieces wait); ``close()`` waits until every piece is digested."""

    def __init__(self, hashers):
        self.hashers = list(hashers)
        self._queue = queue.Queue(maxsize=4)
        self._thread = threading.Thread(target=self._work, name="emulator-digest", daemon=True)
        self._thread.start()

    def _work(self):
        while True:
            piece = self._queue.get()
            if piece is None:
                return
            for hasher in self.hashers:
                hasher.update(piece)

    def update(self, data):
        self._queue.put(data)

    def close(self):
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None


class BodyReader:
    """File-like view of a request body, limited to its Content-Length."""

    def __init__(self, rfile, length):
        self._rfile = rfile
        self.length = length
        self.remaining = length
        self.read_seconds = 0.0

    def _timed(self, reader, arg):
        started = time.monotonic()
        try:
            return reader(arg)
        finally:
            self.read_seconds += time.monotonic() - started

    def read(self, size=-1):
        if self.remaining <= 0:
            return b""
        if size is None or size < 0 or size > self.remaining:
            size = self.remaining
        data = self._timed(self._rfile.read, size)
        if not data:
            raise ConnectionError("client closed the connection before the body was complete")
        self.remaining -= len(data)
        return data

    def readinto(self, buf):
        return self._readinto(buf, self._rfile.readinto)

    def readinto1(self, buf):
        """Like readinto, but returns after at most one read of the socket (what has arrived so far)."""
        return self._readinto(buf, getattr(self._rfile, "readinto1", self._rfile.readinto))

    def _readinto(self, buf, reader):
        if self.remaining <= 0:
            return 0
        view = memoryview(buf)
        if len(view) > self.remaining:
            view = view[:self.remaining]
        n = self._timed(reader, view)
        if not n:
            raise ConnectionError("client closed the connection before the body was complete")
        self.remaining -= n
        return n

    def drain(self):
        while self.remaining > 0:
            self.read(min(self.remaining, COPY_BLOCK))

    def copy_to(self, fileobj, hasher=None, before_write=None):
        """Copy the whole remaining body into ``fileobj``; return the number of bytes copied.
        ``before_write(n)`` is called before each write (the disk-space check)."""
        total = 0
        buf = bytearray(COPY_BLOCK)
        while self.remaining > 0:
            n = self.readinto(buf)
            chunk = memoryview(buf)[:n]
            if before_write is not None:
                before_write(n)
            fileobj.write(chunk)
            if hasher is not None:
                hasher.update(chunk)
            total += n
        return total


class ChunkedBodyReader:
    """A ``Transfer-Encoding: chunked`` request body (what requests sends for an empty file object).
    ``length`` is None; ``remaining`` is 1 until the last chunk was read, then 0."""

    length = None

    def __init__(self, rfile):
        self._rfile = rfile
        self._left = 0          # bytes left in the current chunk
        self.done = False
        self.read_seconds = 0.0

    @property
    def remaining(self):
        return 0 if self.done else 1

    def _line(self):
        started = time.monotonic()
        line = self._rfile.readline(MAX_CHUNK_LINE + 1)
        self.read_seconds += time.monotonic() - started
        if not line.endswith(b"\n"):
            raise ConnectionError("client closed the connection inside a chunked body")
        return line

    def _next_chunk(self):
        if self._left == 0 and not self.done:
            size_text = self._line().split(b";", 1)[0].strip()
            try:
                self._left = int(size_text, 16)
            except ValueError:
                raise ValueError("malformed chunk size line in a chunked body") from None
            if self._left < 0:
                raise ValueError("malformed chunk size line in a chunked body")
            if self._left == 0:
                while self._line() not in (b"\r\n", b"\n"):      # trailers
                    pass
                self.done = True

    def read(self, size=-1):
        out = bytearray()
        while not self.done and (size is None or size < 0 or len(out) < size):
            self._next_chunk()
            if self.done:
                break
            want = self._left if size is None or size < 0 else min(self._left, size - len(out))
            started = time.monotonic()
            data = self._rfile.read(want)
            self.read_seconds += time.monotonic() - started
            if not data:
                raise ConnectionError("client closed the connection inside a chunked body")
            out += data
            self._left -= len(data)
            if self._left == 0:
                self._line()        # the CRLF after the chunk data
        return bytes(out)

    def readinto(self, buf):
        data = self.read(len(buf))
        buf[:len(data)] = data
        return len(data)

    readinto1 = readinto

    def drain(self):
        while not self.done:
            self.read(COPY_BLOCK)

    def copy_to(self, fileobj, hasher=None, before_write=None):
        total = 0
        while not self.done:
            data = self.read(COPY_BLOCK)
            if not data:
                continue
            if before_write is not None:
                before_write(len(data))
            fileobj.write(data)
            if hasher is not None:
                hasher.update(data)
            total += len(data)
        return total


class Request:
    def __init__(self, handler, method, raw_path, body):
        parts = urlsplit(raw_path)
        self.handler = handler
        self.method = method
        self.raw_path = parts.path          # still percent-encoded
        self.path = unquote(parts.path)     # decoded
        self.query_string = parts.query
        self.query = parse_qs(parts.query, keep_blank_values=True)
        self.headers = handler.headers
        self.body = body
        self.started = time.monotonic()
        self._cached = None

    def arg(self, name, default=None):
        values = self.query.get(name)
        return values[-1] if values else default

    def header(self, name, default=None):
        return self.headers.get(name, default)

    @property
    def base_url(self):
        scheme = "https" if self.handler.server.tls else "http"
        host = self.headers.get("Host") or "%s:%d" % self.handler.server.server_address[:2]
        return "%s://%s" % (scheme, host)

    def read_body(self, limit=MAX_JSON_BODY):
        if self._cached is None:
            if self.body.length is None or self.body.length > limit:
                raise ValueError("request body too large")
            self._cached = self.body.read()
        return self._cached

    def json(self, default=None):
        data = self.read_body()
        if not data.strip():
            return default
        try:
            return json.loads(data.decode("utf-8"))
        except RecursionError:
            raise ValueError("the JSON document is nested too deeply") from None

    def processing_seconds(self):
        """Seconds since the request arrived, less the time spent waiting for its body."""
        return time.monotonic() - self.started - self.body.read_seconds


class Response:
    def __init__(self, status=200, body=b"", headers=None, file_path=None, content_type=None, reason=None):
        self.status = status
        self.body = body if body is not None else b""
        self.headers = dict(headers or {})
        self.file_path = file_path
        self.reason = reason   # the status line's text; None: the standard one
        if content_type:
            self.headers["Content-Type"] = content_type
        self.drop = False      # process the request but close the connection without answering
        self.close = False     # answer, then close the connection

    @classmethod
    def json(cls, obj, status=200, headers=None, reason=None):
        return cls(status, json.dumps(obj).encode("utf-8"), headers, content_type="application/json; charset=utf-8",
                   reason=reason)

    @classmethod
    def empty(cls, status=200, headers=None):
        return cls(status, b"", headers)

    @classmethod
    def file(cls, path, status=200):
        return cls(status, None, {"Content-Type": "application/octet-stream"}, file_path=path)

    @classmethod
    def text(cls, text, status=200, content_type="text/plain; charset=utf-8"):
        return cls(status, text.encode("utf-8"), content_type=content_type)
