"""Service Fabric Image Store: upload sessions, chunks and content, answered as the runtime does.

Protocol facts: ``/work/shared/protocols/servicefabric.md`` and the swagger excerpt beside it. This module
holds the routes and the operations; ``servicefabric_wire`` the FabricError format and request parsing,
``servicefabric_store`` the state on disk, ``servicefabric_gateway`` what the HTTP gateway adds (the
``timeout`` argument, the cluster endpoints sfctl calls, client-certificate renegotiation).

Chunks stream without the global lock: a chunk first reserves its byte range (so an overlapping chunk
that arrives meanwhile is refused), writes its body with ``os.pwrite``, and only then marks the range
received and persists the session. A chunk whose body breaks or stalls releases its range.

A full disk is answered as the runtime answers a Win32 ``ERROR_DISK_FULL``: 500, status line and
``Code`` ``0x80070070`` (the HRESULT the runtime has no name for), Message "There is not enough space on
the disk."; see docs/emulator.md.
"""

import os
import re
import shutil
import threading
import time
import uuid
from urllib.parse import unquote

from imagestore_emulator.provider import ProviderAPI
from imagestore_emulator.servicefabric_gateway import Gateway
from imagestore_emulator.servicefabric_store import PATH_COUNTERS, ImageStoreState, merge_range, overlaps
from imagestore_emulator.servicefabric_wire import (
    API_VERSION_MAX, API_VERSION_MIN, DISK_FULL, DISK_FULL_MESSAGE, E_FAIL, FILE_NOT_FOUND, INVALID_ARG,
    INVALID_SESSION_ID, NOT_READY, RANGE_NOT_SATISFIABLE, TIMEOUT, Fail, check_api_version, check_size, content_range,
    display, fabric_error, iso, normalise_path, server_timeout, session_id)
from imagestore_emulator.storage import check_space, is_disk_full
from imagestore_emulator.wire import COPY_BLOCK, Response

# FileVersion epochs of the emulated image store replica: it never loses data nor reconfigures.
EPOCH_DATA_LOSS_NUMBER = "131510254310497004"
EPOCH_CONFIGURATION_NUMBER = "25769803776"

_OPERATION = re.compile(r"/(?:\$|%24)/([^/]*)$")


