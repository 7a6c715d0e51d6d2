"""vSphere Content Library: libraries, items, update sessions and their files, in both API styles.

Protocol facts: ``/work/shared/protocols/vsphere.md``. Two styles answer on the same resources:

* ``/rest/com/vmware/...`` (vSphere 6.5+): every result wrapped in ``{"value": ...}``, ids in ``id:{id}``
  path segments, operations chosen with ``?~action=``, request bodies wrapped (``create_spec``,
  ``file_spec``, ``spec``, ``update_spec``) and ``client_token`` inside the body; void answers 200.
* ``/api/...`` (vSphere 7.0+): no wrapper, plain ``{id}`` segments, ``?action=``. For the request and
  response shapes this module follows VMware's vSphere Automation OpenAPI specification as shipped in
  the ``vmware.vmware_rest`` collection (``content_generation/api_specs/8.0.2/content.json``,
  ``session.json``): bodies are the bare model or spec (``{"library_item_id": ..}``, a bare
  ``AddSpec``, a bare ``FindSpec``), ``client_token`` is a query parameter, creations answer 201 with
  the id as a JSON string, void operations answer 204, and session files are sub-resources
  (``GET|DELETE .../update-session/{id}/file/{name}``, ``POST .../file`` adds, ``?action=validate``).

Bytes travel to ``/cls-data/<session id>/<file name>`` (the ``upload_endpoint.uri`` of a PUSH file) in
one streamed ``PUT`` with the API session header.

Semantics beyond vcsim: one ACTIVE session per item (``resource_busy``), ``client_token`` idempotency,
size and checksum verification, ``bytes_transferred`` progress, ``validate``, idle expiry of update
sessions (ERROR "session expired", deleted one more expiry period later), idle expiry of API sessions.
An update session's idle clock is reset by create, keep-alive, update, file add/remove and by bytes
arriving on the data endpoint; reads do not reset it.

State under ``data_dir`` (it survives a restart):

* ``libraries/<id>.json``, ``items/<id>.json``, ``sessions/<id>.json``  one document per object
* ``items/<id>/<key>.data``           committed file content (``key``: SHA-256 of the file name)
* ``sessions/<id>/<key>.data``        received file content, moved into the item on complete
* ``sessions/<id>/<key>.<gen>.part``  a PUT in progress (removed on start: such a file is ERROR)
* ``tokens.json``                     API login tokens; ``seed.json`` the seeded library id
"""

import os
import threading
import time
import uuid
from urllib.parse import unquote

from imagestore_emulator.provider import ProviderAPI
from imagestore_emulator.storage import read_json
from imagestore_emulator.vsphere_content import ContentOps
from imagestore_emulator.vsphere_data import DataEndpoint
from imagestore_emulator.vsphere_sessions import UpdateSessionOps
from imagestore_emulator.vsphere_store import VSphereState
from imagestore_emulator.vsphere_wire import (
    _API_ROUTES, _ID, _REST_ROUTES, DATASTORE, SEED_LIBRARY, STAT_NAMES, VapiError, _Call, _match)
from imagestore_emulator.wire import Response


