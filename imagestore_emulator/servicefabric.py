"""Service Fabric Image Store: upload sessions, chunks and content, answered as the runtime does.

Protocol facts: ``/work/shared/protocols/servicefabric.md`` and the swagger excerpt beside it. State under
``data_dir`` (it survives a restart):

* ``content/<path>``           the image store itself, one file per store-relative path (``/`` separated)
* ``content.json``             ``{"next_version": n, "files": {path: version}}`` (FileVersion.VersionNumber)
* ``sessions/<dir>/``          one directory per session incarnation: ``session.json`` (id, path, size,
                               received ranges, times, committed) and ``data``, a sparse file every chunk
                               is written into at its offset, so a commit is a rename
* ``tmp/``                     whole-file uploads being received (cleared on start)

Chunks stream without the global lock: a chunk first reserves its byte range (so an overlapping chunk
that arrives meanwhile is refused), writes its body with ``os.pwrite``, and only then marks the range
received and persists the session.
"""

import os
import re
import shutil
import threading
import time
import uuid
from datetime import datetime, timezone
from urllib.parse import unquote

from imagestore_emulator.core import COPY_BLOCK, ProviderAPI, Response, read_json, write_json_atomic

API_VERSION_MIN = (1, 0)
API_VERSION_MAX = (9, 1)
# FileVersion epochs of the emulated image store replica: it never loses data nor reconfigures.
EPOCH_DATA_LOSS_NUMBER = "131510254310497004"
EPOCH_CONFIGURATION_NUMBER = "25769803776"
MAX_SEGMENT_BYTES = 255
MAX_FILE_SIZE = 2 ** 63 - 1
STAT_NAMES = ("chunk_requests", "chunk_bytes", "rejected_chunks", "whole_file_puts", "whole_file_bytes", "commits")

RANGE_NOT_SATISFIABLE = "FABRIC_E_UPLOAD_SESSION_RANGE_NOT_SATISFIABLE"
INVALID_SESSION_ID = "FABRIC_E_INVALID_UPLOAD_SESSION_ID"
ID_CONFLICT = "FABRIC_E_UPLOAD_SESSION_ID_CONFLICT"
INVALID_ARG = "E_INVALIDARG"
FILE_NOT_FOUND = "FABRIC_E_FILE_NOT_FOUND"

_OPERATION = re.compile(r"/(?:\$|%24)/([^/]*)$")
_API_VERSION = re.compile(r"^(\d+)(?:\.(\d+))?$")
_PREVIEW = re.compile(r"-preview(?:\.\d+)?$", re.IGNORECASE)
_CONTENT_RANGE = re.compile(r"^(?:bytes\s+)?(\d+)-(\d+)/(\d+)$", re.IGNORECASE)
_SEPARATORS = re.compile(r"[/\\]")


class _Fail(Exception):
    """An error answer (FabricError body) raised from anywhere inside a request."""

    def __init__(self, status, code, message):
        super().__init__(message)
        self.response = Response.json({"Error": {"Code": code, "Message": message}}, status)


def _iso(timestamp):
    """ISO 8601 in UTC with milliseconds and a Z, as the runtime writes dates."""
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _display(path):
    """The store path as a Windows cluster returns it (backslash separators)."""
    return path.replace("/", "\\")


def _normalise_path(text):
    """Turn a client's image store relative path into the internal ``a/b/c`` form.

    ``/`` and ``\\`` both separate; empty and ``.`` segments are dropped. Raises ``_Fail`` (400) for an
    empty, absolute, drive, ``..``, NUL/control-character or over-long path.
    """
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise _Fail(400, INVALID_ARG, "the image store path contains a NUL or control character")
    if text[:1] in ("/", "\\"):
        raise _Fail(400, INVALID_ARG, "the image store path must be relative: %r" % text)
    if ":" in text:
        raise _Fail(400, INVALID_ARG, "the image store path must not name a drive or a stream: %r" % text)
    parts = [p for p in _SEPARATORS.split(text) if p not in ("", ".")]
    if not parts:
        raise _Fail(400, INVALID_ARG, "the image store path is empty")
    if ".." in parts:
        raise _Fail(400, INVALID_ARG, "the image store path must not contain '..': %r" % text)
    if any(len(p.encode("utf-8", "surrogatepass")) > MAX_SEGMENT_BYTES for p in parts):
        raise _Fail(400, "FABRIC_E_PATH_TOO_LONG", "a name in the image store path is longer than %d bytes" % MAX_SEGMENT_BYTES)
    return "/".join(parts)


