"""A tiny HTTP image store: the server of the contract suite's fourth, test-only provider (standard library only).

    python tests/contract/toystore/server.py --port 0 --data-dir DIR [--body-timeout S] [--verbose]

prints one line of JSON ({"url", "credentials": {"username", "password"}, "data_dir"}) and serves until SIGTERM.
State lives under DIR (files, sessions and the ranges they received), so a restart on the same DIR keeps it.

API (JSON; errors are {"error": {"code", "message"}}; every /v1 call but the login needs "Authorization: Bearer T"):
  POST   /v1/login                  {"username", "password"} -> 200 {"token"} | 401
  DELETE /v1/login                  log out -> 204
  GET    /v1/files/<path>           -> 200 {"path", "size", "sha256", "version", "modified"} | 404
  DELETE /v1/files/<path>           -> 204 | 404
  PUT    /v1/sessions/<id>          {"path", "size", "sha256"} -> 201 created | 200 the same session exists | 409 other content
  GET    /v1/sessions/<id>          -> 200 session {"id", "path", "size", "sha256", "missing", "in_flight", ...} | 404
  GET    /v1/sessions?path=<path>   -> 200 {"sessions": [...]}
  PUT    /v1/sessions/<id>/data     Content-Range: bytes S-E/SIZE -> 204 | 409 RANGE_RECEIVED or RANGE_IN_FLIGHT
                                    (Retry-After) | 404; ranges in any order, in parallel
  POST   /v1/sessions/<id>/commit   -> 200 file (the file at the path is replaced; the session ends)
                                    | 409 ranges missing or in flight | 422 SHA-256 differs from the declared one | 404
  DELETE /v1/sessions/<id>          -> 204 | 404
Control (no auth): GET /_control/files?path=P (stored bytes), GET /_control/stats, GET /_control/sessions,
POST /_control/reset.

Faults it survives: a body cut by a reset or a FIN releases its range at once; a stalled body releases it after
--body-timeout seconds; neither leaves a partial range counted, nor shows a traceback to anyone.
"""

import argparse
import hashlib
import json
import math
import os
import re
import secrets
import shutil
import signal
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

BLOCK = 256 * 1024
IDLE_TIMEOUT = 120.0
SESSION_ID = re.compile(r"^[0-9a-f]{32}$")
RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")


