# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""vSphere Content Library wire client (private): every call the protocol makes, in both API styles.

Protocol facts: shared/protocols/vsphere.md; what govmomi's simulator really does: docs/vcsim-notes.md.
Two styles answer on the same resources and are chosen once per run (``api_style``), from one table
of routes (``ROUTES``), not an ``if`` in every method:

* ``/api`` (vCenter 7.0 and later): bare bodies, ``{id}`` path segments, ``?action=``, ``client_token``
  as a query parameter, creations answer 201, void operations 204;
* ``/rest`` (older vCenters, vcsim): ``{"value": ...}`` wrappers, ``id:{id}`` segments, ``?~action=``,
  wrapped request bodies (``create_spec``, ``file_spec``, ``spec``), void operations answer 200.

The login (HTTP Basic, UTF-8) settles the style (``auto``: ``/api`` first, ``/rest`` where ``/api`` is
not served); the token travels as ``vmware-api-session-id`` and a 401 logs in again once
(``_tokens.TokenSession``). Tolerated: JSON sent as ``text/plain``, empty lists as ``{"value": null}``,
empty bodies where a result is documented, plain-text 404s and empty 401s.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import uuid

try:
    from urllib.parse import quote
except ImportError:  # pragma: no cover - Python 2 is not supported, but sanity imports on it
    from urllib import quote

from ansible_collections.imagestore.upload.plugins.module_utils._errors import ApiError, BadInput
from ansible_collections.imagestore.upload.plugins.module_utils._http import HttpClient, basic_auth, origin, short
from ansible_collections.imagestore.upload.plugins.module_utils._tokens import TokenSession
from ansible_collections.imagestore.upload.plugins.module_utils._vsphere_formats import message_text

SESSION_HEADER = "vmware-api-session-id"
PREFIX = {"rest": "/rest/com/vmware", "api": "/api"}
#: what a missing object answers when the caller asked for ``missing_ok``
ABSENT = object()


class Route:
    """One operation in one style: method, path template (``{id}``, ``{name}``), action, the /rest body wrapper,
    query parameters (``{id}``/``{name}`` filled in), and the body member that carries a file name."""

    __slots__ = ("method", "path", "action", "wrap", "query", "name_field")

    def __init__(self, method, path, action=None, wrap=None, query=None, name_field=None):
        self.method = method
        self.path = path
        self.action = action
        self.wrap = wrap
        self.query = query or {}
        self.name_field = name_field


_SESSION_R, _SESSION_A = "/content/library/item/update-session/id:{id}", "/content/library/item/update-session/{id}"
_FILES_R, _FILES_A = "/content/library/item/updatesession/file", "/content/library/item/update-session/{id}/file"

#: operation -> {style: Route}
ROUTES = {
    "login": {"rest": Route("POST", "/cis/session"), "api": Route("POST", "/session")},
    "logout": {"rest": Route("DELETE", "/cis/session"), "api": Route("DELETE", "/session")},
    "ping": {"rest": Route("POST", "/cis/session", "get"), "api": Route("GET", "/session")},
    "library_find": {"rest": Route("POST", "/content/library", "find", "spec"), "api": Route("POST", "/content/library", "find")},
    "library_get": {"rest": Route("GET", "/content/library/id:{id}"), "api": Route("GET", "/content/library/{id}")},
    "library_create": {"rest": Route("POST", "/content/local-library", wrap="create_spec"),
                       "api": Route("POST", "/content/local-library")},
    "item_find": {"rest": Route("POST", "/content/library/item", "find", "spec"),
                  "api": Route("POST", "/content/library/item", "find")},
    "item_get": {"rest": Route("GET", "/content/library/item/id:{id}"), "api": Route("GET", "/content/library/item/{id}")},
    "item_create": {"rest": Route("POST", "/content/library/item", wrap="create_spec"), "api": Route("POST", "/content/library/item")},
    "item_delete": {"rest": Route("DELETE", "/content/library/item/id:{id}"), "api": Route("DELETE", "/content/library/item/{id}")},
    "item_files": {"rest": Route("GET", "/content/library/item/file", query={"library_item_id": "{id}"}),
                   "api": Route("GET", "/content/library/item/{id}/file")},
    "session_create": {"rest": Route("POST", "/content/library/item/update-session", wrap="create_spec"),
                       "api": Route("POST", "/content/library/item/update-session")},
    "session_list": {"rest": Route("GET", "/content/library/item/update-session"),
                     "api": Route("GET", "/content/library/item/update-session")},
    "session_get": {"rest": Route("GET", _SESSION_R), "api": Route("GET", _SESSION_A)},
    "session_delete": {"rest": Route("DELETE", _SESSION_R), "api": Route("DELETE", _SESSION_A)},
    "session_keep_alive": {"rest": Route("POST", _SESSION_R, "keep-alive"), "api": Route("POST", _SESSION_A, "keep-alive")},
    "session_complete": {"rest": Route("POST", _SESSION_R, "complete"), "api": Route("POST", _SESSION_A, "complete")},
    "session_cancel": {"rest": Route("POST", _SESSION_R, "cancel"), "api": Route("POST", _SESSION_A, "cancel")},
    "session_fail": {"rest": Route("POST", _SESSION_R, "fail"), "api": Route("POST", _SESSION_A, "fail")},
    "file_add": {"rest": Route("POST", _FILES_R + "/id:{id}", "add", "file_spec"), "api": Route("POST", _FILES_A)},
    "file_get": {"rest": Route("POST", _FILES_R + "/id:{id}", "get", name_field="file_name"), "api": Route("GET", _FILES_A + "/{name}")},
    "file_list": {"rest": Route("GET", _FILES_R, query={"update_session_id": "{id}"}), "api": Route("GET", _FILES_A)},
    "file_validate": {"rest": Route("POST", _FILES_R + "/id:{id}", "validate"), "api": Route("POST", _FILES_A, "validate")},
}


