"""HTTP core of the emulator: one threaded server, one port, three provider APIs.

Each provider API is a class with this small interface (see ``ProviderAPI``):

* ``name``                    -- "servicefabric", "vsphere" or "zstack"
* ``matches(path)``           -- True when a request path belongs to this API
* ``handle(request)``         -- answer one request of the real API, returning a ``Response``
* ``control(request, rest)``  -- answer ``/_emulator/<name>/<rest>`` (read-back, inspection)
* ``reset()``                 -- forget every session, file and object (back to the seeded state)

Request bodies are never buffered whole by the core: ``request.body`` is a file-like object limited
to Content-Length, so a provider can stream a multi-gigabyte chunk straight to disk.
"""

import json
import os
import queue
import shutil
import socket
import ssl
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from imagestore_emulator.faults import FaultError, Faults

COPY_BLOCK = 1024 * 1024
MAX_JSON_BODY = 16 * 1024 * 1024


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

    def read(self, size=-1):
        if self.remaining <= 0:
            return b""
        if size is None or size < 0 or size > self.remaining:
            size = self.remaining
        data = self._rfile.read(size)
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
        n = reader(view)
        if not n:
            raise ConnectionError("client closed the connection before the body was complete")
        self.remaining -= n
        return n

    def drain(self):
        while self.remaining > 0:
            self.read(min(self.remaining, COPY_BLOCK))

    def copy_to(self, fileobj, hasher=None):
        """Copy the whole remaining body into ``fileobj``; return the number of bytes copied."""
        total = 0
        buf = bytearray(COPY_BLOCK)
        while self.remaining > 0:
            n = self.readinto(buf)
            chunk = memoryview(buf)[:n]
            fileobj.write(chunk)
            if hasher is not None:
                hasher.update(chunk)
            total += n
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
            if self.body.length > limit:
                raise ValueError("request body too large")
            self._cached = self.body.read()
        return self._cached

    def json(self, default=None):
        data = self.read_body()
        if not data.strip():
            return default
        return json.loads(data.decode("utf-8"))


class Response:
    def __init__(self, status=200, body=b"", headers=None, file_path=None, content_type=None):
        self.status = status
        self.body = body if body is not None else b""
        self.headers = dict(headers or {})
        self.file_path = file_path
        if content_type:
            self.headers["Content-Type"] = content_type
        self.drop = False      # process the request but close the connection without answering

    @classmethod
    def json(cls, obj, status=200, headers=None):
        return cls(status, json.dumps(obj).encode("utf-8"), headers, content_type="application/json; charset=utf-8")

    @classmethod
    def empty(cls, status=200, headers=None):
        return cls(status, b"", headers)

    @classmethod
    def file(cls, path, status=200):
        return cls(status, None, {"Content-Type": "application/octet-stream"}, file_path=path)

    @classmethod
    def text(cls, text, status=200):
        return cls(status, text.encode("utf-8"), content_type="text/plain; charset=utf-8")


class ProviderAPI:
    """Base class of a provider API (documentation of the interface, with defaults)."""

    name = "base"

    def __init__(self, data_dir, config):
        self.data_dir = data_dir
        self.config = config
        os.makedirs(data_dir, exist_ok=True)

    def matches(self, path):
        raise NotImplementedError

    def handle(self, request):
        raise NotImplementedError

    def control(self, request, rest):
        return Response.json({"error": "not found"}, 404)

    def reset(self):
        shutil.rmtree(self.data_dir, ignore_errors=True)
        os.makedirs(self.data_dir, exist_ok=True)

    def describe(self):
        """What the start line and /_emulator/health show about this API."""
        return {}

    def operation(self, request):
        """This API's name for the operation a request performs (fault rules match on it)."""
        return "%s %s" % (request.method, request.path)

    def expire_for(self, request):
        """Expire the session ``request`` names (the ``expire`` fault); False when there is none."""
        return False

    def error_response(self, status, message):
        """An error answer in this API's own error format (used by the ``status`` fault)."""
        return Response.json({"error": message}, status)


