"""ZStack part of the emulator: REST API v1 and the image-store slice receiver.

Serves ``/zstack/v1/...`` (sessions, the asynchronous api-job envelope, queries, long jobs and the
resumable image upload of ``GetUploadImageJobDetails``) and ``POST /imagestore/upload`` (the receiver
the web console sends slices to). It follows ``shared/protocols/zstack.md`` and the seed
``shared/seeds/003_*.txt``; where the note leaves a question the zstackio/zstack sources decided:

* ``rest/.../RestServer.java``: sync failure = 503 ``{"error": ErrorCode}``; async call = 202
  ``{"location"}``, poll 202 ``{}`` / 200 / 503, 404 "the job has been expired"; transport errors
  (missing Authorization, no API mapping, wrong method, body without the action key, bad query)
  are plain-text 400/404/405. ``doAuth`` accepts any OAuth token and the session is checked by the
  API interceptor, so an unknown or expired session fails an async call through its api-job (503
  ``ID.1001`` on the poll) and a sync call with 503 ``ID.1001``.
* ``longjob/.../LongJobApiInterceptor.java``: cancel refused for Succeeded/Failed, resume only
  Suspended, delete only Succeeded/Canceled/Failed, all as argument errors (``SYS.1007``). The
  sources have no duplicate check for ``uploadImage::<imageId>``; the emulator refuses a second
  non-final job for the same imageId with ``SYS.1007`` too.
* ``image/.../ImageManagerImpl.java`` (GetUploadImageJobDetails): only non-final jobs carrying the
  tag, and only once their image and its backup-storage ref exist (a Waiting job is not listed).
* ``image/.../UploadImageTracker.java``: no byte within the idle limit of tracking start ->
  ``SYS.1006`` "upload session expired" and the image is deleted directly (gone, not ``Deleted``);
  idle after bytes arrived -> ``IMG.1001`` wrapped in ``LONG_JOB.1002``, job Suspended, image kept.
  A resume restarts the timer.
* ``longjob/.../LongJobManagerImpl.java`` and ``LongJobUtils``: ``jobResult`` is the JSON text of the
  AddImage event (``{"inventory": ImageInventory, ...}``) while tracking and on success, the JSON of
  the ErrorCode on failure, suspension or cancel; a resume keeps the suspension error there.
* ``image/.../ImageApiInterceptor.java``: ISO forces format iso; formats qcow2/raw/vmdk/iso; a backup
  storage that is not Connected is an operation error (``SYS.1006``), an unknown uuid ``SYS.1003``.
* ``image/.../ImageBase.java``: expunge needs the image Deleted on the named storage; calculateImageHash
  keeps an md5Sum that is already set (so it only validates and returns the inventory here).

The slice receiver is closed source; its rules are the brief's: see ``_slice_rules``.

Fault injection (``imagestore_emulator/faults.py``) names the operations login, logout, poll, query, submit,
details, action, delete, slice and other (``operation``). ``expire`` on a slice idle-suspends its long job at once
(the slice is then refused with 400 ``SYS.1006`` and the job waits for a resume); on an API call it drops the
caller's OAuth session (``ID.1001`` follows). ``status`` 503 answers ``{"error": ErrorCode}`` with ``SYS.1010``
(management server not ready: the call did not run), as RestServer wraps a failed API; any other status is plain
text, as RestServer's own answers (500 carries the exception's message) and a proxy's are.
"""

import copy
import os
import re
import threading
import time

from imagestore_emulator.provider import ProviderAPI
from imagestore_emulator.storage import read_json
from imagestore_emulator.wire import Response
from imagestore_emulator.zstack_api_ops import ApiOps
from imagestore_emulator.zstack_multipart import MultipartReader, SliceSink, multipart_boundary
from imagestore_emulator.zstack_receiver import SliceReceiver
from imagestore_emulator.zstack_state import ZStackState
from imagestore_emulator.zstack_wire import (
    API_PREFIX, ASYNC, BACKUP_STORAGE_UUID, BASE_URL_TOKEN, OPERATION_NAMES, PUBLIC, ROUTES, UPLOAD_PATH, RestError,
    ZStackError, DESCRIPTIONS, error_code, new_uuid, sha512_hex)

__all__ = ["ZStackAPI", "MultipartReader", "SliceSink", "multipart_boundary", "BACKUP_STORAGE_UUID", "sha512_hex"]