class Fail(Exception):
    def __init__(self, status, code, message, headers=None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def check_path(text):
    parts = [p for p in str(text or "").split("/") if p not in ("", ".")]
    if not parts or str(text).startswith("/") or ".." in parts or any(ord(c) < 32 for c in str(text)):
        raise Fail(400, "BAD_PATH", "path %r is not a relative path inside the store" % text)
    return "/".join(parts)


def complement(ranges, size):
    gaps, pos = [], 0
    for start, end in sorted(ranges):
        if start > pos:
            gaps.append([pos, start - 1])
        pos = max(pos, end + 1)
    if pos < size:
        gaps.append([pos, size - 1])
    return gaps


def merge(ranges):
    out = []
    for start, end in sorted(ranges):
        if out and start <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return out


def overlaps(ranges, start, end):
    return any(a <= end and start <= b for a, b in ranges)


class Store:
    """Files and sessions on disk (JSON beside the bytes); in-flight ranges and counters in memory."""

    def __init__(self, root, username, password):
        self.root, self.username, self.password = root, username, password
        self.lock = threading.Lock()
        self.tokens = set()
        self.load()

    def load(self):
        for sub in ("files", "sessions"):
            os.makedirs(os.path.join(self.root, sub), exist_ok=True)
        self.files = dict((m["path"], m) for m in self._metas("files"))
        self.sessions = dict((m["id"], m) for m in self._metas("sessions"))
        self.in_flight = {}             # session id -> [[start, end], ...]
        self.version = max([m["version"] for m in self.files.values()] + [0])
        self.stats = dict(payload_bytes=0, puts=0, conflicts=0, cut_bodies=0, commits=0, logins=0)

    def _metas(self, sub):
        folder = os.path.join(self.root, sub)
        for name in sorted(os.listdir(folder)):
            if name.endswith(".json"):
                with open(os.path.join(folder, name)) as fh:
                    yield json.load(fh)

    def blob(self, kind, key):
        name = hashlib.sha256(key.encode()).hexdigest() if kind == "files" else key
        return os.path.join(self.root, kind, name + ".bin")

    def save(self, kind, key, meta):
        path = self.blob(kind, key)[:-4] + ".json"
        with open(path + ".tmp", "w") as fh:
            json.dump(meta, fh)
        os.replace(path + ".tmp", path)

    def drop(self, kind, key):
        for path in (self.blob(kind, key), self.blob(kind, key)[:-4] + ".json"):
            if os.path.exists(path):
                os.unlink(path)

    def reset(self):
        with self.lock:
            for sub in ("files", "sessions"):
                shutil.rmtree(os.path.join(self.root, sub), ignore_errors=True)
            self.load()

    def view(self, s):
        return dict(s, missing=complement(s["received"], s["size"]), in_flight=sorted(self.in_flight.get(s["id"], [])),
                    received_bytes=sum(e - s0 + 1 for s0, e in s["received"]))

    def session(self, sid):
        if not SESSION_ID.match(sid):
            raise Fail(400, "BAD_SESSION_ID", "session id %r is not 32 lower-case hex digits" % sid)
        s = self.sessions.get(sid)
        if s is None:
            raise Fail(404, "NO_SESSION", "no upload session %s" % sid)
        return s


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT

    # -- plumbing -----------------------------------------------------------------------------------
    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))

    def _dispatch(self):
        self.body_left = int(self.headers.get("Content-Length") or 0)
        try:
            url = urlsplit(self.path)
            status, body, headers = self.route(url.path, parse_qs(url.query))
        except Fail as exc:
            status, body, headers = exc.status, {"error": {"code": exc.code, "message": exc.message}}, exc.headers
        except Exception:  # a bug of the toy store: its log gets the traceback, the client one sentence
            traceback.print_exc(file=sys.stderr)
            status, body, headers = 500, {"error": {"code": "INTERNAL", "message": "internal error; see the server's log"}}, {}
        if status is None or (self.body_left and not self.drain()):
            self.close_connection = True        # the client is gone or stalled: nobody to answer
            return
        self.answer(status, body, headers)

    do_GET = do_PUT = do_POST = do_DELETE = _dispatch

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

    def receive(self, sink):
        """Pass the body to ``sink(block)`` within the body timeout; False when it was cut or stalled."""
        self.connection.settimeout(self.server.body_timeout)
        try:
            while self.body_left:
                block = self.rfile.read(min(BLOCK, self.body_left))
                if not block:
                    return False
                sink(block)
                self.body_left -= len(block)
            return True
        except OSError:            # reset, timed out (a stalled body), broken
            return False
        finally:
            try:
                self.connection.settimeout(IDLE_TIMEOUT)
            except OSError:
                pass

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
        match = re.match(r"^/v1/sessions/([^/]+)(/data|/commit)?$", path)
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
                    now = time.time()
                    s = store.sessions[sid] = dict(id=sid, path=path, size=size, sha256=sha256, received=[], created=now,
                                                   updated=now)
                    with open(store.blob("sessions", sid), "wb") as fh:
                        fh.truncate(size)
                    store.save("sessions", sid, s)
                    return 201, store.view(s), None
                if (s["path"], s["size"], s["sha256"]) != (path, size, sha256):
                    raise Fail(409, "SESSION_TAKEN", "session %s exists for other content" % sid)
                return 200, store.view(s), None
        with store.lock:
            s = store.session(sid)
            if method == "GET":
                return 200, store.view(s), None
            if method == "DELETE":
                del store.sessions[sid]
                store.drop("sessions", sid)
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
            busy = store.in_flight.setdefault(sid, [])
            if overlaps(s["received"], start, end) or overlaps(busy, start, end):
                store.stats["conflicts"] += 1
                landed = overlaps(s["received"], start, end)
                raise Fail(409, "RANGE_RECEIVED" if landed else "RANGE_IN_FLIGHT", "bytes %d-%d overlap a range %s" % (
                    start, end, "already received" if landed else "still being received"),
                    headers={} if landed else {"Retry-After": int(math.ceil(self.server.body_timeout))})
            busy.append([start, end])
            store.stats["puts"] += 1
        position = [start]
        fd = os.open(store.blob("sessions", sid), os.O_WRONLY)

        def write(block):
            os.pwrite(fd, block, position[0])
            position[0] += len(block)
        try:
            complete = self.receive(write)
        finally:
            os.close(fd)
        with store.lock:
            busy = store.in_flight.get(sid) or []
            if [start, end] in busy:
                busy.remove([start, end])
            if not complete:
                store.stats["cut_bodies"] += 1
                self.body_left = 0
                return None, None, None
            s = store.session(sid)
            s["received"] = merge(s["received"] + [[start, end]])
            s["updated"] = time.time()
            store.save("sessions", sid, s)
            store.stats["payload_bytes"] += end - start + 1
        return 204, None, None

    def commit(self, store, sid):
        with store.lock:
            s = store.session(sid)
            missing = complement(s["received"], s["size"])
            if missing or store.in_flight.get(sid):
                raise Fail(409, "INCOMPLETE", "session %s misses %d bytes" % (sid, sum(e - a + 1 for a, e in missing)))
            digest = hashlib.sha256()
            with open(store.blob("sessions", sid), "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
            if digest.hexdigest() != s["sha256"]:
                raise Fail(422, "DIGEST_MISMATCH", "the received bytes have SHA-256 %s, not the declared %s"
                           % (digest.hexdigest(), s["sha256"]))
            store.version += 1
            meta = dict(path=s["path"], size=s["size"], sha256=s["sha256"], version=store.version, modified=time.time())
            os.replace(store.blob("sessions", sid), store.blob("files", s["path"]))
            store.files[s["path"]] = meta
            store.save("files", s["path"], meta)
            del store.sessions[sid]
            store.drop("sessions", sid)
            store.stats["commits"] += 1
            return 200, meta, None

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
        if what == "files" and method == "GET":
            path = check_path(query.get("path", [""])[0])
            with store.lock:
                if path not in store.files:
                    raise Fail(404, "NO_FILE", "no file at %s" % path)
                with open(store.blob("files", path), "rb") as fh:
                    return 200, fh.read(), {"Content-Type": "application/octet-stream"}
        raise Fail(404, "NO_ROUTE", "%s /_control/%s is not a control call" % (method, what))


class Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False          # a stalled client never holds up the stop
    allow_reuse_address = True
    request_queue_size = 64

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
    parser.add_argument("--username", default="toy")
    parser.add_argument("--password", default=None)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    password = args.password or secrets.token_urlsafe(12)
    server = Server((args.host, args.port), Handler)
    server.store = Store(os.path.abspath(args.data_dir), args.username, password)
    server.body_timeout, server.verbose = args.body_timeout, args.verbose

    def stop(signum, frame):
        raise SystemExit(0)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(json.dumps({"url": "http://%s:%d" % (args.host, server.server_address[1]), "data_dir": server.store.root,
                      "credentials": {"username": args.username, "password": password}}), flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
