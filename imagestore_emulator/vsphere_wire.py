"""vSphere Content Library wire format: vAPI errors, the two API styles' request shapes and their routes.

``/rest`` (vSphere 6.5+) wraps results in ``{"value": ...}``, takes ``id:{id}`` segments and ``?~action=``;
``/api`` (7.0+) answers bare values, takes ``{id}`` segments and ``?action=`` (see ``vsphere.py``).
Errors: ``/rest`` ``{"type": "com.vmware.vapi.std.errors.<kind>", "value": {"error_type", "messages"}}``,
``/api`` the inner document alone. Status of a kind: the vAPI REST mapping (VMware's API explorer
generator), where ``/api`` differs (``resource_busy``, ``unable_to_allocate_resource``: 500 per the
vSphere 8 OpenAPI specification and field reports) the table says so.
"""

import hashlib
import re
from datetime import datetime, timezone

from imagestore_emulator.wire import Response

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
STATUS_OUTSIDE_REST = {"unable_to_allocate_resource": 500}
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

    def status_for(self, style):
        """The HTTP status of this error in ``style``: ``/api`` and the data endpoint answer a full datastore
        (``unable_to_allocate_resource``) with 500, ``/rest`` with 400 (vAPI's REST mapping)."""
        if style != "rest" and self.kind in STATUS_OUTSIDE_REST:
            return STATUS_OUTSIDE_REST[self.kind]
        return self.status

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