def write_json_atomic(path, obj):
    """Persist a small JSON document so a crash never leaves half a file behind."""
    tmp = "%s.tmp.%d.%d" % (path, os.getpid(), threading.get_ident())
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_json(path, default=None):
    try:
        with open(path, "r", encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return default


class Config(dict):
    """Emulator settings, readable by every provider and changeable through POST /_emulator/config."""

    DEFAULTS = {
        "latency_ms": 0,
        "sf_session_expiry_seconds": 1800,
        "vsphere_session_expiry_seconds": 300,
        "vsphere_username": "administrator@vsphere.local",
        "vsphere_password": "Emulator-Passw0rd!",
        "zstack_username": "admin",
        "zstack_password": "Emulator-ZStack-Pw1!",
        "zstack_idle_seconds": 30,
        "zstack_session_seconds": 7200,
    }

    def __init__(self, **overrides):
        super().__init__(self.DEFAULTS)
        for key, value in overrides.items():
            if value is not None:
                self[key] = value


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "imagestore-emulator/1.0"
    rbufsize = 1024 * 1024
    wbufsize = 0

    def log_message(self, format, *args):  # noqa: A002  (signature of the base class)
        if self.server.verbose:
            super().log_message(format, *args)

    def _dispatch(self):
        server = self.server
        length = self.headers.get("Content-Length")
        try:
            length = int(length) if length is not None else 0
        except ValueError:
            self.send_error(400, "bad Content-Length")
            return
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.send_error(411, "chunked request bodies are not supported; send Content-Length")
            self.close_connection = True
            return
        body = BodyReader(self.rfile, length)
        request = Request(self, self.command, self.path, body)
        try:
            response = server.app.route(request)
            if response is None:          # a fault closed the connection on purpose
                self.close_connection = True
                return
        except (ConnectionError, socket.timeout, ssl.SSLError):
            self.close_connection = True
            return
        except Exception as exc:  # the emulator answers 500 like a real server, and logs the cause
            traceback.print_exc()
            response = Response.json({"error": "emulator internal error: %s" % exc}, 500)
        # A body the handler did not read would poison the kept-alive connection.
        if body.remaining:
            if body.remaining > 64 * 1024 * 1024:
                self.close_connection = True
            else:
                try:
                    body.drain()
                except (ConnectionError, OSError):
                    self.close_connection = True
                    return
        latency = server.app.config.get("latency_ms") or 0
        if latency and not request.path.startswith("/_emulator/"):
            time.sleep(latency / 1000.0)
        if response.drop:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self._send(request, response)

    def _send(self, request, response):
        self.send_response(response.status)
        headers = dict(response.headers)
        if response.file_path is not None:
            size = os.path.getsize(response.file_path)
            headers["Content-Length"] = str(size)
        else:
            headers["Content-Length"] = str(len(response.body))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if request.method == "HEAD":
            return
        if response.file_path is not None:
            with open(response.file_path, "rb") as fh:
                shutil.copyfileobj(fh, self.wfile, COPY_BLOCK)
        elif response.body:
            self.wfile.write(response.body)

    do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = do_HEAD = _dispatch


class EmulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, app, host, port, tls_context=None, verbose=False):
        self.app = app
        self.tls = tls_context is not None
        self.verbose = verbose
        self._tls_context = tls_context
        super().__init__((host, port), _Handler)

    def get_request(self):
        sock, addr = super().get_request()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock, addr

    def finish_request(self, request, client_address):
        # TLS handshake in the worker thread, so one slow or failing client never blocks accept().
        if self._tls_context is not None:
            try:
                request.settimeout(30)
                request = self._tls_context.wrap_socket(request, server_side=True)
                request.settimeout(None)
            except (ssl.SSLError, OSError):
                try:
                    request.close()
                except OSError:
                    pass
                return
        super().finish_request(request, client_address)

    def handle_error(self, request, client_address):
        if self.verbose:
            super().handle_error(request, client_address)


class App:
    """Routes requests to the provider APIs and answers the /_emulator/ control API."""

    def __init__(self, data_dir, config, providers, faults=None):
        self.data_dir = data_dir
        self.config = config
        self.providers = providers
        self.faults = faults or Faults()
        self.started = time.time()

    def route(self, request):
        """The provider's answer, with any fault rule applied; None: close the connection unanswered."""
        path = request.path
        if path.startswith("/_emulator/"):
            return self._control(request, path[len("/_emulator/"):])
        for provider in self.providers:
            if provider.matches(path):
                rule = self.faults.match(provider.name, provider.operation(request), path)
                if rule is None:
                    return provider.handle(request)
                return self._apply_fault(rule, provider, request)
        return Response.json({"error": "no such API: %s %s" % (request.method, path)}, 404)

    @staticmethod
    def _apply_fault(rule, provider, request):
        action = rule["action"]
        if action == "close_after_bytes":
            left = int(rule["bytes"])
            while left > 0 and request.body.remaining:
                left -= len(request.body.read(min(left, COPY_BLOCK)))
            return None
        if action == "status":
            headers = {"Retry-After": str(rule["retry_after"])} if "retry_after" in rule else {}
            response = provider.error_response(int(rule["status"]), "injected fault: HTTP %d" % rule["status"])
            response.headers.update(headers)
            return response
        if action == "delay":
            time.sleep(rule["ms"] / 1000.0)
        elif action == "expire":
            provider.expire_for(request)
        response = provider.handle(request)
        if action == "drop_response":
            response.drop = True
        return response

    def _control(self, request, rest):
        if rest == "health":
            return Response.json({"status": "ok", "uptime": time.time() - self.started,
                                  "providers": {p.name: p.describe() for p in self.providers}})
        if rest == "reset" and request.method == "POST":
            for provider in self.providers:
                provider.reset()
            return Response.json({"status": "reset"})
        if rest == "faults":
            if request.method == "DELETE":
                self.faults.clear()
            elif request.method == "POST":
                body = request.json(default={}) or {}
                rules = body.get("rules", [body] if "action" in body else [])
                try:
                    self.faults.add(rules, seed=body.get("seed"))
                except FaultError as exc:
                    return Response.json({"error": str(exc)}, 400)
            return Response.json(self.faults.state())
        if rest == "config":
            if request.method in ("POST", "PUT", "PATCH"):
                changes = request.json(default={}) or {}
                unknown = sorted(set(changes) - set(self.config))
                if unknown:
                    return Response.json({"error": "unknown settings: %s" % ", ".join(unknown)}, 400)
                self.config.update(changes)
            return Response.json(dict(self.config))
        name, _, sub = rest.partition("/")
        for provider in self.providers:
            if provider.name == name:
                return provider.control(request, sub)
        return Response.json({"error": "no such control path: /_emulator/%s" % rest}, 404)