def _merge_range(ranges, start, end):
    """Return the sorted, merged list of inclusive ``[s, e]`` ranges with ``[start, end]`` added."""
    merged = []
    for s, e in sorted(list(ranges) + [[start, end]]):
        if merged and s <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return merged


def _complement(ranges, size):
    """The inclusive ranges of ``[0, size-1]`` not covered by the sorted, merged ``ranges``.

    Runtime quirk kept on purpose: a 0-byte file always expects ``(0, 0)``.
    """
    if size == 0:
        return [(0, 0)]
    gaps, position = [], 0
    for s, e in ranges:
        if s > position:
            gaps.append((position, s - 1))
        position = e + 1
    if position <= size - 1:
        gaps.append((position, size - 1))
    return gaps


def _overlaps(ranges, start, end):
    return any(s <= end and start <= e for s, e in ranges)


class _Session:
    """One upload session incarnation. Mutable fields are guarded by the API's lock."""

    def __init__(self, directory, sid, path, size, received=(), touched=None, committed=False):
        self.dir = directory
        self.id = sid
        self.path = path
        self.size = size
        self.received = [list(r) for r in received]
        self.touched = time.time() if touched is None else touched   # creation or last accepted chunk
        self.committed = committed
        self.in_flight = []            # (start, end) reserved by chunks whose body is streaming
        self.dropped = False           # deleted, expired, replaced or reset: late writers must give up
        self.persist_lock = threading.Lock()

    @property
    def data_path(self):
        return os.path.join(self.dir, "data")

    @property
    def meta_path(self):
        return os.path.join(self.dir, "session.json")

    def expected(self):
        return [] if self.committed else _complement(self.received, self.size)

    def to_json(self):
        return {"id": self.id, "path": self.path, "size": self.size, "received": self.received,
                "touched": self.touched, "committed": self.committed}

    def info(self):
        """UploadSessionInfo, 64-bit numbers as strings."""
        return {"StoreRelativePath": _display(self.path), "SessionId": self.id, "ModifiedDate": _iso(self.touched),
                "FileSize": str(self.size),
                "ExpectedRanges": [{"StartPosition": str(s), "EndPosition": str(e)} for s, e in self.expected()]}


