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

import base64
import hashlib
import os
import re
import secrets
import shutil
import socket
import ssl
import threading
import time
import uuid
from datetime import datetime, timezone
from urllib.parse import quote, unquote

from imagestore_emulator.core import PipelinedDigests, ProviderAPI, Response, read_json, write_json_atomic

API_SESSION_IDLE_SECONDS = 1800
SESSION_HEADER = "vmware-api-session-id"
PROGRESS_BLOCK = 1024 * 1024   # the data endpoint publishes bytes_transferred at least this often
DATASTORE = {"datastore": "datastore-1", "name": "datastore1", "type": "VMFS",
             "free_space": 4 * 1024 ** 4, "capacity": 8 * 1024 ** 4}
SEED_LIBRARY = "images"
CHECKSUM_ALGORITHMS = {"SHA1": "sha1", "MD5": "md5", "SHA256": "sha256", "SHA512": "sha512"}
STAT_NAMES = ("data_puts", "data_bytes", "logins", "logouts", "sessions_created")
ERROR_STATUS = {"not_found": 404, "operation_not_found": 404, "unauthenticated": 401, "unauthorized": 403,
                "internal_server_error": 500}
MESSAGE_PREFIX = "com.vmware.imagestore.emulator."
_HEX = re.compile(r"^[0-9a-fA-F]+$")
_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class VapiError(Exception):
    """A vAPI standard error: ``kind`` is the snake_case name (``not_found``), each message a text."""

    def __init__(self, kind, *messages):
        super().__init__(messages[0] if messages else kind)
        self.kind = kind
        self.messages = messages or (kind.replace("_", " "),)

    @property
    def status(self):
        return ERROR_STATUS.get(self.kind, 400)

    def body(self, style):
        """The error document of ``style``: "rest", "api", or "data" (the data endpoint belongs to neither
        style, so its errors carry the members of both: ``type``/``value`` and ``error_type``/``messages``)."""
        messages = [_message(self.kind, text) for text in self.messages]
        inner = {"error_type": self.kind.upper(), "messages": messages}
        wrapped = {"type": "com.vmware.vapi.std.errors." + self.kind, "value": inner}
        return {"rest": wrapped, "api": inner}.get(style, dict(inner, **wrapped))


def _message(kind, text, *args):
    """A LocalizableMessage."""
    return {"id": MESSAGE_PREFIX + kind, "default_message": text, "args": [str(a) for a in args]}


def _iso(timestamp):
    """ISO 8601 in UTC with milliseconds and a Z, as vCenter writes date_time values."""
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _storage_key(name):
    """The on-disk name of a client-named file: never derived from the name's characters."""
    return hashlib.sha256(name.encode("utf-8")).hexdigest()[:40]


def _check_file_name(name):
    """Refuse names that are not a plain file name (400 invalid_argument)."""
    if not isinstance(name, str) or not name:
        raise VapiError("invalid_argument", "a file name is required")
    if len(name.encode("utf-8")) > 255:
        raise VapiError("invalid_argument", "file name longer than 255 bytes: %r" % name[:64])
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise VapiError("invalid_argument", "file name contains a NUL or control character: %r" % name)
    if name in (".", "..") or "/" in name or "\\" in name:
        raise VapiError("invalid_argument", "file name must be a plain name without path separators or '..': %r" % name)
    return name


def _check_text(value, what, required=True):
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise VapiError("invalid_argument", "%s is required and must be a non-empty string" % what)
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise VapiError("invalid_argument", "%s contains a NUL or control character" % what)
    return value


def _as_dict(value, what):
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise VapiError("invalid_argument", "%s must be a JSON object" % what)
    return value


class _Call:
    """One request of the real API, with the style-specific parts (wrapper, action, ids) resolved."""

    def __init__(self, request, style, segments):
        self.request = request
        self.style = style
        self.segments = segments
        self.action = request.arg("~action" if style == "rest" else "action")
        self._body = None

    def body(self):
        """The JSON request body as a dict (empty when there is none)."""
        if self._body is None:
            try:
                self._body = _as_dict(self.request.json(default={}), "the request body")
            except (ValueError, UnicodeDecodeError) as exc:
                raise VapiError("invalid_argument", "request body is not valid JSON: %s" % exc)
        return self._body

    def spec(self, wrapper):
        """The operation's input: the ``wrapper`` member on /rest, the whole body on /api."""
        body = self.body()
        if self.style == "api":
            return body
        if wrapper not in body:
            raise VapiError("invalid_argument", "the request body needs a %r member" % wrapper)
        return _as_dict(body[wrapper], wrapper)

    def client_token(self):
        """``client_token``: a body member on /rest, a query parameter on /api."""
        token = self.body().get("client_token") if self.style == "rest" else self.request.arg("client_token")
        return _check_text(token, "client_token", required=False)

    def arg(self, name, required=False):
        value = self.request.arg(name)
        if required and not value:
            raise VapiError("invalid_argument", "query parameter %r is required" % name)
        return value

    def value(self, value):
        return Response.json({"value": value} if self.style == "rest" else value)

    def created(self, value):
        return Response.json({"value": value}) if self.style == "rest" else Response.json(value, 201)

    def void(self):
        return Response.empty(200 if self.style == "rest" else 204)


