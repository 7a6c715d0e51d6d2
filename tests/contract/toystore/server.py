"""A tiny HTTP image store: the server of the contract suite's fourth, test-only provider.

    PYTHONPATH=tests/contract:. python -m toystore.server --port 0 --data-dir DIR [--body-timeout S]
        [--tls-cert PEM --tls-key PEM] [--verbose]

prints one line of JSON ({"url", "credentials": {"username", "password"}, "data_dir"}) and serves until SIGTERM.
State lives under DIR (store.py: files, sessions and the ranges they received), so a restart on the same DIR keeps it.
Standard library, and the emulator's fault rules and full-disk switch (imagestore_emulator.faults, .storage).

API (JSON; errors are {"error": {"code", "message"}}; every /v1 call but the login needs "Authorization: Bearer T"):
  POST   /v1/login                  {"username", "password"} -> 200 {"token"} | 401                       (login)
  DELETE /v1/login                  log out -> 204                                                          (logout)
  GET    /v1/files/<path>           -> 200 {"path", "size", "sha256", "version", "modified"} | 404          (file_get)
  DELETE /v1/files/<path>           -> 204 | 404                                                            (file_delete)
  PUT    /v1/sessions/<id>          {"path", "size", "sha256"} -> 201 created | 200 the same session exists
                                    | 409 other content                                                     (session_put)
  GET    /v1/sessions/<id>          -> 200 session {"id", "path", "size", "sha256", "missing", "in_flight", ...}
                                    | 404                                                                   (session_get)
  GET    /v1/sessions?path=<path>   -> 200 {"sessions": [...]}                                              (session_list)
  PUT    /v1/sessions/<id>/data     Content-Range: bytes S-E/SIZE -> 204 | 409 RANGE_RECEIVED or RANGE_IN_FLIGHT
                                    (Retry-After) | 404; ranges in any order, in parallel                   (data)
  POST   /v1/sessions/<id>/commit   -> 200 file (the file at the path is replaced; the session ends)
                                    | 409 ranges missing or in flight | 422 SHA-256 differs from the declared one | 404 (commit)
  DELETE /v1/sessions/<id>          -> 204 | 404                                                            (session_delete)
  any write on a full disk          -> 507 {"error": {"code": "NO_SPACE", "message": "the store's disk is full (...)"}}
Control (no auth): GET /_control/files?path=P (stored bytes), GET /_control/stats, GET /_control/sessions,
POST /_control/reset; /_control/faults: POST {"rules": [...], "seed": n} adds fault rules, GET {"rules", "fired"},
DELETE clears both.

Fault rules are the emulator's (imagestore_emulator/faults.py: action, count, after, probability, seed), matched by
the operation names in brackets above (provider "toystore" or "*"): close_after_bytes, status [retry_after, code],
status_after, delay, drop_response, expire (the session the request names ends), enospc (content writes fail as on
a full disk once ``bytes`` were written).

Faults it survives: a body cut by a reset or a FIN releases its range at once; a stalled body releases it after
--body-timeout seconds; neither leaves a partial range counted, nor shows a traceback to anyone; a full disk, real
or injected, is answered 507 NO_SPACE.
"""

import argparse
import contextlib
import json
import math
import os
import re
import secrets
import signal
import socket
import ssl
import sys
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from imagestore_emulator.faults import FaultError, Faults
from imagestore_emulator.storage import is_disk_full, simulated_full_disk
from toystore.store import Fail, Store, check_path, complement, overlaps, write_content

PROVIDER = "toystore"
BLOCK = 256 * 1024
IDLE_TIMEOUT = 120.0
RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")
SESSION_PATH = re.compile(r"^/v1/sessions/([^/]+)(/data|/commit)?$")


def operation(method, path):
    """The name fault rules match a request on (see the API above)."""
    if path == "/v1/login":
        return "login" if method == "POST" else "logout"
    if path.startswith("/v1/files/"):
        return "file_%s" % method.lower()
    if path == "/v1/sessions":
        return "session_list"
    match = SESSION_PATH.match(path)
    if match:
        return {"/data": "data", "/commit": "commit"}.get(match.group(2)) or "session_%s" % method.lower()
    return "other"


