"""HTTP handling of the emulator: one threaded server, one port, keep-alive connections.

A connection is served by one ``_Handler``: it parses the request head, builds the body reader, applies
the body time-out (a body that sends nothing for ``body_timeout_seconds`` is abandoned and its connection
closed without an answer, as a gateway's entity-body timer does), lets the ``App`` answer, drains or drops
what the answer did not read, and writes the answer. Whatever the input, no Python traceback reaches the
client or the log: the ``App`` answers errors in the provider's own format and logs one line.
"""

import os
import shutil
import socket
import ssl
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from imagestore_emulator.wire import COPY_BLOCK, BodyReader, ChunkedBodyReader, Request

DRAIN_LIMIT = 64 * 1024 * 1024
BROKEN = (ConnectionError, socket.timeout, ssl.SSLError)


def log_line(text):
    """One line on stderr (the emulator's log)."""
    try:
        sys.stderr.write("imagestore-emulator: %s\n" % " ".join(str(text).split()))
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "imagestore-emulator/1.0"
    rbufsize = 1024 * 1024
    wbufsize = 0

    def setup(self):
        super().setup()
        self.requests_served = 0        # requests answered on this connection before the current one

    def log_message(self, format, *args):  # noqa: A002  (signature of the base class)
        if self.server.verbose:
            super().log_message(format, *args)

    def _content_length(self):
        text = self.headers.get("Content-Length")
        if text is None:
            return 0
        if not text.strip().isdigit():
            raise ValueError("bad Content-Length: %r" % text[:40])
        return int(text)

    def _dispatch(self):
        app = self.server.app
        served = self.requests_served
        self.requests_served += 1
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        try:
            length = self._content_length()
        except ValueError as exc:
            request = Request(self, self.command, self.path, BodyReader(self.rfile, 0))
            self.close_connection = True
            self._send(request, app.error_for(request, 400, str(exc)))
            return
        body = ChunkedBodyReader(self.rfile) if chunked else BodyReader(self.rfile, length)
        request = Request(self, self.command, self.path, body)
        if chunked and not app.accepts_chunked(request):
            self.close_connection = True
            self._send(request, app.error_for(request, 411, "chunked request bodies are not supported; send Content-Length"))
            return
        refusal = app.gate(request, served)
        if refusal is not None:
            self.close_connection = True
            self._send(request, refusal)
            return
        timeout = float(app.config.get("body_timeout_seconds") or 0)
        if body.remaining and timeout > 0:
            self.connection.settimeout(timeout)
        try:
            response = app.route(request)
            if response is None:          # a fault closed the connection on purpose
                self.close_connection = True
                return
            if body.remaining and not self._finish_body(body):
                return
        except BROKEN as exc:
            self.close_connection = True
            if isinstance(exc, socket.timeout):
                log_line("%s %s: the request body stalled (nothing for %g s); connection closed, what it held released"
                         % (request.method, request.raw_path, timeout))
            return
        finally:
            if not self.close_connection:
                try:
                    self.connection.settimeout(None)
                except OSError:
                    self.close_connection = True
        latency = app.config.get("latency_ms") or 0
        if latency and not request.path.startswith("/_emulator/"):
            time.sleep(latency / 1000.0)
        if response.drop:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if response.close:
            self.close_connection = True
        self._send(request, response)

    def _finish_body(self, body):
        """A body the answer did not read would poison the kept-alive connection: drain it, or close."""
        if body.length is None or body.remaining > DRAIN_LIMIT:
            self.close_connection = True
            return True
        try:
            body.drain()
        except (OSError, ValueError):
            self.close_connection = True
            return False
        return True

    def _send(self, request, response):
        self.send_response(response.status, response.reason)
        headers = dict(response.headers)
        if response.file_path is not None:
            size = os.path.getsize(response.file_path)
            headers["Content-Length"] = str(size)
        else:
            headers["Content-Length"] = str(len(response.body))
        if self.close_connection:
            headers["Connection"] = "close"
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

    def __init__(self, app, host, port, tls_context=None, verbose=False, client_certs=False):
        self.app = app
        self.tls = tls_context is not None
        self.client_certs = client_certs      # TLS with required client certificates
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