# Routes: (method, path pattern, action, operation). Segments: literal, "id:{}" (/rest) or "{}" (/api).
# The first match wins, so literal segments are listed before placeholders of the same length.
_REST_ROUTES = (
    ("POST", "com/vmware/cis/session", None, "login"),
    ("DELETE", "com/vmware/cis/session", None, "logout"),
    ("POST", "com/vmware/cis/session", "get", "api_session_info"),
    ("GET", "vcenter/datastore", None, "datastore_list"),
    ("GET", "com/vmware/content/library", None, "library_list"),
    ("POST", "com/vmware/content/library", "find", "library_find"),
    ("GET", "com/vmware/content/library/item", None, "item_list"),
    ("POST", "com/vmware/content/library/item", None, "item_create"),
    ("POST", "com/vmware/content/library/item", "find", "item_find"),
    ("GET", "com/vmware/content/library/item/file", None, "item_file_list"),
    ("POST", "com/vmware/content/library/item/file/id:{}", "get", "item_file_get"),
    ("GET", "com/vmware/content/library/item/update-session", None, "session_list"),
    ("POST", "com/vmware/content/library/item/update-session", None, "session_create"),
    ("GET", "com/vmware/content/library/item/update-session/id:{}", None, "session_get"),
    ("PATCH", "com/vmware/content/library/item/update-session/id:{}", None, "session_update"),
    ("DELETE", "com/vmware/content/library/item/update-session/id:{}", None, "session_delete"),
    ("POST", "com/vmware/content/library/item/update-session/id:{}", "keep-alive", "session_keep_alive"),
    ("POST", "com/vmware/content/library/item/update-session/id:{}", "complete", "session_complete"),
    ("POST", "com/vmware/content/library/item/update-session/id:{}", "cancel", "session_cancel"),
    ("POST", "com/vmware/content/library/item/update-session/id:{}", "fail", "session_fail"),
    ("GET", "com/vmware/content/library/item/updatesession/file", None, "file_list"),
    ("POST", "com/vmware/content/library/item/updatesession/file/id:{}", "add", "file_add"),
    ("POST", "com/vmware/content/library/item/updatesession/file/id:{}", "get", "file_get"),
    ("POST", "com/vmware/content/library/item/updatesession/file/id:{}", "remove", "file_remove"),
    ("POST", "com/vmware/content/library/item/updatesession/file/id:{}", "validate", "file_validate"),
    ("GET", "com/vmware/content/library/item/id:{}", None, "item_get"),
    ("DELETE", "com/vmware/content/library/item/id:{}", None, "item_delete"),
    ("GET", "com/vmware/content/library/id:{}", None, "library_get"),
    ("GET", "com/vmware/content/local-library", None, "library_list"),
    ("POST", "com/vmware/content/local-library", None, "library_create"),
    ("GET", "com/vmware/content/local-library/id:{}", None, "library_get"),
)
_API_ROUTES = (
    ("POST", "session", None, "login"),
    ("DELETE", "session", None, "logout"),
    ("GET", "session", None, "api_session_info"),
    ("GET", "vcenter/datastore", None, "datastore_list"),
    ("GET", "content/library", None, "library_list"),
    ("POST", "content/library", "find", "library_find"),
    ("GET", "content/library/item", None, "item_list"),
    ("POST", "content/library/item", None, "item_create"),
    ("POST", "content/library/item", "find", "item_find"),
    ("GET", "content/library/item/update-session", None, "session_list"),
    ("POST", "content/library/item/update-session", None, "session_create"),
    ("GET", "content/library/item/update-session/{}", None, "session_get"),
    ("PATCH", "content/library/item/update-session/{}", None, "session_update"),
    ("DELETE", "content/library/item/update-session/{}", None, "session_delete"),
    ("POST", "content/library/item/update-session/{}", "keep-alive", "session_keep_alive"),
    ("POST", "content/library/item/update-session/{}", "complete", "session_complete"),
    ("POST", "content/library/item/update-session/{}", "cancel", "session_cancel"),
    ("POST", "content/library/item/update-session/{}", "fail", "session_fail"),
    ("GET", "content/library/item/update-session/{}/file", None, "file_list"),
    ("POST", "content/library/item/update-session/{}/file", None, "file_add"),
    ("POST", "content/library/item/update-session/{}/file", "validate", "file_validate"),
    ("GET", "content/library/item/update-session/{}/file/{}", None, "file_get"),
    ("DELETE", "content/library/item/update-session/{}/file/{}", None, "file_remove"),
    ("GET", "content/library/item/{}", None, "item_get"),
    ("DELETE", "content/library/item/{}", None, "item_delete"),
    ("GET", "content/library/item/{}/file", None, "item_file_list"),
    ("GET", "content/library/{}", None, "library_get"),
    ("GET", "content/local-library", None, "library_list"),
    ("POST", "content/local-library", None, "library_create"),
    ("GET", "content/local-library/{}", None, "library_get"),
)