class ZStackAPI(ApiOps, SliceReceiver, ZStackState, ProviderAPI):
    """The ZStack management API (``/zstack/v1``) and the image-store receiver (``/imagestore/upload``)."""

    name = "zstack"

    def __init__(self, data_dir, config):
        super().__init__(data_dir, config)
        self._lock = threading.RLock()
        self._routes = [(re.compile(re.escape(API_PREFIX) + pattern), methods) for pattern, methods in ROUTES]
        self._state_path = os.path.join(data_dir, "state.json")
        self._inflight = {}             # image uuid -> slice indexes being written now
        self._finalizing = set()        # long job uuids whose image digest is being computed
        self._digests = {}              # long job uuid -> PrefixDigest of its data file (see _hash_prefix)
        self._stats = self._zero_stats()
        self._state = read_json(self._state_path) or self._seed()
        os.makedirs(self._images_dir(), exist_ok=True)
        for job_uuid, job in self._state["jobs"].items():
            upload = job["upload"]
            if not upload["received"]:
                upload["total"] = upload["slice_size"] = None      # fixed by a first slice the last run never finished
            if job["inventory"]["state"] == "Running" and self._complete(upload):
                self._start_finalize(job_uuid, job)


    def reset(self):
        """Forget sessions, jobs and images; back to the seeded backup storage."""
        with self._lock:
            super().reset()
            self._state = self._seed()
            self._inflight = {}
            self._finalizing = set()
            self._digests = {}
            self._stats = self._zero_stats()
            os.makedirs(self._images_dir(), exist_ok=True)
            self._save()

    def describe(self):
        """Shown by /_emulator/health: the seeded backup storage and the receiver path."""
        return {"backup_storage_uuid": BACKUP_STORAGE_UUID, "backup_storage_name": "bs", "upload_path": UPLOAD_PATH}

    def matches(self, path):
        return path.startswith("/zstack/") or path.startswith(UPLOAD_PATH)

    # ----------------------------------------------------------- dispatching

    def handle(self, request):
        """Answer one request of the ZStack API or of the slice receiver."""
        if request.path.startswith(UPLOAD_PATH):
            return self._receive_slice(request)
        for pattern, methods in self._routes:
            match = pattern.fullmatch(request.path)
            if match:
                break
        else:
            return Response.text("no api mapping to %s" % request.path, 404)
        if request.method not in methods:
            return Response.text("The method[%s] is not allowed for the path[%s]" % (request.method, request.path), 405)
        handler, kind, actions = methods[request.method]
        groups = match.groupdict()
        try:
            body = request.json(default={}) if request.method in ("PUT", "POST") else {}
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
        except ValueError as exc:
            return Response.text("invalid JSON body: %s" % exc, 400)
        if actions and not any(name in body for name in actions):
            return Response.text("the body doesn't contain action mapping to the URL[%s]" % request.path, 400)
        with self._lock:
            changed = self._tick()
            try:
                response = self._call(request, handler, kind, body, groups)
            finally:
                if changed or kind == ASYNC:
                    self._save()
        # upload URLs are stored with a token: the URL a client used is the one it can reach
        response.body = response.body.replace(BASE_URL_TOKEN.encode(), request.base_url.encode())
        return response

    def _call(self, request, handler, kind, body, groups):
        try:
            session_error = None if kind == PUBLIC else self._check_session(request)
            if kind == ASYNC:
                return self._async(request, session_error, handler, body, groups)
            if session_error is not None:
                raise ZStackError("ID.1001", session_error)
            return getattr(self, "_api_" + handler)(request, body, **groups)
        except ZStackError as exc:
            return Response.json({"error": exc.error}, 503)
        except RestError as exc:
            return Response.text(str(exc), exc.status)

    def _check_session(self, request):
        """RestError for a missing or foreign Authorization; the ID.1001 details for a bad session; None when valid."""
        auth = request.header("Authorization")
        if auth is None:
            raise RestError(400, "missing header 'Authorization'")
        auth = auth.strip()
        if not auth.startswith("OAuth"):
            raise RestError(400, "Authorization type must be 'OAuth'")
        session = self._state["sessions"].get(auth[len("OAuth"):].strip())
        if session is None:
            return "Session expired"
        session["expires"] = time.time() + float(self.config.get("zstack_session_seconds", 7200))
        return None

    def _async(self, request, session_error, handler, body, groups):
        """Run an async API now and keep its outcome for the api-job poll (202 with the location)."""
        try:
            if session_error is not None:
                raise ZStackError("ID.1001", session_error)
            outcome = {"status": 200, "body": copy.deepcopy(getattr(self, "_api_" + handler)(request, body, **groups))}
        except ZStackError as exc:
            outcome = {"status": 503, "body": {"error": exc.error}}
        job_id = new_uuid()
        outcome.update(created=time.time(), polls=0)
        self._state["api_jobs"][job_id] = outcome
        return Response.json({"location": "%s%s/api-jobs/%s" % (request.base_url, API_PREFIX, job_id)}, 202)


    # ---------------------------------------------------------- fault hooks

    def operation(self, request):
        """The name fault rules match on: login, logout, poll (api-job GET), query (images, backup-storage and longjobs
        GETs), submit (POST longjobs), details (GetUploadImageJobDetails), action (long-job and image actions),
        delete, slice (the receiver), other (anything else, wrong methods included)."""
        if request.path.startswith(UPLOAD_PATH):
            return "slice"
        for pattern, methods in self._routes:
            if pattern.fullmatch(request.path):
                handler = methods.get(request.method)
                return OPERATION_NAMES.get(handler[0], "other") if handler else "other"
        return "other"

    def expire_for(self, request):
        """The ``expire`` fault. A slice: its long job is idle-suspended now, as the receiver's idle timer does (the slice
        itself is then refused and the job must be resumed). An API call: the caller's OAuth session is dropped (the call
        then fails with ID.1001). False when there is nothing to expire."""
        with self._lock:
            if request.path.startswith(UPLOAD_PATH):
                job_uuid, job = self._job_of_image((request.header("X-IMAGE-UUID") or "").strip())
                if job is None or job["inventory"]["state"] != "Running":
                    return False
                self._suspend(job_uuid, job, "uploading has been inactive more than %s sec"
                              % float(self.config.get("zstack_idle_seconds", 30)))
            else:
                auth = (request.header("Authorization") or "").strip()
                if not auth.startswith("OAuth") or self._state["sessions"].pop(auth[len("OAuth"):].strip(), None) is None:
                    return False
            self._save()
            return True

    def error_response(self, status, message, code=None):
        """The ``status`` fault. 503 is how RestServer answers a failed API: ``{"error": ErrorCode}``, here ``SYS.1010``
        (the management server is not ready to serve: the call did not run). Every other status is one RestServer (or a
        proxy in front of it) answers itself, as plain text: 500 is its answer to an exception, with the message."""
        if status == 503:
            return Response.json({"error": error_code(code if code in DESCRIPTIONS else "SYS.1010", message)}, 503)
        return Response.text(message, status)

    def disk_full(self, request, exc):
        """A write met a full disk outside the slice path (which answers it itself): RestServer's answer to an
        exception, 500 with its message as plain text."""
        return Response.text("java.io.IOException: %s" % (exc.strerror or exc), 500)

    # ------------------------------------------------------------- control

    def control(self, request, rest):
        """``/_emulator/zstack/...``: content read-back, job inspection, forced suspend, session expiry, stats."""
        parts = rest.strip("/").split("/")
        with self._lock:
            if self._tick():
                self._save()
            if request.method == "GET" and len(parts) == 3 and parts[0] == "images" and parts[2] == "content":
                image = self._state["images"].get(parts[1])
                if image is None or image["md5Sum"] is None or not os.path.exists(self._data_path(image["uuid"])):
                    return Response.json({"error": "no uploaded content for image %s" % parts[1]}, 404)
                return Response.file(self._data_path(image["uuid"]))
            if request.method == "GET" and parts == ["jobs"]:
                return Response.json({"jobs": [self._job_view(u, j) for u, j in self._state["jobs"].items()]})
            if request.method == "POST" and len(parts) == 3 and parts[0] == "jobs" and parts[2] == "suspend":
                job = self._state["jobs"].get(parts[1])
                if job is None or job["inventory"]["state"] != "Running":
                    return Response.json({"error": "no Running long job %s" % parts[1]}, 409 if job else 404)
                self._suspend(parts[1], job, "suspended through the emulator control API")
                self._save()
                return Response.json(self._job_view(parts[1], job))
            if request.method == "POST" and parts == ["sessions", "expire"]:
                dropped = len(self._state["sessions"])
                self._state["sessions"] = {}
                self._save()
                return Response.json({"expired": dropped})
            if request.method == "GET" and parts == ["stats"]:
                return Response.json(dict(self._stats))
        return Response.json({"error": "no such control path: %s %s" % (request.method, rest)}, 404)

    def _job_view(self, job_uuid, job):
        upload = job["upload"]
        return {"uuid": job_uuid, "state": job["inventory"]["state"], "imageId": job["image_id"], "imageUuid": job["image_uuid"],
                "size": upload["total"], "sliceSize": upload["slice_size"], "offset": self._prefix(upload),
                "receivedSlices": list(upload["received"]), "inFlightSlices": sorted(self._inflight.get(job["image_uuid"], ())),
                "lastActivity": upload["last_activity"]}