def parse_error(response):
    """(code, message) of an error answer of either style (or vcsim's bare and empty ones)."""
    raw = response.content or b""
    try:
        body = json.loads(raw.decode("utf-8")) if raw.strip() else None
    except (ValueError, UnicodeDecodeError):
        return None, " ".join(raw.decode("utf-8", "replace").split())[:300] or response.reason
    if not isinstance(body, dict):
        return None, response.reason
    code, inner = None, body
    if isinstance(body.get("type"), str):                 # /rest: {"type": "com.vmware.vapi.std.errors.x", "value": {...}}
        code = body["type"].rsplit(".", 1)[-1]
        inner = body.get("value") if isinstance(body.get("value"), dict) else {}
    if inner.get("error_type"):
        code = str(inner["error_type"]).lower()
    texts = [message_text(m) for m in inner.get("messages") or []]
    return code, "; ".join(t for t in texts if t) or None


class ContentLibraryClient:
    """Content Library calls on the shared HttpClient, logged in through a TokenSession."""

    def __init__(self, http, username, password, api_style="auto"):
        self.http = http
        self.username = username
        self._password = password
        self.requested_style = api_style or "auto"
        self.style = None
        self.tokens = TokenSession(self._login, self._logout, lambda exc: exc.status == 401)

    @property
    def logins(self):
        return self.tokens.logins

    # -- plumbing ---------------------------------------------------------------------------
    def _value(self, response, what):
        """The decoded result: unwrapped on /rest; None for an empty body."""
        if not (response.content or b"").strip():
            return None
        body = HttpClient.json(response, what)
        if self.style == "rest" and isinstance(body, dict) and "value" in body:
            return body["value"]
        return body

    def call(self, operation, what, id=None, name=None, body=None, client_token=None, query=None, missing_ok=False):
        """One authenticated operation of the table; the decoded result (ABSENT: a 404 with ``missing_ok``)."""
        if self.style is None:
            self.tokens.current()           # the first login settles the style
        route = ROUTES[operation][self.style]
        fill = dict(id=quote(str(id), safe="") if id is not None else "", name=quote(str(name), safe="") if name is not None else "")
        params = dict((k, v.format(id=id, name=name)) for k, v in route.query.items())
        params.update(query or {})
        if route.action:
            params[("~action" if self.style == "rest" else "action")] = route.action
        if route.name_field and self.style == "rest":
            body = dict(body or {}, **{route.name_field: name})
        if route.wrap and self.style == "rest":
            body = {route.wrap: body}
        if client_token is not None:
            if self.style == "rest":
                body = dict(body or {}, client_token=client_token)
            else:
                params["client_token"] = client_token
        path = PREFIX[self.style] + route.path.format(**fill)
        expect = (200, 201, 204, 404) if missing_ok else (200, 201, 204)
        kwargs = {"params": params or None}
        if body is not None:
            kwargs["json"] = body

        def send(token):
            return self.http.request(route.method, path, expect=expect, what=what, headers={SESSION_HEADER: token}, **kwargs)
        response = self.tokens.call(send)
        if missing_ok and response.status_code == 404:
            return ABSENT
        return self._value(response, what)

    def _list(self, value):
        return value if isinstance(value, list) else []

    # -- the API session ---------------------------------------------------------------------
    def _login(self):
        """Basic-auth login (UTF-8 credentials); the first one also settles the API style."""
        if not self.username or not self._password:
            raise BadInput("provider vsphere needs username and password (options username and password, "
                           "or IMAGESTORE_USERNAME and IMAGESTORE_PASSWORD)")
        styles = [self.style] if self.style else (["api", "rest"] if self.requested_style == "auto" else [self.requested_style])
        tried = []
        for style in styles:
            path = PREFIX[style] + ROUTES["login"][style].path
            tried.append(path)
            r = self.http.request("POST", path, expect=(200, 201, 401, 403, 404, 405), what="log in to %s" % self.http.endpoint,
                                  headers={"Authorization": basic_auth(self.username, self._password),
                                           "vmware-use-header-authn": "true"})
            if r.status_code in (404, 405):
                continue
            if r.status_code in (401, 403):
                raise ApiError("login to %s as %s failed: %s (HTTP %d from POST %s)" % (
                    self.http.endpoint, self.username, "wrong user name or password" if r.status_code == 401 else
                    "the user may not log in", r.status_code, path), status=r.status_code,
                    code="unauthenticated" if r.status_code == 401 else "unauthorized")
            self.style = style
            token = self._value(r, "log in to %s" % self.http.endpoint)
            if not isinstance(token, str) or not token:
                raise ApiError("login to %s answered HTTP %d without a session token" % (self.http.endpoint, r.status_code))
            return token
        if styles == ["api"]:
            raise BadInput("api_style api: %s does not serve the /api endpoints (POST /api/session answered HTTP 404); it is "
                           "older than vCenter 7.0 or a simulator: use api_style rest or auto" % self.http.endpoint)
        raise ApiError("%s does not serve the vSphere Automation API (%s answered HTTP 404): is endpoint the base URL of a "
                       "vCenter, e.g. https://vcenter.example.com?" % (self.http.endpoint, " and ".join("POST " + p for p in tried)))

    def _logout(self, token):
        self.http.request(ROUTES["logout"][self.style].method, PREFIX[self.style] + ROUTES["logout"][self.style].path,
                          expect=(200, 204, 401, 404), retry=False, headers={SESSION_HEADER: token},
                          what="log out of %s" % self.http.endpoint)

    def login(self):
        self.tokens.current()

    def logout(self):
        """End the API session (nothing to do when never logged in; an expired one is already gone)."""
        self.tokens.logout()

    def ping(self):
        """Touch the API session so that it does not idle-expire during a long transfer."""
        self.call("ping", "keep the API session alive")

    # -- libraries and items ------------------------------------------------------------------
    def library_find(self, name):
        return self._list(self.call("library_find", "find library %s" % name, body={"name": name}))

    def library_get(self, library_id):
        """The library model, or None when there is no such library."""
        value = self.call("library_get", "get library %s" % library_id, id=library_id, missing_ok=True)
        return None if value is ABSENT else value

    def library_create_local(self, name, datastore_id, client_token=None):
        """Create a LOCAL library backed by a datastore; return its id (tests and fixtures)."""
        spec = {"name": name, "type": "LOCAL", "storage_backings": [{"type": "DATASTORE", "datastore_id": datastore_id}]}
        return self.call("library_create", "create library %s" % name, body=spec, client_token=client_token or str(uuid.uuid4()))

    def item_find(self, library_id, name):
        return self._list(self.call("item_find", "find library item %s" % name, body={"library_id": library_id, "name": name}))

    def item_get(self, item_id):
        value = self.call("item_get", "get library item %s" % item_id, id=item_id, missing_ok=True)
        return None if value is ABSENT else value

    def item_create(self, library_id, name, kind, client_token=None):
        """Create a library item; return its id. ``client_token`` makes a repeated request harmless."""
        return self.call("item_create", "create library item %s" % name, body={"library_id": library_id, "name": name, "type": kind},
                         client_token=client_token or str(uuid.uuid4()))

    def item_delete(self, item_id):
        """Delete a library item; False when it did not exist."""
        return self.call("item_delete", "delete library item %s" % item_id, id=item_id, missing_ok=True) is not ABSENT

    def item_files(self, item_id):
        """The files of a library item (``name``, ``size``, ``checksum_info`` where the server has it)."""
        return [f for f in self._list(self.call("item_files", "list the files of library item %s" % item_id, id=item_id))
                if isinstance(f, dict)]

    # -- update sessions ------------------------------------------------------------------------
    def session_create(self, item_id, client_token=None):
        return self.call("session_create", "create an update session for library item %s" % item_id,
                         body={"library_item_id": item_id}, client_token=client_token or str(uuid.uuid4()))

    def session_get(self, session_id):
        """The update session model (with its ``id``), or None when the server does not know it."""
        value = self.call("session_get", "get update session %s" % session_id, id=session_id, missing_ok=True)
        if value is ABSENT or not isinstance(value, dict):
            return None
        value.setdefault("id", session_id)
        return value

    def session_list(self, item_id=None):
        """Update session ids (the server may ignore the item filter: vcsim does)."""
        return self._list(self.call("session_list", "list update sessions", query={"library_item_id": item_id} if item_id else None))

    def session_keep_alive(self, session_id, client_progress=None):
        self.call("session_keep_alive", "keep-alive update session %s" % session_id, id=session_id,
                  body={} if client_progress is None else {"client_progress": client_progress})

    def session_complete(self, session_id):
        self.call("session_complete", "complete update session %s" % session_id, id=session_id)

    def session_cancel(self, session_id):
        self.call("session_cancel", "cancel update session %s" % session_id, id=session_id)

    def session_fail(self, session_id, message):
        self.call("session_fail", "fail update session %s" % session_id, id=session_id, body={"client_error_message": message})

    def session_delete(self, session_id):
        """Delete an update session; False when it was already gone."""
        return self.call("session_delete", "delete update session %s" % session_id, id=session_id, missing_ok=True) is not ABSENT

    # -- files of an update session -------------------------------------------------------------
    def file_add(self, session_id, name, size, checksum_info=None):
        """Add (or replace) a PUSH file; return its FileInfo with ``upload_endpoint.uri``."""
        spec = {"name": name, "source_type": "PUSH", "size": size}
        if checksum_info:
            spec["checksum_info"] = checksum_info
        what = "add %s to update session %s" % (name, session_id)
        info = self.call("file_add", what, id=session_id, body=spec)
        if not isinstance(info, dict) or not (info.get("upload_endpoint") or {}).get("uri"):
            raise ApiError("%s: the server gave no upload_endpoint.uri for the file" % what)
        return info

    def file_get(self, session_id, name):
        """FileInfo of one file of the session, or None (vcsim answers the session model: then the list decides)."""
        info = self.call("file_get", "get %s of update session %s" % (name, session_id), id=session_id, name=name, missing_ok=True)
        if isinstance(info, dict) and info.get("name") == name:
            return info
        if info is ABSENT:
            return None
        return next((f for f in self.file_list(session_id) if f.get("name") == name), None)

    def file_list(self, session_id):
        return [f for f in self._list(self.call("file_list", "list the files of update session %s" % session_id, id=session_id))
                if isinstance(f, dict)]

    def file_validate(self, session_id):
        """``{"has_errors", "missing_files", "invalid_files"}``; an empty answer (vcsim) means no errors."""
        result = self.call("file_validate", "validate update session %s" % session_id, id=session_id) or {}
        return {"has_errors": bool(result.get("has_errors")), "missing_files": list(result.get("missing_files") or []),
                "invalid_files": list(result.get("invalid_files") or [])}

    def put(self, uri, name, body, size):
        """Stream one whole file to its upload endpoint; ``body`` returns a fresh reader per attempt.

        The session token goes only to the endpoint's own origin: an upload address elsewhere is refused."""
        where = origin(uri)
        if where != self.http.origin:
            raise ApiError("upload of %s: the server gave an upload address on %s, another address than the endpoint %s; the "
                           "session token is never sent to another address, so nothing was sent. If %s is the vCenter's own "
                           "name, give it as endpoint" % (name, where, self.http.origin, short(where, 120)))

        def send(token):
            return self.http.request("PUT", uri, expect=(200, 201, 204), body=body, idempotent=False, what="upload of %s" % name,
                                     headers={SESSION_HEADER: token, "Content-Type": "application/octet-stream",
                                              "Content-Length": str(size)})
        self.tokens.call(send)