def _match(routes, method, segments, action):
    """Return (operation, captured ids) of the first matching route, or raise operation_not_found."""
    for r_method, pattern, r_action, operation in routes:
        parts = pattern.split("/")
        if r_method != method or r_action != action or len(parts) != len(segments):
            continue
        ids = []
        for part, seg in zip(parts, segments):
            if part == "{}":
                ids.append(seg)
            elif part == "id:{}" and seg.startswith("id:") and len(seg) > 3:
                ids.append(seg[3:])
            elif part != seg:
                break
        else:
            return operation, ids
    raise VapiError("operation_not_found", "no operation %s %s%s" % (
        method, "/".join(segments), "" if action is None else " with action %r" % action))


class VSphereAPI(ProviderAPI):
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

    # ----------------------------------------------------------------- state on disk

    def _dir(self, *parts):
        return os.path.join(self.data_dir, *parts)

    def _load(self):
        for sub in ("libraries", "items", "sessions"):
            os.makedirs(self._dir(sub), exist_ok=True)
        self._libraries = self._load_kind("libraries")
        self._items = self._load_kind("items")
        self._sessions = self._load_kind("sessions")
        now = time.time()
        tokens = read_json(self._dir("tokens.json"), {}) or {}
        self._tokens = {t: dict(info, last=max(info.get("last", 0), now)) for t, info in tokens.items()}
        for session in self._sessions.values():
            self._recover_session(session)
        if self._seed_library_id not in self._libraries:
            self._seed()

    def _load_kind(self, kind):
        objects = {}
        for entry in os.listdir(self._dir(kind)):
            if entry.endswith(".json"):
                obj = read_json(self._dir(kind, entry))
                if isinstance(obj, dict) and obj.get("id") == entry[:-5]:
                    objects[obj["id"]] = obj
        return objects

    def _recover_session(self, session):
        """After a restart: a transfer that was in progress is lost; its partial file goes."""
        changed = False
        for f in session["files"].values():
            if f["status"] == "TRANSFERRING":
                f.update(status="ERROR", data=None, bytes_transferred=0,
                         error_message=_message("transfer_interrupted", "the transfer of %s was interrupted (server restart)" % f["name"]))
                changed = True
        folder = self._dir("sessions", session["id"])
        if os.path.isdir(folder):
            for entry in os.listdir(folder):
                if entry.endswith(".part"):
                    os.unlink(os.path.join(folder, entry))
        if changed:
            self._save("sessions", session)

    def _seed(self):
        now = time.time()
        self._libraries[self._seed_library_id] = {
            "id": self._seed_library_id, "name": SEED_LIBRARY, "type": "LOCAL", "description": "Seeded by the emulator",
            "storage_backings": [{"type": "DATASTORE", "datastore_id": DATASTORE["datastore"]}],
            "creation_time": now, "last_modified_time": now, "client_token": None,
        }
        self._save("libraries", self._libraries[self._seed_library_id])
        write_json_atomic(self._dir("seed.json"), {"library_id": self._seed_library_id})

    def _save(self, kind, obj):
        write_json_atomic(self._dir(kind, obj["id"] + ".json"), obj)

    def _unlink(self, kind, obj_id):
        try:
            os.unlink(self._dir(kind, obj_id + ".json"))
        except FileNotFoundError:
            pass
        shutil.rmtree(self._dir(kind, obj_id), ignore_errors=True)

    def _save_tokens(self):
        write_json_atomic(self._dir("tokens.json"), self._tokens)

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

    def error_response(self, status, message):
        """An injected error in the vAPI shape (members of both styles, as the data endpoint answers)."""
        kind = {401: "unauthenticated", 403: "unauthorized", 404: "not_found", 500: "internal_server_error",
                503: "service_unavailable"}.get(status, "error")
        return Response.json(VapiError(kind, message).body("data"), status)

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
            return Response.json(exc.body(style), exc.status)

    # ----------------------------------------------------------------- API sessions

    def _login(self, call):
        header = call.request.header("Authorization") or ""
        user = password = None
        if header[:6].lower() == "basic ":
            try:
                user, _, password = base64.b64decode(header[6:].strip()).decode("utf-8").partition(":")
            except (ValueError, UnicodeDecodeError):
                user = None
        if user is None:
            raise VapiError("unauthenticated", "HTTP Basic credentials are required to create a session")
        if user != self.config["vsphere_username"] or password != self.config["vsphere_password"]:
            raise VapiError("unauthenticated", "Authentication failed: wrong user name or password")
        token = secrets.token_hex(16)
        now = time.time()
        with self._lock:
            self._tokens[token] = {"user": user, "created": now, "last": now}
            self._save_tokens()
        with self._stats_lock:
            self._stats["logins"] += 1
        return call.created(token)

    def _authenticate(self, request):
        """Check the session header; refresh the token's idle clock. Call with the lock held."""
        token = request.header(SESSION_HEADER)
        if not token:
            raise VapiError("unauthenticated", "This method requires authentication: send the %s header" % SESSION_HEADER)
        info = self._tokens.get(token)
        now = time.time()
        if info is not None and now - info["last"] > API_SESSION_IDLE_SECONDS:
            del self._tokens[token]
            self._save_tokens()
            info = None
        if info is None:
            raise VapiError("unauthenticated", "The session is unknown or has expired; log in again")
        info["last"] = now
        return token

    def _op_logout(self, call):
        del self._tokens[call.request.header(SESSION_HEADER)]
        self._save_tokens()
        with self._stats_lock:
            self._stats["logouts"] += 1
        return call.void()

    def _op_api_session_info(self, call):
        info = self._tokens[call.request.header(SESSION_HEADER)]
        return call.value({"user": info["user"], "created_time": _iso(info["created"]), "last_accessed_time": _iso(info["last"])})

    def _op_datastore_list(self, call):
        return call.value([dict(DATASTORE)])

    # ----------------------------------------------------------------- libraries

    def _library(self, library_id):
        library = self._libraries.get(library_id)
        if library is None:
            raise VapiError("not_found", "library %s not found" % library_id)
        return library

    @staticmethod
    def _library_model(library):
        return {"id": library["id"], "name": library["name"], "type": library["type"], "description": library["description"],
                "storage_backings": library["storage_backings"], "creation_time": _iso(library["creation_time"]),
                "last_modified_time": _iso(library["last_modified_time"]), "version": "1"}

    def _op_library_list(self, call):
        return call.value(sorted(self._libraries))

    def _op_library_get(self, call, library_id):
        return call.value(self._library_model(self._library(library_id)))

    def _op_library_find(self, call):
        spec = call.spec("spec")
        name, kind = spec.get("name"), spec.get("type")
        found = [lib["id"] for lib in self._libraries.values()
                 if (name is None or str(name).lower() == lib["name"].lower()) and (kind is None or kind == lib["type"])]
        return call.value(sorted(found))

    def _op_library_create(self, call):
        spec = call.spec("create_spec")
        token = call.client_token()
        for library in self._libraries.values():
            if token is not None and library.get("client_token") == token:
                return call.created(library["id"])
        name = _check_text(spec.get("name"), "name")
        if spec.get("type", "LOCAL") != "LOCAL":
            raise VapiError("invalid_argument", "only LOCAL libraries can be created here")
        backings = spec.get("storage_backings")
        if (not isinstance(backings, list) or len(backings) != 1 or not isinstance(backings[0], dict)
                or backings[0].get("type") != "DATASTORE" or backings[0].get("datastore_id") != DATASTORE["datastore"]):
            raise VapiError("invalid_argument", "storage_backings must be [{\"type\": \"DATASTORE\", \"datastore_id\": \"%s\"}]"
                            % DATASTORE["datastore"])
        if any(lib["name"].lower() == name.lower() for lib in self._libraries.values()):
            raise VapiError("already_exists", "a library named %r already exists" % name)
        now = time.time()
        library = {"id": str(uuid.uuid4()), "name": name, "type": "LOCAL", "description": str(spec.get("description") or ""),
                   "storage_backings": [{"type": "DATASTORE", "datastore_id": DATASTORE["datastore"]}],
                   "creation_time": now, "last_modified_time": now, "client_token": token}
        self._libraries[library["id"]] = library
        self._save("libraries", library)
        return call.created(library["id"])

    # ----------------------------------------------------------------- library items

    def _item(self, item_id):
        item = self._items.get(item_id)
        if item is None:
            raise VapiError("not_found", "library item %s not found" % item_id)
        return item

    @staticmethod
    def _item_model(item):
        return {"id": item["id"], "library_id": item["library_id"], "name": item["name"], "type": item["type"],
                "description": item["description"], "creation_time": _iso(item["creation_time"]),
                "last_modified_time": _iso(item["last_modified_time"]), "content_version": str(item["content_version"]),
                "metadata_version": "1", "version": "1", "cached": bool(item["files"]),
                "size": sum(f["size"] for f in item["files"].values())}

    @staticmethod
    def _item_file_model(f):
        return {"name": f["name"], "size": f["size"], "checksum_info": {"algorithm": "SHA1", "checksum": f["sha1"]},
                "version": str(f["version"]), "cached": True}

    def _op_item_list(self, call):
        library = self._library(call.arg("library_id", required=True))
        return call.value(sorted(i["id"] for i in self._items.values() if i["library_id"] == library["id"]))

    def _op_item_get(self, call, item_id):
        return call.value(self._item_model(self._item(item_id)))

    def _op_item_find(self, call):
        spec = call.spec("spec")
        name, library_id, kind = spec.get("name"), spec.get("library_id"), spec.get("type")
        found = [i["id"] for i in self._items.values()
                 if (name is None or str(name).lower() == i["name"].lower())
                 and (library_id is None or library_id == i["library_id"])
                 and (kind is None or str(kind).lower() == (i["type"] or "").lower())]
        return call.value(sorted(found))

    def _op_item_create(self, call):
        spec = call.spec("create_spec")
        token = call.client_token()
        for item in self._items.values():
            if token is not None and item.get("client_token") == token:
                return call.created(item["id"])
        name = _check_text(spec.get("name"), "name")
        library = self._library(_check_text(spec.get("library_id"), "library_id"))
        kind = _check_text(spec.get("type"), "type", required=False)
        if any(i["name"] == name and i["library_id"] == library["id"] for i in self._items.values()):
            raise VapiError("already_exists", "an item named %r already exists in library %s" % (name, library["name"]))
        now = time.time()
        item = {"id": str(uuid.uuid4()), "library_id": library["id"], "name": name, "type": kind,
                "description": str(spec.get("description") or ""), "creation_time": now, "last_modified_time": now,
                "content_version": 1, "client_token": token, "files": {}}
        self._items[item["id"]] = item
        self._save("items", item)
        return call.created(item["id"])

    def _op_item_delete(self, call, item_id):
        item = self._item(item_id)
        if any(s["library_item_id"] == item_id and s["state"] == "ACTIVE" for s in self._sessions.values()):
            raise VapiError("resource_busy", "library item %s has an ACTIVE update session" % item_id)
        for session in [s for s in self._sessions.values() if s["library_item_id"] == item_id]:
            self._drop_session(session)
        del self._items[item["id"]]
        self._unlink("items", item["id"])
        return call.void()

    def _op_item_file_list(self, call, item_id=None):
        item = self._item(item_id or call.arg("library_item_id", required=True))
        name = call.arg("name") if call.style == "api" else None
        if name is not None:
            return self._op_item_file_get(call, item["id"], name)
        return call.value([self._item_file_model(f) for f in item["files"].values()])

    def _op_item_file_get(self, call, item_id, name=None):
        item = self._item(item_id)
        if name is None:
            name = _check_text(call.body().get("name"), "name")
        f = item["files"].get(name)
        if f is None:
            raise VapiError("not_found", "library item %s has no file named %r" % (item_id, name))
        return call.value(self._item_file_model(f))

    # ----------------------------------------------------------------- update sessions

    def _expiry(self):
        return float(self.config.get("vsphere_session_expiry_seconds") or 300)

    def _session(self, session_id):
        session = self._sessions.get(session_id)
        if session is None:
            raise VapiError("not_found", "update session %s not found" % session_id)
        return session

    def _active(self, session, operation):
        if session["state"] != "ACTIVE":
            raise VapiError("not_allowed_in_current_state", "cannot %s update session %s: it is %s, not ACTIVE"
                            % (operation, session["id"], session["state"]))
        return session

    def _session_model(self, session):
        model = {"id": session["id"], "library_item_id": session["library_item_id"],
                 "library_item_content_version": str(session["library_item_content_version"]),
                 "client_progress": session["client_progress"], "state": session["state"],
                 "expiration_time": _iso(self._deadline(session)),
                 "preview_info": {"state": "NOT_APPLICABLE"}, "warning_behavior": session["warning_behavior"]}
        if session["error_message"]:
            model["error_message"] = session["error_message"]
        return model

    def _deadline(self, session):
        """When an ACTIVE session idle-expires, or when an ended one is deleted."""
        return (session["last_activity"] if session["state"] == "ACTIVE" else session["ended"]) + self._expiry()

    def _sweep(self):
        """Idle-expire ACTIVE sessions; delete ended ones one expiry period after they ended. Lock held."""
        now = time.time()
        for session in list(self._sessions.values()):
            if session["state"] == "ACTIVE" and now >= self._deadline(session):
                self._expire(session, self._deadline(session))
            if session["state"] != "ACTIVE" and now >= self._deadline(session):
                self._drop_session(session)

    def _expire(self, session, when):
        self._end(session, "ERROR", when, _message(
            "session_expired", "session expired: no activity for %g seconds" % self._expiry(), self._expiry()))

    def _end(self, session, state, when, error_message=None):
        """Move ``session`` to a final state; received content that was not committed is dropped."""
        session.update(state=state, ended=when, error_message=error_message)
        if state != "DONE":
            for f in session["files"].values():
                if f["status"] in ("READY", "TRANSFERRING"):
                    f.update(status="ERROR", data=None,
                             error_message=_message("content_dropped", "content dropped: the session is %s" % state))
        shutil.rmtree(self._dir("sessions", session["id"]), ignore_errors=True)
        self._save("sessions", session)

    def _drop_session(self, session):
        del self._sessions[session["id"]]
        self._unlink("sessions", session["id"])

    def _op_session_list(self, call):
        item_id = call.arg("library_item_id")
        if item_id:
            self._item(item_id)
        return call.value(sorted(s["id"] for s in self._sessions.values() if not item_id or s["library_item_id"] == item_id))

    def _op_session_get(self, call, session_id):
        return call.value(self._session_model(self._session(session_id)))

    def _op_session_create(self, call):
        spec = call.spec("create_spec")
        token = call.client_token()
        item = self._item(_check_text(spec.get("library_item_id"), "library_item_id"))
        for session in self._sessions.values():
            if token is not None and session["client_token"] == token:
                if session["library_item_id"] != item["id"]:
                    raise VapiError("invalid_argument", "client_token %r was used for another library item" % token)
                return call.created(session["id"])
        busy = [s["id"] for s in self._sessions.values() if s["library_item_id"] == item["id"] and s["state"] == "ACTIVE"]
        if busy:
            raise VapiError("resource_busy", "library item %s already has an ACTIVE update session: %s" % (item["id"], busy[0]))
        now = time.time()
        session = {"id": str(uuid.uuid4()), "library_item_id": item["id"], "library_item_content_version": item["content_version"],
                   "client_token": token, "state": "ACTIVE", "client_progress": 0, "error_message": None,
                   "warning_behavior": [], "created": now, "last_activity": now, "ended": None, "files": {}}
        self._sessions[session["id"]] = session
        self._save("sessions", session)
        with self._stats_lock:
            self._stats["sessions_created"] += 1
        return call.created(session["id"])

    def _op_session_update(self, call, session_id):
        session = self._active(self._session(session_id), "update")
        spec = call.spec("update_spec")
        unknown = sorted(k for k, v in spec.items() if k != "warning_behavior" and v is not None)
        if unknown:
            raise VapiError("invalid_argument", "only warning_behavior can be updated, not: %s" % ", ".join(unknown))
        behaviour = spec.get("warning_behavior") or []
        if not isinstance(behaviour, list) or not all(
                isinstance(b, dict) and isinstance(b.get("type"), str) and isinstance(b.get("ignored"), bool) for b in behaviour):
            raise VapiError("invalid_argument", "warning_behavior must be a list of {\"type\": str, \"ignored\": bool}")
        session.update(warning_behavior=behaviour, last_activity=time.time())
        self._save("sessions", session)
        return call.void()

    def _op_session_keep_alive(self, call, session_id):
        session = self._active(self._session(session_id), "keep alive")
        progress = call.body().get("client_progress")
        if progress is not None:
            if isinstance(progress, bool) or not isinstance(progress, int) or not 0 <= progress <= 100:
                raise VapiError("invalid_argument", "client_progress must be an integer from 0 to 100")
            if progress < session["client_progress"]:
                raise VapiError("invalid_argument", "client_progress must not go down (%d < %d)" % (progress, session["client_progress"]))
            session["client_progress"] = progress
        session["last_activity"] = time.time()
        self._save("sessions", session)
        return call.void()

    def _op_session_complete(self, call, session_id):
        session = self._active(self._session(session_id), "complete")
        busy = [n for n, f in session["files"].items() if f["status"] == "TRANSFERRING"]
        if busy:
            raise VapiError("not_allowed_in_current_state", *["file %s is still being transferred" % n for n in busy])
        result = self._validation(session)
        if result["has_errors"]:
            raise VapiError("invalid_argument", *(["file %s has not been received" % n for n in result["missing_files"]]
                                                  + ["file %s is invalid: %s" % (e["name"], e["error_message"]["default_message"])
                                                     for e in result["invalid_files"]]))
        item = self._item(session["library_item_id"])
        os.makedirs(self._dir("items", item["id"]), exist_ok=True)
        for f in session["files"].values():
            key = _storage_key(f["name"])
            os.replace(self._dir("sessions", session["id"], f["data"]), self._dir("items", item["id"], key + ".data"))
            previous = item["files"].get(f["name"])
            item["files"][f["name"]] = {"name": f["name"], "size": f["received_size"], "sha1": f["sha1"], "data": key + ".data",
                                        "version": previous["version"] + 1 if previous else 1}
        now = time.time()
        item.update(content_version=item["content_version"] + 1, last_modified_time=now)
        self._save("items", item)
        self._end(session, "DONE", now)
        return call.void()

    def _op_session_cancel(self, call, session_id):
        session = self._session(session_id)
        if session["state"] not in ("ACTIVE", "ERROR"):
            raise VapiError("not_allowed_in_current_state", "cannot cancel update session %s: it is %s" % (session_id, session["state"]))
        self._end(session, "CANCELED", time.time(), session["error_message"])
        return call.void()

    def _op_session_fail(self, call, session_id):
        session = self._active(self._session(session_id), "fail")
        text = call.body().get("client_error_message")
        if not isinstance(text, str):
            raise VapiError("invalid_argument", "client_error_message is required")
        self._end(session, "ERROR", time.time(), _message("client_error", text, text))
        return call.void()

    def _op_session_delete(self, call, session_id):
        session = self._session(session_id)
        if session["state"] == "ACTIVE":
            raise VapiError("not_allowed_in_current_state", "update session %s is ACTIVE: complete, cancel or fail it first" % session_id)
        self._drop_session(session)
        return call.void()

    # ----------------------------------------------------------------- files of an update session

    def _file(self, session, name):
        f = session["files"].get(_check_file_name(name))
        if f is None:
            raise VapiError("not_found", "update session %s has no file named %r" % (session["id"], name))
        return f

    @staticmethod
    def _file_model(session, f, base_url):
        """FileInfo; the upload URI follows the address the client used (it survives a restart on a new port)."""
        model = {"name": f["name"], "source_type": f["source_type"], "bytes_transferred": f["bytes_transferred"],
                 "status": f["status"], "keep_in_storage": True}
        size = f["received_size"] if f["received_size"] is not None else f["size"]
        if size is not None:
            model["size"] = size
        if f["checksum_info"]:
            model["checksum_info"] = f["checksum_info"]
        if f["source_type"] == "PUSH":
            model["upload_endpoint"] = {"uri": "%s/cls-data/%s/%s" % (base_url, session["id"], quote(f["name"], safe=""))}
        if f["error_message"]:
            model["error_message"] = f["error_message"]
        return model

    def _op_file_list(self, call, session_id=None):
        session = self._session(session_id or call.arg("update_session_id", required=True))
        return call.value([self._file_model(session, f, call.request.base_url) for f in session["files"].values()])

    def _op_file_get(self, call, session_id, name=None):
        session = self._session(session_id)
        f = self._file(session, name if name is not None else call.body().get("file_name"))
        return call.value(self._file_model(session, f, call.request.base_url))

    def _op_file_add(self, call, session_id):
        session = self._active(self._session(session_id), "add a file to")
        spec = call.spec("file_spec")
        name = _check_file_name(spec.get("name"))
        if spec.get("source_type") != "PUSH":
            raise VapiError("invalid_argument", "source_type must be PUSH (PULL is not emulated), got %r" % spec.get("source_type"))
        size = spec.get("size")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
            raise VapiError("invalid_argument", "size must be a non-negative integer")
        checksum = _as_dict(spec.get("checksum_info"), "checksum_info") or None
        if checksum is not None:
            algorithm = checksum.get("algorithm") or "SHA1"
            if algorithm not in CHECKSUM_ALGORITHMS:
                raise VapiError("invalid_argument", "checksum algorithm must be one of %s" % ", ".join(CHECKSUM_ALGORITHMS))
            value = checksum.get("checksum")
            length = hashlib.new(CHECKSUM_ALGORITHMS[algorithm]).digest_size * 2
            if not isinstance(value, str) or len(value) != length or not _HEX.match(value):
                raise VapiError("invalid_argument", "checksum must be %d hexadecimal digits for %s" % (length, algorithm))
            checksum = {"algorithm": algorithm, "checksum": value.lower()}
        previous = session["files"].pop(name, None)
        if previous and previous["data"]:
            self._remove_data(session, previous)
        f = {"name": name, "source_type": "PUSH", "size": size, "checksum_info": checksum,
             "status": "WAITING_FOR_TRANSFER", "bytes_transferred": 0, "error_message": None, "received_size": None,
             "sha1": None, "data": None, "gen": (previous["gen"] + 1) if previous else 1}
        session["files"][name] = f
        session["last_activity"] = time.time()
        self._save("sessions", session)
        model = self._file_model(session, f, call.request.base_url)
        return call.created(model) if call.style == "api" else call.value(model)

    def _remove_data(self, session, f):
        try:
            os.unlink(self._dir("sessions", session["id"], f["data"]))
        except FileNotFoundError:
            pass

    def _op_file_remove(self, call, session_id, name=None):
        session = self._active(self._session(session_id), "remove a file from")
        f = self._file(session, name if name is not None else call.body().get("file_name"))
        if f["data"]:
            self._remove_data(session, f)
        del session["files"][f["name"]]
        session["last_activity"] = time.time()
        self._save("sessions", session)
        return call.void()

    @staticmethod
    def _validation(session):
        missing = [n for n, f in session["files"].items() if f["status"] in ("WAITING_FOR_TRANSFER", "TRANSFERRING")]
        invalid = [{"name": n, "error_message": f["error_message"] or _message("invalid_file", "file %s is invalid" % n)}
                   for n, f in session["files"].items() if f["status"] == "ERROR"]
        return {"has_errors": bool(missing or invalid), "missing_files": missing, "invalid_files": invalid}

    def _op_file_validate(self, call, session_id):
        return call.value(self._validation(self._active(self._session(session_id), "validate")))

    # ----------------------------------------------------------------- the data endpoint

    def _data_put(self, request, segments):
        """``PUT /cls-data/<session>/<name>``: stream the body to a partial file, verify, mark READY or ERROR."""
        if request.method != "PUT" or len(segments) != 2:
            raise VapiError("operation_not_found", "the data endpoint takes PUT /cls-data/<session id>/<file name>")
        session_id, name = segments
        with self._lock:
            self._authenticate(request)
            self._sweep()
            session = self._session(session_id)
            f = self._file(session, name)
            self._active(session, "upload to")
            if f["status"] == "TRANSFERRING":
                raise VapiError("resource_busy", "file %s is already being transferred" % name)
            gen = f["gen"]
            f.update(status="TRANSFERRING", bytes_transferred=0, error_message=None, received_size=None, sha1=None, data=None)
            session["last_activity"] = time.time()
            self._save("sessions", session)
            folder = self._dir("sessions", session_id)
            os.makedirs(folder, exist_ok=True)
            part = os.path.join(folder, "%s.%d.part" % (_storage_key(name), gen))
        with self._stats_lock:
            self._stats["data_puts"] += 1
        algorithm = (f["checksum_info"] or {}).get("algorithm", "SHA1")
        hashers = {"SHA1": hashlib.sha1()}
        hashers.setdefault(algorithm, hashlib.new(CHECKSUM_ALGORITHMS[algorithm]))
        try:
            received = self._receive(request.body, part, hashers, session, f)
        except OSError as exc:  # a broken connection (ConnectionError, timeouts, TLS) or a failing disk
            with self._lock:
                if self._current(session, f, gen):
                    f.update(status="ERROR", error_message=_message(
                        "transfer_failed", "the transfer of %s broke after %d bytes: %s" % (name, f["bytes_transferred"], exc)))
                    self._save("sessions", session)
            self._discard(part)
            if isinstance(exc, (ConnectionError, socket.timeout, ssl.SSLError)):
                raise
            raise VapiError("internal_server_error", "could not store %s: %s" % (name, exc))
        with self._lock:
            if not self._current(session, f, gen):
                self._discard(part)
                raise VapiError("not_allowed_in_current_state", "file %s was re-added or removed, or the session ended, during the transfer"
                                % name)
            problems = []
            if f["size"] is not None and received != f["size"]:
                problems.append("size mismatch for %s: expected %d bytes, received %d" % (name, f["size"], received))
            if f["checksum_info"]:
                got = hashers[algorithm].hexdigest()
                if got != f["checksum_info"]["checksum"]:
                    problems.append("checksum mismatch for %s (%s): expected %s, got %s" % (name, algorithm, f["checksum_info"]["checksum"], got))
            if problems:
                self._discard(part)
                f.update(status="ERROR", error_message=_message("invalid_file", "; ".join(problems)))
                self._save("sessions", session)
                raise VapiError("invalid_argument", *problems)
            data = "%s.data" % _storage_key(name)
            os.replace(part, os.path.join(self._dir("sessions", session_id), data))
            f.update(status="READY", received_size=received, sha1=hashers["SHA1"].hexdigest(), data=data, bytes_transferred=received)
            session["last_activity"] = time.time()
            self._save("sessions", session)
        return Response.empty(200)

    def _receive(self, body, part, hashers, session, f):
        """Copy the request body into ``part``, publishing progress as it arrives; return the byte count."""
        total = 0
        digests = PipelinedDigests(hashers.values())        # hashed beside the socket reads, not between them
        try:
            with open(part, "wb") as fh:
                while body.remaining > 0:
                    buf = bytearray(PROGRESS_BLOCK)         # a fresh buffer: the digest thread may still hold the last
                    n = body.readinto1(buf)                 # what has arrived, up to PROGRESS_BLOCK
                    chunk = memoryview(buf)[:n]
                    fh.write(chunk)
                    digests.update(chunk)
                    total += n
                    f["bytes_transferred"] = total
                    session["last_activity"] = time.time()
                    with self._stats_lock:
                        self._stats["data_bytes"] += n
        finally:
            digests.close()
        return total

    def _current(self, session, f, gen):
        """Is this transfer still the one the session expects? Lock held."""
        self._sweep()
        return (self._sessions.get(session["id"]) is session and session["state"] == "ACTIVE"
                and session["files"].get(f["name"]) is f and f["gen"] == gen)

    @staticmethod
    def _discard(path):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

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