class VSphereAPI(ContentOps, UpdateSessionOps, DataEndpoint, VSphereState, ProviderAPI):
    """The Content Library API of a vCenter: ``/rest/...``, ``/api/...`` and the ``/cls-data/`` data endpoint."""

    name = "vsphere"

    def __init__(self, data_dir, config):
        super().__init__(data_dir, config)
        self._lock = threading.RLock()
        self._stats_lock = threading.Lock()
        self._stats = dict.fromkeys(STAT_NAMES, 0)
        seed = read_json(os.path.join(data_dir, "seed.json"), {}) or {}
        self._seed_library_id = seed.get("library_id") or str(uuid.uuid4())
        self._load()

    def reset(self):
        """Forget everything but the seeded datastore and library (which keeps its id)."""
        with self._lock:
            super().reset()
            with self._stats_lock:
                self._stats = dict.fromkeys(STAT_NAMES, 0)
            self._load()

    def describe(self):
        return {"library": SEED_LIBRARY, "library_id": self._seed_library_id, "datastore_id": DATASTORE["datastore"],
                "styles": ["/rest", "/api"], "data_endpoint": "/cls-data/<session id>/<file name>"}

    # ----------------------------------------------------------------- entry points

    def matches(self, path):
        return path.startswith(("/rest/", "/api/", "/cls-data/"))

    # ----------------------------------------------------------------- fault-injection hooks (see faults.py)

    @staticmethod
    def _route(request):
        """(style, operation, ids) of a request; operation ``data_put`` for the data endpoint, None when unrouted."""
        segments = [unquote(s) for s in request.raw_path.split("/")[1:]]
        if segments[0] == "cls-data":
            return "data", "data_put", segments[1:2]
        style = segments[0]
        try:
            call = _Call(request, style, [s for s in segments[1:] if s != ""])
            operation, ids = _match(_REST_ROUTES if style == "rest" else _API_ROUTES, request.method, call.segments, call.action)
        except VapiError:
            return style, None, []
        return style, operation, ids

    def operation(self, request):
        """The operation name fault rules match on: the route's name (``file_add``, ``session_complete``, ``data_put``...)."""
        return self._route(request)[1] or "unknown"

    def error_response(self, status, message, code=None):
        """An injected error in the vAPI shape (members of both styles, as the data endpoint answers);
        ``code`` names the vAPI error kind (e.g. ``timed_out``)."""
        kind = code or {401: "unauthenticated", 403: "unauthorized", 404: "not_found", 500: "internal_server_error",
                        503: "service_unavailable"}.get(status, "error")
        return Response.json(VapiError(kind, message).body("data"), status)

    def disk_full(self, request, exc):
        """A write met a full disk: ``unable_to_allocate_resource`` in the style of the request (400 on /rest,
        500 on /api and the data endpoint)."""
        style = self._route(request)[0]
        error = VapiError("unable_to_allocate_resource", "insufficient disk space on datastore '%s': %s"
                          % (DATASTORE["name"], exc.strerror or exc))
        return Response.json(error.body(style if style in ("rest", "api") else "data"), error.status_for(style))

    def expire_for(self, request):
        """Idle-expire the update session a session, file or data request names (the ``expire`` fault)."""
        _, operation, ids = self._route(request)
        if not ids or not operation or not operation.startswith(("session_", "file_", "data_")):
            return False
        with self._lock:
            session = self._sessions.get(ids[0])
            if session is None or session["state"] != "ACTIVE":
                return False
            self._expire(session, time.time())
        return True

    def handle(self, request):
        segments = [unquote(s) for s in request.raw_path.split("/")[1:]]
        style = {"rest": "rest", "api": "api"}.get(segments[0], "data")
        try:
            if segments[0] == "cls-data":
                return self._data_put(request, segments[1:])
            call = _Call(request, style, [s for s in segments[1:] if s != ""])
            operation, ids = _match(_REST_ROUTES if style == "rest" else _API_ROUTES, request.method, call.segments, call.action)
            if ids and not _ID.match(ids[0]):     # a second id is a file name, checked as one
                raise VapiError("invalid_argument", "malformed identifier: %r" % ids[0])
            if operation == "login":
                return self._login(call)
            with self._lock:
                self._authenticate(request)
                self._sweep()
                return getattr(self, "_op_" + operation)(call, *ids)
        except VapiError as exc:
            return Response.json(exc.body(style), exc.status_for(style))

    # ----------------------------------------------------------------- API sessions
    # ----------------------------------------------------------------- control API

    def control(self, request, rest):
        """``/_emulator/vsphere/...``: read-back and inspection for tests.

        ``GET stats``, ``GET items``, ``GET items/<item id>/files/<name>`` (raw bytes), ``GET sessions``,
        ``POST sessions/<id>/expire``, ``POST api-sessions/expire``.
        """
        # split the still-encoded path, so that a file name may contain an encoded "/" or "%"
        parts = [unquote(p) for p in request.raw_path.split("/")[3:]]
        method = request.method
        with self._lock:
            self._sweep()
            if method == "GET" and parts == ["stats"]:
                with self._stats_lock:
                    return Response.json(dict(self._stats))
            if method == "GET" and parts == ["items"]:
                return Response.json([self._control_item(i) for i in sorted(self._items.values(), key=lambda i: i["creation_time"])])
            if method == "GET" and len(parts) == 4 and parts[0] == "items" and parts[2] == "files":
                item = self._items.get(parts[1])
                f = item["files"].get(parts[3]) if item else None
                if f is None:
                    return Response.json({"error": "no file %r in item %r" % (parts[3], parts[1])}, 404)
                return Response.file(self._dir("items", item["id"], f["data"]))
            if method == "GET" and parts == ["sessions"]:
                return Response.json([self._control_session(s, request.base_url)
                                      for s in sorted(self._sessions.values(), key=lambda s: s["created"])])
            if method == "POST" and len(parts) == 3 and parts[0] == "sessions" and parts[2] == "expire":
                session = self._sessions.get(parts[1])
                if session is None:
                    return Response.json({"error": "no update session %r" % parts[1]}, 404)
                if session["state"] == "ACTIVE":
                    self._expire(session, time.time())
                return Response.json(self._control_session(session, request.base_url))
            if method == "POST" and parts == ["api-sessions", "expire"]:
                dropped = len(self._tokens)
                self._tokens.clear()
                self._save_tokens()
                return Response.json({"dropped": dropped})
        return Response.json({"error": "no such control path: %s /_emulator/vsphere/%s" % (method, rest)}, 404)

    def _control_item(self, item):
        library = self._libraries.get(item["library_id"]) or {}
        return dict(self._item_model(item), library_name=library.get("name"),
                    files=[self._item_file_model(f) for f in item["files"].values()])

    def _control_session(self, session, base_url):
        return dict(self._session_model(session), client_token=session["client_token"],
                    files=[dict(self._file_model(session, f, base_url), expected_size=f["size"]) for f in session["files"].values()])