def _stamp(path):
    """(inode, mtime, size) of a stored file, or None: a replacement (a rename onto it) changes the inode."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def _same_bytes(a, b):
    """Whether two files of the same size hold the same bytes (read in COPY_BLOCK steps, nothing hashed)."""
    bufs = bytearray(COPY_BLOCK), bytearray(COPY_BLOCK)
    views = memoryview(bufs[0]), memoryview(bufs[1])
    with open(a, "rb", buffering=0) as fa, open(b, "rb", buffering=0) as fb:
        while True:
            n = fa.readinto(bufs[0])
            m = fb.readinto(bufs[1])
            if n != m or views[0][:n] != views[1][:m]:
                return False
            if not n:
                return True


class ServiceFabricAPI(Gateway, ImageStoreState, ProviderAPI):
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
    OPERATION_NAMES = {
        "_get_session_by_id": "get", "_get_sessions_by_path": "get_by_path", "_upload_chunk": "chunk",
        "_commit": "commit", "_delete_session": "delete_session", "_put_file": "put_file",
        "_get_content": "content", "_delete_content": "delete_content",
    }

    def __init__(self, data_dir, config):
        super().__init__(data_dir, config)
        self._init_state(data_dir)

    def reset(self):
        """Forget every session, file and counter."""
        with self._lock:
            for session in self._sessions.values():
                session.dropped = True
            if self._journal is not None:
                self._journal.close()
                self._journal = None
            super().reset()
            self._load()

    # ----------------------------------------------------------------- dispatching

    def matches(self, path):
        return path in ("/", "/ImageStore") or path.startswith(("/ImageStore/", "/$/"))

    def _split(self, request):
        """(handler name or None, percent-encoded content path) of an /ImageStore request."""
        raw = request.raw_path[len("/ImageStore"):]
        operation = None
        match = _OPERATION.search(raw)
        if match:
            operation, raw = match.group(1).lower(), raw[:match.start()]
        raw = raw[1:] if raw.startswith("/") else raw      # what is left is the percent-encoded content path
        return self.ROUTES.get((request.method, operation, bool(raw.strip("/")))), raw

    def accepts_chunked(self, request):
        """requests sends an empty file object as ``Transfer-Encoding: chunked``; HTTP.sys takes it."""
        return request.path.startswith("/ImageStore/") and self._split(request)[0] == "_put_file"

    def handle(self, request):
        """Answer one request; an operation that outlasts the request's ``timeout`` answers 504."""
        try:
            if not request.path.startswith("/ImageStore"):
                return self._cluster_call(request)
            check_api_version(request)
            with self._lock:
                self._sweep_locked()
            handler, raw = self._split(request)
            if handler is None:
                raise Fail(400, INVALID_ARG, "unsupported Image Store operation: %s %s" % (request.method, request.path[:200]))
            response = getattr(self, handler)(request, normalise_path(unquote(raw)) if raw else "")
        except Fail as fail:
            response = fail.response
        return self._timed_out(request, response)

    # ----------------------------------------------------------------- upload sessions

    def _get_session_by_id(self, request, _path):
        sid = session_id(request, INVALID_SESSION_ID)
        with self._lock:
            session = self._sessions.get(sid)
            if session is None:
                return Response.empty(204)
            return Response.json({"UploadSessions": [session.info()]})

    def _get_sessions_by_path(self, request, path):
        with self._lock:
            found = sorted(self._sessions_of_path_locked(path), key=lambda s: (s.touched, s.id))
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
            self._count_locked(path, "chunk", length)
        return Response.empty(200)

    def _receive_chunk(self, request, path):
        """Validate, reserve, stream and record one chunk; return its length."""
        sid = session_id(request, INVALID_SESSION_ID)
        start, end, total = content_range(request, self.max_file_size())
        length = end - start + 1
        if request.body.length != length:
            # The runtime does not compare them (the commit fails later); the emulator says so at once.
            raise Fail(400, INVALID_ARG, "the body has %s bytes, Content-Range announces %d"
                       % ("an unknown number of" if request.body.length is None else request.body.length, length))
        with self._lock:
            previous = self._sessions.get(sid)
            if previous is not None and previous.committed and previous.path == path and previous.size == total:
                self._count_locked(path, "repeat_chunk", length)      # its bytes were stored by that commit
            session = self._chunk_session_locked(sid, path, total)
            if overlaps(session.received, start, end):
                self._count_locked(path, "repeat_chunk", length)
            if end >= total or overlaps(session.received, start, end) or overlaps(session.in_flight, start, end):
                raise Fail(400, RANGE_NOT_SATISFIABLE, "bytes %d-%d are not inside one range session %s still expects: %s"
                           % (start, end, sid, session.expected()))
            session.in_flight.append((start, end))
            fd = os.open(session.data_path, os.O_WRONLY)   # opened now: a later incarnation's file is never touched
        try:
            self._write_body(request.body, fd, start)
        except BaseException:
            with self._lock:
                session.in_flight.remove((start, end))
                self._trim_locked(session)
            raise
        finally:
            os.close(fd)
        with self._lock:
            session.in_flight.remove((start, end))
            if session.dropped:
                # FABRIC_E_FILE_NOT_FOUND: like deleting an unknown session, the session is gone.
                raise Fail(404, FILE_NOT_FOUND, "session %s was deleted or expired while the chunk arrived" % sid)
            session.received = merge_range(session.received, start, end)
            session.touched = time.time()
        self._persist(session)
        return length

    @staticmethod
    def _trim_locked(session):
        """A chunk that failed gives its bytes back, as the runtime deletes the staging file of a failed write:
        the data file is cut to what the session still holds (received or in flight)."""
        keep = max([e + 1 for _, e in list(session.received) + list(session.in_flight)], default=0)
        try:
            if os.path.getsize(session.data_path) > keep:
                os.truncate(session.data_path, keep)
        except OSError:
            pass

    @staticmethod
    def _write_body(body, fd, offset):
        buf = bytearray(COPY_BLOCK)
        view = memoryview(buf)
        while body.remaining > 0:
            n = body.readinto(buf)
            check_space(n)
            done = 0
            while done < n:
                done += os.pwrite(fd, view[done:n], offset + done)
            offset += n

    def _commit(self, request, _path):
        sid = session_id(request, INVALID_ARG)
        with self._lock:
            session = self._sessions.get(sid)
            if session is None:
                raise Fail(400, INVALID_ARG, "no upload session %s" % sid)
            if session.committed:
                return Response.empty(200)
            done = session.commit_done
            if done is None:
                missing = session.expected()
                if missing:
                    raise Fail(400, INVALID_ARG, "session %s still expects %s" % (sid, missing))
                delay = float(self.config.get("sf_commit_seconds") or 0)
                if delay <= 0:
                    self._commit_locked(session)
                else:
                    done = session.commit_done = threading.Event()
                    session.commit_error = None
                    threading.Thread(target=self._slow_commit, args=(session, delay, done), daemon=True,
                                     name="sf-commit-" + sid).start()
        if done is None:
            self._persist(session)
            return Response.empty(200)
        limit = server_timeout(request)
        if not done.wait(max(0.0, limit - request.processing_seconds())):
            return fabric_error(504, TIMEOUT, "the commit of session %s did not complete within the timeout of %d seconds;"
                                " it goes on in the background" % (sid, limit))
        error = getattr(session, "commit_error", None)
        if error is not None:
            raise error
        return Response.empty(200)

    def _commit_locked(self, session):
        check_space(session.size)               # the runtime assembles the file from its chunks: it needs the room
        self._store_locked(session.data_path, session.path)
        session.committed = True
        self._stats["commits"] += 1

    def _slow_commit(self, session, delay, done):
        """A commit that takes ``sf_commit_seconds``: it completes whether or not its request still waits."""
        time.sleep(delay)
        try:
            with self._lock:
                if not session.dropped and not session.committed:
                    self._commit_locked(session)
            self._persist(session)
        except Fail as fail:
            session.commit_error = fail
        except OSError as exc:
            session.commit_error = self._disk_fail(exc) if is_disk_full(exc) else Fail(500, E_FAIL, "the commit failed: %s" % exc)
        finally:
            with self._lock:
                session.commit_done = None
            done.set()

    def _delete_session(self, request, _path):
        sid = session_id(request, INVALID_ARG)
        with self._lock:
            session = self._sessions.get(sid)
            if session is None:
                # The note says only "404"; FABRIC_E_FILE_NOT_FOUND is the 404 code the image store uses.
                raise Fail(404, FILE_NOT_FOUND, "no upload session %s" % sid)
            self._drop_locked(session)
        return Response.empty(200)

    # ----------------------------------------------------------------- content

    def _put_file(self, request, path):
        if request.body.length is not None:
            check_size(request.body.length, self.max_file_size())
        tmp = os.path.join(self._tmp_dir, uuid.uuid4().hex)
        limit = self.max_file_size()
        received = [0]

        def before_write(n):
            received[0] += n
            check_size(received[0], limit)          # a chunked body has no length to check up front
            check_space(n)

        try:
            with open(tmp, "wb") as fh:
                size = request.body.copy_to(fh, None, before_write)
            # Outside the lock: is this the body the previous whole-file PUT stored at the path (the counters of
            # bodies sent twice)? Compared byte for byte, only when that file is still there with the same size.
            with self._lock:
                stamp = self._put_stored.get(path)
            target = self._content_file(path)
            same = stamp is not None and stamp[2] == size and _stamp(target) == stamp and _same_bytes(tmp, target)
            with self._lock:
                repeat = same and self._put_stored.get(path) == stamp and _stamp(target) == stamp
                self._store_locked(tmp, path)
                self._put_stored[path] = _stamp(target)
                self._stats["whole_file_puts"] += 1
                self._stats["whole_file_bytes"] += size
                self._count_locked(path, "file", size)
                if repeat:
                    self._count_locked(path, "repeat_file", size)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return Response.empty(200)

    def _file_info(self, path, stat):
        return {"FileSize": str(stat.st_size),
                "FileVersion": {"VersionNumber": str(self._versions.get(path, 0)), "EpochDataLossNumber": EPOCH_DATA_LOSS_NUMBER,
                                "EpochConfigurationNumber": EPOCH_CONFIGURATION_NUMBER},
                "ModifiedDate": iso(stat.st_mtime), "StoreRelativePath": display(path)}

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
                    folders.append({"StoreRelativePath": display(child), "FileCount": str(count)})
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
                raise Fail(404, FILE_NOT_FOUND, "'%s' is not in the image store" % display(path))
            self._forget_locked(path)
            self._put_stored = {p: d for p, d in self._put_stored.items() if p != path and not p.startswith(path + "/")}
        return Response.empty(200)

    # ----------------------------------------------------------------- control API and health

    def control(self, request, rest):
        """``GET content/{path}`` (raw bytes), ``GET sessions``, ``POST sessions/{id}/expire``, ``GET stats``,
        ``GET received`` (per-path counters of bodies accepted and bodies for what was already stored)."""
        head, _, tail = rest.partition("/")
        if head == "content" and request.method == "GET":
            try:
                full = self._content_file(normalise_path(tail))
            except Fail:
                return Response.json({"error": "bad path: %r" % tail[:200]}, 400)
            if not os.path.isfile(full):
                return Response.json({"error": "no file at %r" % tail[:200]}, 404)
            return Response.file(full)
        if rest == "sessions" and request.method == "GET":
            return Response.json(self._session_list())
        if head == "sessions" and tail.endswith("/expire") and request.method == "POST":
            return self._expire(tail[:-len("/expire")])
        if rest == "stats" and request.method == "GET":
            with self._lock:
                return Response.json(dict(self._stats))
        if rest == "received" and request.method == "GET":
            with self._lock:
                totals = {key: sum(c[key] for c in self._paths.values()) for key in PATH_COUNTERS}
                return Response.json({"paths": {p: dict(c) for p, c in sorted(self._paths.items())}, "totals": totals,
                                      "gateway": dict(self._gateway_stats)})
        return super().control(request, rest)

    def _expire(self, text):
        try:
            sid = str(uuid.UUID(text))
        except ValueError:
            return Response.json({"error": "not a session id: %r" % text[:64]}, 404)
        with self._lock:
            session = self._sessions.get(sid)
            if session is None:
                return Response.json({"error": "no session %s" % sid}, 404)
            self._drop_locked(session)
        return Response.json({"expired": sid})

    # ----------------------------------------------------------------- fault and error hooks

    def operation(self, request):
        if not request.path.startswith("/ImageStore"):
            return "cluster"
        return self.OPERATION_NAMES.get(self._split(request)[0], "other")

    def expire_for(self, request):
        return self._expire(request.arg("session-id") or "").status == 200

    def error_response(self, status, message, code=None):
        code = code or {503: NOT_READY, 504: TIMEOUT}.get(status, E_FAIL)
        return fabric_error(status, code, message)

    def request_error(self, status, message):
        """The runtime's gateway answers a request it cannot parse with E_INVALIDARG."""
        return fabric_error(status, INVALID_ARG, message)

    @staticmethod
    def _disk_fail(exc):
        return Fail(500, DISK_FULL, DISK_FULL_MESSAGE)

    def disk_full(self, request, exc):
        return self._disk_fail(exc).response

    def describe(self):
        """Supported api-versions and the number of live sessions."""
        with self._lock:
            self._sweep_locked()
            return {"api_versions": "%d.%d-%d.%d" % (API_VERSION_MIN + API_VERSION_MAX), "sessions": len(self._sessions)}
