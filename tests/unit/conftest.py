"""A scripted local HTTP server for the unit tests of the clients (test_http, the vSphere and ZStack adapters)."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@pytest.fixture
def http_server():
    """``start(respond) -> url``: a local HTTP/1.1 server that answers every request with
    ``respond(method, path, headers, body)``, which returns ``(status, headers, body bytes)``, or None to
    drop the connection without an answer. Every server started is shut down after the test."""
    servers = []

    def start(respond):
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _any(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                answer = respond(self.command, self.path, dict(self.headers), body)
                if answer is None:
                    self.close_connection = True
                    self.connection.close()
                    return
                status, headers, data = answer
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = _any

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        servers.append(server)
        return "http://127.0.0.1:%d" % server.server_address[1]

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