class ServiceFabricAPI(ProviderAPI):
    """The Service Fabric Image Store REST API (``/ImageStore...``) of the emulator."""

    name = "servicefabric"

    # (method, lower-case operation after "/$/" or None, whether a content path is given) -> handler
    ROUTES = {
        ("GET", "getuploadsession", False): "_get_session_by_id",
        ("GET", "getuploadsession", True): "_get_sessions_by_path",
        ("PUT", "uploadchunk", True): "_upload_chunk",
        ("POST", "commituploadsession", False): "_commit",
        ("DELETE", "deleteuploadsession", False): "_delete_session",
        ("PUT", None, True): "_put_file",
        ("GET", None, True): "_get_content",
        ("GET", None, False): "_get_content",
        ("DELETE", None, True): "_delete_content",
    }

    def __init__(self, data_dir, config):
        super().__init__(data_dir, config)
        self._lock = threading.Lock()
        self._content_dir = os.path.join(data_dir, "content")
        self._sessions_dir = os.path.join(data_dir, "sessions")
        self._tmp_dir = os.path.join(data_dir, "tmp")
        self._index_path = os.path.join(data_dir, "content.json")
        self._load()

    # ----------------------------------------------------------------- state on disk

    def _load(self):
        """Read the state from ``data_dir`` (at start and after a reset)."""
        shutil.rmtree(self._tmp_dir, ignore_errors=True)
        for d in (self._content_dir, self._sessions_dir, self._tmp_dir):
            os.makedirs(d, exist_ok=True)
        index = read_json(self._index_path, {}) or {}
        self._versions = dict(index.get("files", {}))
        self._next_version = int(index.get("next_version", 1))
        self._stats = dict.fromkeys(STAT_NAMES, 0)
        self._sessions = {}
        for entry in os.scandir(self._sessions_dir):
            doc = read_json(os.path.join(entry.path, "session.json"))
            if not doc:
                shutil.rmtree(entry.path, ignore_errors=True)     # killed while it was being created
                continue
            session = _Session(entry.path, doc["id"], doc["path"], doc["size"], doc["received"], doc["touched"], doc["committed"])
            if not session.committed and not os.path.exists(session.data_path):
                session.received = []      # killed between the commit's rename and its record: claim nothing
            other = self._sessions.get(session.id)
            if other is not None:          # killed while an id was being reused: the newer incarnation wins
                if other.touched >= session.touched:
                    other, session = session, other
                self._drop_locked(other)
            self._sessions[session.id] = session

    def reset(self):
        """Forget every session, file and counter."""
        with self._lock:
            for session in self._sessions.values():
                session.dropped = True
            super().reset()
            self._load()

    def _persist(self, session):
        """Write the session's record; a later snapshot never loses to an earlier one."""
        with session.persist_lock:
            with self._lock:
                if session.dropped:
                    return
                doc = session.to_json()
            try:
                write_json_atomic(session.meta_path, doc)
            except FileNotFoundError:
                if not session.dropped:   # its directory vanished because the session was dropped meanwhile
                    raise

    def _drop_locked(self, session):
        session.dropped = True
        if self._sessions.get(session.id) is session:
            del self._sessions[session.id]
        shutil.rmtree(session.dir, ignore_errors=True)

    def _expiry(self):
        return float(self.config.get("sf_session_expiry_seconds", 1800))

    def _sweep_locked(self):
        """Drop expired sessions (never one with a chunk streaming into it)."""
        limit = time.time() - self._expiry()
        for session in list(self._sessions.values()):
            if session.touched < limit and not session.in_flight:
                self._drop_locked(session)

    def _content_file(self, path):
        return os.path.join(self._content_dir, *path.split("/")) if path else self._content_dir

    def _check_placement_locked(self, path):
        """Refuse a file path that is a folder, or below a file."""
        parts = path.split("/")
        for i in range(1, len(parts)):
            parent = self._content_file("/".join(parts[:i]))
            if os.path.exists(parent) and not os.path.isdir(parent):
                raise _Fail(400, INVALID_ARG, "'%s' is a file, not a folder" % _display("/".join(parts[:i])))
        if os.path.isdir(self._content_file(path)):
            raise _Fail(400, INVALID_ARG, "'%s' is a folder" % _display(path))

    def _store_locked(self, source, path):
        """Move ``source`` into the store at ``path`` (replacing a file there) and give it a new version."""
        self._check_placement_locked(path)
        target = self._content_file(path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.replace(source, target)
        os.utime(target)
        self._versions[path] = self._next_version
        self._next_version += 1
        self._save_index_locked()

    def _save_index_locked(self):
        write_json_atomic(self._index_path, {"next_version": self._next_version, "files": self._versions})

    # ----------------------------------------------------------------- request parsing

    @staticmethod
    def _check_api_version(request):
        text = request.arg("api-version")
        if text is None:
            raise _Fail(400, INVALID_ARG, "api-version is required")
        match = _API_VERSION.match(_PREVIEW.sub("", text.strip()))
        if not match or not API_VERSION_MIN <= (int(match.group(1)), int(match.group(2) or 0)) <= API_VERSION_MAX:
            raise _Fail(400, INVALID_ARG, "api-version %r is not supported (1.0 to 9.1)" % text)

    @staticmethod
    def _session_id(request, code):
        """The canonical session id, or ``_Fail`` (400, ``code``) when missing, malformed or all zeros."""
        text = request.arg("session-id")
        try:
            value = uuid.UUID(text)
        except (TypeError, ValueError):
            raise _Fail(400, code, "session-id must be a GUID, got %r" % text) from None
        if value.int == 0:
            raise _Fail(400, code, "session-id must not be the empty GUID")
        return str(value)

    @staticmethod
    def _content_range(request):
        header = request.header("Content-Range")
        if header is None:
            raise _Fail(400, INVALID_ARG, "the Content-Range header is required")
        match = _CONTENT_RANGE.match(header.strip())
        if not match:
            raise _Fail(400, RANGE_NOT_SATISFIABLE, "Content-Range %r is not 'bytes START-END/TOTAL'" % header)
        start, end, total = (int(g) for g in match.groups())
        if start > end:
            raise _Fail(400, RANGE_NOT_SATISFIABLE, "Content-Range %r starts after its end" % header)
        if total > MAX_FILE_SIZE:
            raise _Fail(400, RANGE_NOT_SATISFIABLE, "Content-Range %r: FileSize is a 64-bit number" % header)
        return start, end, total

    # ----------------------------------------------------------------- the real API

    def matches(self, path):
        return path == "/ImageStore" or path.startswith("/ImageStore/")

    def handle(self, request):
        """Answer one Image Store request. The ``timeout`` query argument is accepted whatever it holds:
        the runtime ignores an unparsable one, and no emulator operation waits long enough to need it."""
        try:
            self._check_api_version(request)
            with self._lock:
                self._sweep_locked()
            raw = request.raw_path[len("/ImageStore"):]
            operation = None
            match = _OPERATION.search(raw)
            if match:
                operation, raw = match.group(1).lower(), raw[:match.start()]
            raw = raw[1:] if raw.startswith("/") else raw      # what is left is the percent-encoded content path
            handler = self.ROUTES.get((request.method, operation, bool(raw)))
            if handler is None:
                raise _Fail(400, INVALID_ARG, "unsupported Image Store operation: %s %s" % (request.method, request.path))
            return getattr(self, handler)(request, _normalise_path(unquote(raw)) if raw else "")
        except _Fail as fail:
            return fail.response

    def _get_session_by_id(self, request, _path):
        sid = self._session_id(request, INVALID_SESSION_ID)
        with self._lock:
            session = self._sessions.get(sid)
            if session is None:
                return Response.empty(204)
            return Response.json({"UploadSessions": [session.info()]})

    def _get_sessions_by_path(self, request, path):
        with self._lock:
            found = sorted((s for s in self._sessions.values() if s.path == path), key=lambda s: (s.touched, s.id))
            if not found:
                return Response.empty(204)
            return Response.json({"UploadSessions": [s.info() for s in found]})

    def _upload_chunk(self, request, path):
        with self._lock:
            self._stats["chunk_requests"] += 1
        try:
            length = self._receive_chunk(request, path)
        except BaseException:
            with self._lock:
                self._stats["rejected_chunks"] += 1
            raise
        with self._lock:
            self._stats["chunk_bytes"] += length
        return Response.empty(200)

    def _receive_chunk(self, request, path):
        """Validate, reserve, stream and record one chunk; return its length."""
        sid = self._session_id(request, INVALID_SESSION_ID)
        start, end, total = self._content_range(request)
        length = end - start + 1
        if request.body.length != length:
            # The runtime does not compare them (the commit fails later); the emulator says so at once.
            raise _Fail(400, INVALID_ARG, "the body has %d bytes, Content-Range announces %d" % (request.body.length, length))
        with self._lock:
            session = self._chunk_session_locked(sid, path, total)
            if end >= total or _overlaps(session.received, start, end) or _overlaps(session.in_flight, start, end):
                raise _Fail(400, RANGE_NOT_SATISFIABLE, "bytes %d-%d are not inside one range session %s still expects: %s"
                            % (start, end, sid, session.expected()))
            session.in_flight.append((start, end))
            fd = os.open(session.data_path, os.O_WRONLY)   # opened now: a later incarnation's file is never touched
        try:
            self._write_body(request.body, fd, start)
        except BaseException:
            with self._lock:
                session.in_flight.remove((start, end))
            raise
        finally:
            os.close(fd)
        with self._lock:
            session.in_flight.remove((start, end))
            if session.dropped:
                # FABRIC_E_FILE_NOT_FOUND: like deleting an unknown session, the session is gone.
                raise _Fail(404, FILE_NOT_FOUND, "session %s was deleted or expired while the chunk arrived" % sid)
            session.received = _merge_range(session.received, start, end)
            session.touched = time.time()
        self._persist(session)
        return length

    def _chunk_session_locked(self, sid, path, total):
        """The open session a chunk belongs to; the first chunk of a new (or reused) id creates it."""
        session = self._sessions.get(sid)
        if session is not None and not session.committed:
            if session.path != path:
                raise _Fail(409, ID_CONFLICT, "session %s uploads '%s'" % (sid, _display(session.path)))
            if session.size != total:
                raise _Fail(400, INVALID_ARG, "session %s has FileSize %d, not %d" % (sid, session.size, total))
            return session
        if session is not None:       # an id may be reused once its session was committed
            self._drop_locked(session)
        directory = os.path.join(self._sessions_dir, uuid.uuid4().hex)
        os.makedirs(directory)
        session = _Session(directory, sid, path, total)
        os.close(os.open(session.data_path, os.O_WRONLY | os.O_CREAT, 0o644))
        write_json_atomic(session.meta_path, session.to_json())
        self._sessions[sid] = session
        return session

    @staticmethod
    def _write_body(body, fd, offset):
        buf = bytearray(COPY_BLOCK)
        view = memoryview(buf)
        while body.remaining > 0:
            n = body.readinto(buf)
            done = 0
            while done < n:
                done += os.pwrite(fd, view[done:n], offset + done)
            offset += n

    def _commit(self, request, _path):
        sid = self._session_id(request, INVALID_ARG)
        with self._lock:
            session = self._sessions.get(sid)
            if session is None:
                raise _Fail(400, INVALID_ARG, "no upload session %s" % sid)
            if session.committed:
                return Response.empty(200)
            missing = session.expected()
            if missing:
                raise _Fail(400, INVALID_ARG, "session %s still expects %s" % (sid, missing))
            self._store_locked(session.data_path, session.path)
            session.committed = True
            self._stats["commits"] += 1
        self._persist(session)
        return Response.empty(200)

    def _delete_session(self, request, _path):
        sid = self._session_id(request, INVALID_ARG)
        with self._lock:
            session = self._sessions.get(sid)
            if session is None:
                # The note says only "404"; FABRIC_E_FILE_NOT_FOUND is the 404 code the image store uses.
                raise _Fail(404, FILE_NOT_FOUND, "no upload session %s" % sid)
            self._drop_locked(session)
        return Response.empty(200)

    def _put_file(self, request, path):
        tmp = os.path.join(self._tmp_dir, uuid.uuid4().hex)
        try:
            with open(tmp, "wb") as fh:
                size = request.body.copy_to(fh)
            with self._lock:
                self._store_locked(tmp, path)
                self._stats["whole_file_puts"] += 1
                self._stats["whole_file_bytes"] += size
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return Response.empty(200)

    def _file_info(self, path, stat):
        return {"FileSize": str(stat.st_size),
                "FileVersion": {"VersionNumber": str(self._versions.get(path, 0)), "EpochDataLossNumber": EPOCH_DATA_LOSS_NUMBER,
                                "EpochConfigurationNumber": EPOCH_CONFIGURATION_NUMBER},
                "ModifiedDate": _iso(stat.st_mtime), "StoreRelativePath": _display(path)}

    def _get_content(self, _request, path):
        with self._lock:
            full = self._content_file(path)
            if os.path.isfile(full):
                return Response.json({"StoreFiles": [self._file_info(path, os.stat(full))], "StoreFolders": []})
            if not os.path.isdir(full):
                return Response.empty(404)
            files, folders = [], []
            for entry in sorted(os.scandir(full), key=lambda e: e.name):
                child = "%s/%s" % (path, entry.name) if path else entry.name
                if entry.is_dir():
                    count = sum(len(names) for _, _, names in os.walk(entry.path))
                    folders.append({"StoreRelativePath": _display(child), "FileCount": str(count)})
                else:
                    files.append(self._file_info(child, entry.stat()))
        if not files and not folders:
            return Response.empty(204)
        return Response.json({"StoreFiles": files, "StoreFolders": folders})

    def _delete_content(self, _request, path):
        with self._lock:
            full = self._content_file(path)
            if os.path.isdir(full):
                shutil.rmtree(full)
            elif os.path.isfile(full):
                os.unlink(full)
            else:
                raise _Fail(404, FILE_NOT_FOUND, "'%s' is not in the image store" % _display(path))
            self._versions = {p: v for p, v in self._versions.items() if p != path and not p.startswith(path + "/")}
            self._save_index_locked()
        return Response.empty(200)

    # ----------------------------------------------------------------- control API and health

    def control(self, request, rest):
        """``GET content/{path}`` (raw bytes), ``GET sessions``, ``POST sessions/{id}/expire``, ``GET stats``."""
        head, _, tail = rest.partition("/")
        if head == "content" and request.method == "GET":
            try:
                full = self._content_file(_normalise_path(tail))
            except _Fail:
                return Response.json({"error": "bad path: %r" % tail}, 400)
            if not os.path.isfile(full):
                return Response.json({"error": "no file at %r" % tail}, 404)
            return Response.file(full)
        if rest == "sessions" and request.method == "GET":
            return Response.json(self._session_list())
        if head == "sessions" and tail.endswith("/expire") and request.method == "POST":
            return self._expire(tail[:-len("/expire")])
        if rest == "stats" and request.method == "GET":
            with self._lock:
                return Response.json(dict(self._stats))
        return super().control(request, rest)

    def _session_list(self):
        with self._lock:
            self._sweep_locked()
            expiry = self._expiry()
            return [{"id": s.id, "path": s.path, "size": s.size,
                     "received": [{"start": a, "end": b} for a, b in s.received],
                     "in_flight": [{"start": a, "end": b} for a, b in sorted(s.in_flight)],
                     "committed": s.committed, "modified": _iso(s.touched), "expires": _iso(s.touched + expiry)}
                    for s in sorted(self._sessions.values(), key=lambda s: (s.touched, s.id))]

    def _expire(self, text):
        try:
            sid = str(uuid.UUID(text))
        except ValueError:
            return Response.json({"error": "not a session id: %r" % text}, 404)
        with self._lock:
            session = self._sessions.get(sid)
            if session is None:
                return Response.json({"error": "no session %s" % sid}, 404)
            self._drop_locked(session)
        return Response.json({"expired": sid})

    # ----------------------------------------------------------------- fault injection hooks

    OPERATION_NAMES = {
        "_get_session_by_id": "get", "_get_sessions_by_path": "get_by_path", "_upload_chunk": "chunk",
        "_commit": "commit", "_delete_session": "delete_session", "_put_file": "put_file",
        "_get_content": "content", "_delete_content": "delete_content",
    }

    def operation(self, request):
        raw = request.raw_path[len("/ImageStore"):]
        match = _OPERATION.search(raw)
        operation = match.group(1).lower() if match else None
        raw = raw[:match.start()] if match else raw
        handler = self.ROUTES.get((request.method, operation, bool(raw.strip("/"))))
        return self.OPERATION_NAMES.get(handler, "other")

    def expire_for(self, request):
        return self._expire(request.arg("session-id") or "").status == 200

    def error_response(self, status, message):
        code = {503: "FABRIC_E_NOT_READY", 504: "FABRIC_E_TIMEOUT"}.get(status, "E_FAIL")
        return Response.json({"Error": {"Code": code, "Message": message}}, status)

    def describe(self):
        """Supported api-versions and the number of live sessions."""
        with self._lock:
            self._sweep_locked()
            return {"api_versions": "%d.%d-%d.%d" % (API_VERSION_MIN + API_VERSION_MAX), "sessions": len(self._sessions)}