def error_body(code, message):
    return {"error": {"code": code, "message": message}}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT

    # -- plumbing -----------------------------------------------------------------------------------
    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))

    def _dispatch(self):
        try:
            self.body_left = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.body_left, self.close_connection = 0, True
            return self.answer(400, error_body("BAD_REQUEST", "Content-Length is not a number"))
        url = urlsplit(self.path)
        rule = self.server.faults.match(PROVIDER, operation(self.command, url.path), url.path) \
            if url.path.startswith("/v1/") else None
        action = rule["action"] if rule else None
        if action == "close_after_bytes":
            self.receive(lambda block: None, limit=int(rule["bytes"]))
            self.close_connection = True
            return None
        if action == "status":
            status, body, headers = self.fault_answer(rule, "injected fault: HTTP %d" % rule["status"])
        else:
            if action == "delay":
                time.sleep(rule["ms"] / 1000.0)
            elif action == "expire":
                self.expire(url.path)
            full = simulated_full_disk(int(rule["bytes"])) if action == "enospc" else contextlib.nullcontext()
            with full:
                status, body, headers = self.handle_api(url)
            if action == "status_after" and status is not None and not self.body_left:
                status, body, headers = self.fault_answer(rule, "injected fault: HTTP %d after the operation completed"
                                                          % rule["status"])
        if status is None or (self.body_left and not self.drain()):
            self.close_connection = True        # the client is gone or stalled: nobody to answer
            return None
        if action == "drop_response":           # done, and the answer lost on the way
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return None
        return self.answer(status, body, headers)

    do_GET = do_PUT = do_POST = do_DELETE = _dispatch

    def handle_api(self, url):
        """(status, body, headers) of the request; a full disk (real or injected) is 507 NO_SPACE, a bug of ours a 500."""
        try:
            return self.route(url.path, parse_qs(url.query))
        except Fail as exc:
            return exc.status, error_body(exc.code, exc.message), exc.headers
        except Exception as exc:  # pylint: disable=broad-except  # every answer in the API's format, never a traceback
            if is_disk_full(exc):
                with self.server.store.lock:
                    self.server.store.stats["disk_full"] += 1
                return 507, error_body("NO_SPACE", "the store's disk is full (%s)" % os.strerror(exc.errno)), {}
            traceback.print_exc(file=sys.stderr)        # the store's log gets the traceback, the client one sentence
            return 500, error_body("INTERNAL", "internal error; see the server's log"), {}

    @staticmethod
    def fault_answer(rule, message):
        headers = {"Retry-After": rule["retry_after"]} if "retry_after" in rule else {}
        return int(rule["status"]), error_body(rule.get("code") or "INJECTED_FAULT", message), headers

    def answer(self, status, body, headers=None):
        data = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else b"")
        try:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, str(value))
            if body is not None and not isinstance(body, bytes):
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            self.close_connection = True

    def receive(self, sink, limit=None):
        """Pass the body (at most ``limit`` bytes of it) to ``sink(block)`` within the body timeout; False when it was cut
        or stalled. What ``sink`` raises (a full disk) is raised, with the rest of the body left to drain."""
        want = self.body_left if limit is None else min(limit, self.body_left)
        self.connection.settimeout(self.server.body_timeout)
        try:
            while want:
                try:
                    block = self.rfile.read(min(BLOCK, want))
                except OSError:            # reset, timed out (a stalled body), broken
                    return False
                if not block:
                    return False
                self.body_left -= len(block)
                want -= len(block)
                sink(block)
            return True
        finally:
            with contextlib.suppress(OSError):
                self.connection.settimeout(IDLE_TIMEOUT)

    def drain(self):
        return self.receive(lambda block: None)

    def json_body(self):
        chunks = []
        if self.body_left > 1 << 20 or not self.receive(chunks.append):
            raise Fail(400, "BAD_BODY", "a JSON body of at most 1 MiB is expected")
        try:
            return json.loads(b"".join(chunks) or b"{}")
        except ValueError:
            raise Fail(400, "BAD_BODY", "the body is not JSON")

    # -- routes -------------------------------------------------------------------------------------
    def route(self, path, query):
        store, method = self.server.store, self.command
        if path.startswith("/_control/"):
            return self.control(store, method, path[len("/_control/"):], query)
        if path == "/v1/login":
            return self.login(store, method)
        token = (self.headers.get("Authorization") or "")[len("Bearer "):]
        if token not in store.tokens:
            raise Fail(401, "UNAUTHORIZED", "log in first (POST /v1/login); the token is missing or expired")
        if path.startswith("/v1/files/"):
            return self.file(store, method, check_path(unquote(path[len("/v1/files/"):])))
        if path == "/v1/sessions" and method == "GET":
            wanted = check_path(query.get("path", [""])[0])
            with store.lock:
                return 200, {"sessions": [store.view(s) for s in store.sessions.values() if s["path"] == wanted]}, None
        match = SESSION_PATH.match(path)
        if match:
            sid, sub = unquote(match.group(1)), match.group(2)
            if sub is None:
                return self.session(store, method, sid)
            if sub == "/data" and method == "PUT":
                return self.put_range(store, sid)
            if sub == "/commit" and method == "POST":
                return self.commit(store, sid)
        raise Fail(404 if method in ("GET", "DELETE") else 405, "NO_ROUTE", "%s %s is not an API call" % (method, path))

    def login(self, store, method):
        if method == "DELETE":
            store.tokens.discard((self.headers.get("Authorization") or "")[len("Bearer "):])
            return 204, None, None
        body = self.json_body()
        if (body.get("username"), body.get("password")) != (store.username, store.password):
            raise Fail(401, "BAD_CREDENTIALS", "wrong user name or password")
        token = secrets.token_hex(16)
        store.tokens.add(token)
        store.stats["logins"] += 1
        return 200, {"token": token}, None

    def file(self, store, method, path):
        with store.lock:
            meta = store.files.get(path)
            if meta is None:
                raise Fail(404, "NO_FILE", "no file at %s" % path)
            if method == "GET":
                return 200, meta, None
            if method == "DELETE":
                del store.files[path]
                store.drop("files", path)
                return 204, None, None
        raise Fail(405, "NO_ROUTE", "%s on a file is not an API call" % method)

    def session(self, store, method, sid):
        if method == "PUT":
            body = self.json_body()
            path, size, sha256 = check_path(body.get("path")), body.get("size"), body.get("sha256")
            if not isinstance(size, int) or size < 0 or not re.match(r"^[0-9a-f]{64}$", str(sha256)):
                raise Fail(400, "BAD_SESSION", "give path, size (bytes) and sha256 (64 lower-case hex digits)")
            with store.lock:
                try:
                    s = store.session(sid)
                except Fail as exc:
                    if exc.status != 404:
                        raise
                    return 201, store.view(store.create_session(sid, path, size, sha256)), None
                if (s["path"], s["size"], s["sha256"]) != (path, size, sha256):
                    raise Fail(409, "SESSION_TAKEN", "session %s exists for other content" % sid)
                return 200, store.view(s), None
        with store.lock:
            s = store.session(sid)
            if method == "GET":
                return 200, store.view(s), None
            if method == "DELETE":
                store.end_session(sid)
                return 204, None, None
        raise Fail(405, "NO_ROUTE", "%s on a session is not an API call" % method)

    def put_range(self, store, sid):
        match = RANGE.match(self.headers.get("Content-Range") or "")
        with store.lock:
            s = store.session(sid)
            start, end, size = [int(x) for x in match.groups()] if match else (0, -1, -1)
            if not match or size != s["size"] or end < start or end >= size or self.body_left != end - start + 1:
                raise Fail(400, "BAD_RANGE", "Content-Range must be 'bytes S-E/%d' with S <= E < %d and Content-Length "
                                             "E-S+1" % (s["size"], s["size"]))
            busy = store.in_flight.setdefault(s["gen"], [])
            if overlaps(s["received"], start, end) or overlaps(busy, start, end):
                store.stats["conflicts"] += 1
                landed = overlaps(s["received"], start, end)
                raise Fail(409, "RANGE_RECEIVED" if landed else "RANGE_IN_FLIGHT", "bytes %d-%d overlap a range %s" % (
                    start, end, "already received" if landed else "still being received"),
                    headers={} if landed else {"Retry-After": int(math.ceil(self.server.body_timeout))})
            busy.append([start, end])
            store.stats["puts"] += 1
            fd = os.open(store.blob("sessions", sid), os.O_WRONLY)
        position = [start]

        def write(block):
            write_content(fd, block, position[0])
            position[0] += len(block)
        try:
            complete = self.receive(write)
        finally:
            os.close(fd)
            with store.lock:
                busy = store.in_flight.get(s["gen"]) or []
                if [start, end] in busy:
                    busy.remove([start, end])
        with store.lock:
            if not complete:
                store.stats["cut_bodies"] += 1
                self.body_left = 0
                return None, None, None
            store.receive_range(s, start, end)
        return 204, None, None

    def commit(self, store, sid):
        with store.lock:
            s = store.session(sid)
            missing = complement(s["received"], s["size"])
            if missing or store.in_flight.get(s["gen"]):
                raise Fail(409, "INCOMPLETE", "session %s misses %d bytes" % (sid, sum(e - a + 1 for a, e in missing)))
            return 200, store.commit(s), None

    def expire(self, path):
        """The ``expire`` fault: the session the request names ends, as if its time ran out."""
        match = SESSION_PATH.match(path)
        store = self.server.store
        with store.lock:
            if match and unquote(match.group(1)) in store.sessions:
                store.end_session(unquote(match.group(1)))
                store.stats["expired"] += 1

    def control(self, store, method, what, query):
        if what == "stats" and method == "GET":
            with store.lock:
                return 200, dict(store.stats, files=len(store.files), sessions=len(store.sessions)), None
        if what == "sessions" and method == "GET":
            with store.lock:
                return 200, {"sessions": [store.view(s) for s in store.sessions.values()]}, None
        if what == "reset" and method == "POST":
            store.reset()
            return 204, None, None
        if what == "faults":
            return self.faults(method)
        if what == "files" and method == "GET":
            path = check_path(query.get("path", [""])[0])
            with store.lock:
                if path not in store.files:
                    raise Fail(404, "NO_FILE", "no file at %s" % path)
                with open(store.blob("files", path), "rb") as fh:
                    return 200, fh.read(), {"Content-Type": "application/octet-stream"}
        raise Fail(404, "NO_ROUTE", "%s /_control/%s is not a control call" % (method, what))

    def faults(self, method):
        faults = self.server.faults
        if method == "DELETE":
            faults.clear()
        elif method == "POST":
            body = self.json_body()
            try:
                if not isinstance(body, dict):
                    raise FaultError("the body must be a JSON object")
                faults.add(body.get("rules", [body] if "action" in body else []), seed=body.get("seed"))
            except FaultError as exc:
                raise Fail(400, "BAD_RULE", str(exc))
        elif method != "GET":
            raise Fail(405, "NO_ROUTE", "%s /_control/faults is not a control call" % method)
        return 200, faults.state(), None


class Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False          # a stalled client never holds up the stop
    allow_reuse_address = True
    request_queue_size = 64
    tls = None                      # an ssl.SSLContext: serve HTTPS

    def finish_request(self, request, client_address):
        # the TLS handshake in the worker thread: a slow or failing client never blocks accept()
        if self.tls is not None:
            try:
                request.settimeout(30)
                request = self.tls.wrap_socket(request, server_side=True)
                request.settimeout(None)
            except OSError:             # ssl.SSLError included: a client that does not trust us, a port scan
                with contextlib.suppress(OSError):
                    request.close()
                return
        super().finish_request(request, client_address)

    def handle_error(self, request, client_address):
        kind = sys.exc_info()[0]
        if kind is not None and not issubclass(kind, OSError):
            traceback.print_exc(file=sys.stderr)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--body-timeout", type=float, default=30.0, help="seconds a request body may stall")
    parser.add_argument("--tls-cert", help="PEM certificate: serve HTTPS (with --tls-key)")
    parser.add_argument("--tls-key", help="PEM private key of --tls-cert")
    parser.add_argument("--username", default="toy")
    parser.add_argument("--password", default=None)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    password = args.password or secrets.token_urlsafe(12)
    server = Server((args.host, args.port), Handler)
    server.store = Store(os.path.abspath(args.data_dir), args.username, password)
    server.faults = Faults()
    server.body_timeout, server.verbose = args.body_timeout, args.verbose
    if args.tls_cert:
        server.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.tls.load_cert_chain(args.tls_cert, args.tls_key)

    def stop(signum, frame):
        raise SystemExit(0)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(json.dumps({"url": "%s://%s:%d" % ("https" if server.tls else "http", args.host, server.server_address[1]),
                      "data_dir": server.store.root, "credentials": {"username": args.username, "password": password}}),
          flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
