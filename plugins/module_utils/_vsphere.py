# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""vSphere Content Library adapter (private).

Protocol facts: shared/protocols/vsphere.md; what govmomi's simulator really does: docs/vcsim-notes.md.
Two API styles answer on the same resources and are chosen once per run (``api_style``):

* ``/api`` (vCenter 7.0 and later): bare bodies, ``{id}`` path segments, ``?action=``, ``client_token``
  as a query parameter, creations answer 201, void operations 204;
* ``/rest`` (older vCenters, vcsim): ``{"value": ...}`` wrappers, ``id:{id}`` segments, ``?~action=``,
  wrapped request bodies (``create_spec``, ``file_spec``, ``spec``), void operations answer 200.

The bytes of a file travel in one streamed ``PUT`` to the ``upload_endpoint.uri`` the server gives
for it. No source documents ranged PUTs, so the unit of resume is the file: a re-run reuses the
item's ACTIVE update session and sends only the files the server does not hold READY.

What this adapter survives (vcsim, older servers): JSON sent as ``text/plain``, empty lists as
``{"value": null}``, empty bodies where a result is documented (``validate``), plain-text 404s and
empty 401s, a file ``get`` answering the session, FileInfo without ``size``/``status`` progress,
item files without ``checksum_info`` (size then decides) and listed twice after a second PUT.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import hashlib
import json
import os
import re
import tarfile
import threading
import time
import uuid
from xml.etree import ElementTree

try:
    from urllib.parse import quote
except ImportError:  # pragma: no cover - Python 2 is not supported, but sanity imports on it
    from urllib import quote

from ansible_collections.imagestore.upload.plugins.module_utils._base import Provider, session_record
from ansible_collections.imagestore.upload.plugins.module_utils._http import ApiError, ImageStoreError, TransportError
from ansible_collections.imagestore.upload.plugins.module_utils._upload import ThreadedHasher

REST = "/rest/com/vmware"
SESSION_HEADER = "vmware-api-session-id"
ITEM_TYPES = {".iso": "iso", ".ovf": "ovf", ".ova": "ovf"}
KEEP_ALIVE_MAX_INTERVAL = 60.0
DONE_WAIT_DEFAULT = 600
FILE_RETRIES_MAX = 2
SESSION_RESTARTS_MAX = 2
CONFLICTS_MAX = 5
TRANSFER_STALL_SECONDS = 30.0
RECEIVING = ("TRANSFERRING", "VALIDATING")                 # file states while a client's bytes are coming in
NOT_YET_READY = ("WAITING_FOR_TRANSFER",) + RECEIVING
VOID = (200, 204)
_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


# ---------------------------------------------------------------------------------------------
# small pure helpers

def check_name(value, option):
    """A library or item name: non-empty, printable."""
    text = "" if value is None else str(value)
    if not text.strip():
        raise ImageStoreError("%s must be a non-empty name" % option)
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise ImageStoreError("%s %r contains control characters; use printable characters only" % (option, text))
    return text


def check_file_name(value, option="file_name"):
    """A file name inside a library item: a plain name, no separators, no '..'."""
    text = check_name(value, option)
    if "/" in text or "\\" in text or text in (".", ".."):
        raise ImageStoreError("%s %r must be a plain file name without '/', '\\' or '..', e.g. 'disk.iso'" % (option, text))
    return text


def item_type(path):
    """The library item type for a file: iso, ovf, or file."""
    return ITEM_TYPES.get(os.path.splitext(path)[1].lower(), "file")


def retryable(exc):
    """Would the same request succeed later? Server-side 5xx/429/timeouts, and a transfer whose connection broke.

    The HTTP layer does not repeat a PUT whose connection broke mid-body (it is not idempotent at that
    level); for this protocol it is: the file is added again and sent whole.
    """
    return isinstance(exc, TransportError) or bool(getattr(exc, "retryable", False))


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _message_text(message):
    """The text of a LocalizableMessage (or of whatever the server put there)."""
    if isinstance(message, dict):
        return message.get("default_message") or message.get("id") or ""
    return "" if message is None else str(message)


def parse_time(value):
    """Seconds since the epoch of an ISO 8601 date_time in UTC (any fraction), or None."""
    match = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]00:?00)?$", str(value or ""))
    if not match:
        return None
    moment = datetime.datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S")
    epoch = datetime.datetime(1970, 1, 1)
    return (moment - epoch).total_seconds() + float(match.group(2) or 0)


def stored_checksum(entry):
    """(algorithm, hex) a server reports for a file, lower case, or (None, None)."""
    info = (entry or {}).get("checksum_info") or {}
    if not info.get("checksum"):
        return None, None
    return (info.get("algorithm") or "SHA1").upper(), str(info["checksum"]).lower()


def same_content(entry, size, digests):
    """Does ``entry`` (an item or session file) hold ``size`` bytes with these digests?

    Sizes must match; a checksum the server reports must match too. Where the server reports none
    (vcsim) or one in an algorithm not computed here, the size decides.
    """
    if entry is None or _int(entry.get("size")) != size:
        return False
    algorithm, value = stored_checksum(entry)
    mine = digests.get((algorithm or "").lower())
    return mine is None or value == mine


class LocalFile:
    """One file of the upload: its name in the item, its path, its Source and digests."""

    def __init__(self, name, path, source, declare_checksum=True):
        self.name = name
        self.path = path
        self.source = source
        self.size = source.size
        self.declare_checksum = declare_checksum
        self.digests = {}

    @property
    def sha1(self):
        return self.digests["sha1"]

    def checksum_info(self):
        """What file add declares: SHA-1 (the algorithm every vCenter verifies), none for an OVA."""
        return {"algorithm": "SHA1", "checksum": self.sha1} if self.declare_checksum else None


def ovf_references(path):
    """File names an OVF descriptor references (``References/File/@href``), in order."""
    try:
        root = ElementTree.parse(path).getroot()
    except (ElementTree.ParseError, IOError, OSError) as exc:
        raise ImageStoreError("src %s is not a readable OVF descriptor: %s" % (path, exc))
    names = []
    for element in root.iter():
        if not element.tag.endswith("}File") and element.tag != "File":
            continue
        for key, value in element.attrib.items():
            if key == "href" or key.endswith("}href"):
                names.append(value)
    return names


def ova_members(path):
    """(name, size) of the regular files in an OVA (a tar archive), read from its headers only."""
    try:
        with tarfile.open(path, "r:") as archive:
            return [(m.name, m.size) for m in archive.getmembers() if m.isfile()]
    except (tarfile.TarError, IOError, OSError):
        return []


# ---------------------------------------------------------------------------------------------
# the API

class ContentLibraryClient:
    """Every Content Library call the adapter makes, in both API styles, on the shared HttpClient.

    ``login()`` probes the style once (``api_style`` auto: ``/api`` first, ``/rest`` when the server
    does not serve ``/api``). Every call sends the token as ``vmware-api-session-id`` and logs in
    again once when the server answers 401 (an idle-expired login during a long upload).
    """

    def __init__(self, http, username, password, api_style="auto"):
        self.http = http
        self.username = username
        self._password = password
        self.requested_style = api_style or "auto"
        self.style = None
        self._token = None
        self._lock = threading.Lock()
        self.logins = 0

    # -- plumbing ---------------------------------------------------------------------------
    @staticmethod
    def parse_error(response):
        """(code, message) of an error answer of either style (or vcsim's bare/empty ones)."""
        raw = response.content or b""
        try:
            body = json.loads(raw.decode("utf-8")) if raw.strip() else None
        except (ValueError, UnicodeDecodeError):
            return None, " ".join(raw.decode("utf-8", "replace").split())[:300] or response.reason
        if not isinstance(body, dict):
            return None, response.reason
        code = None
        inner = body
        if isinstance(body.get("type"), str):                 # /rest: {"type": "com.vmware.vapi.std.errors.x", "value": {...}}
            code = body["type"].rsplit(".", 1)[-1]
            inner = body.get("value") if isinstance(body.get("value"), dict) else {}
        if inner.get("error_type"):
            code = str(inner["error_type"]).lower()
        texts = [_message_text(m) for m in inner.get("messages") or []]
        return code, "; ".join(t for t in texts if t) or None

    @property
    def rest(self):
        """True for the /rest style; the first use logs in, which settles the style."""
        if self.style is None:
            self.login()
        return self.style == "rest"

    def _path(self, rest, api):
        return REST + rest if self.rest else "/api" + api

    def _action(self, name):
        return ("~action=" if self.rest else "action=") + name

    def _value(self, response):
        """The decoded result: unwrapped on /rest; None for an empty body; lists never None."""
        raw = response.content or b""
        if not raw.strip():
            return None
        try:
            body = json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise ApiError("%s %s answered HTTP %d with a body that is not JSON: %s" % (
                response.request.method, response.request.path_url.split("?")[0], response.status_code,
                " ".join(raw[:200].decode("utf-8", "replace").split())), status=response.status_code)
        if self.style == "rest" and isinstance(body, dict) and "value" in body:
            return body["value"]
        return body

    def _list(self, response):
        value = self._value(response)
        return value if isinstance(value, list) else []

    def request(self, method, path, what, expect=(200,), **kwargs):
        """One authenticated call; a 401 logs in again once and repeats the call."""
        if self._token is None:
            self.login()
        extra = kwargs.pop("headers", None) or {}
        relogged = False
        while True:
            token = self._token
            headers = dict(extra)
            headers[SESSION_HEADER] = token
            try:
                return self.http.request(method, path, expect=expect, what=what, headers=headers, **kwargs)
            except ApiError as exc:
                if exc.status != 401 or relogged:
                    raise
                relogged = True
                with self._lock:
                    if self._token == token:
                        self._token = None
                        self.login()

    # -- API session --------------------------------------------------------------------------
    def login(self):
        """Basic-auth login; the first call also settles the API style."""
        if not self.username or not self._password:
            raise ImageStoreError("provider vsphere needs username and password (options username and password, "
                                  "or IMAGESTORE_USERNAME and IMAGESTORE_PASSWORD)")
        styles = [self.style] if self.style else (["api", "rest"] if self.requested_style == "auto" else [self.requested_style])
        for style in styles:
            path = "/api/session" if style == "api" else REST + "/cis/session"
            r = self.http.request("POST", path, expect=(200, 201, 401, 403, 404, 405), auth=(self.username, self._password),
                                  headers={"vmware-use-header-authn": "true"}, what="log in to %s" % self.http.endpoint)
            if r.status_code in (404, 405):
                continue
            if r.status_code == 401:
                raise ApiError("login to %s as %s failed: wrong user name or password (HTTP 401 from POST %s)"
                               % (self.http.endpoint, self.username, path), status=401, code="unauthenticated")
            if r.status_code == 403:
                raise ApiError("login to %s as %s failed: the user may not log in (HTTP 403 from POST %s)"
                               % (self.http.endpoint, self.username, path), status=403, code="unauthorized")
            self.style = style
            token = self._value(r)
            if not isinstance(token, str) or not token:
                raise ApiError("login to %s answered HTTP %d without a session token" % (self.http.endpoint, r.status_code))
            self._token = token
            self.logins += 1
            return
        if styles == ["api"]:
            raise ImageStoreError("api_style api: %s does not serve the /api endpoints (POST /api/session answered HTTP 404); "
                                  "it is older than vCenter 7.0 or a simulator: use api_style rest or auto" % self.http.endpoint)
        raise ImageStoreError("%s does not serve the vSphere Automation API (%s answered HTTP 404): is endpoint the base URL "
                              "of a vCenter, e.g. https://vcenter.example.com?" % (
                                  self.http.endpoint, " and ".join("POST " + ("/api/session" if s == "api" else REST + "/cis/session")
                                                                   for s in styles)))

    def logout(self):
        """End the API session (nothing to do when never logged in; an expired one is already gone)."""
        if self._token is None:
            return
        token, self._token = self._token, None
        self.http.request("DELETE", self._path("/cis/session", "/session"), expect=(200, 204, 401, 404), retry=False,
                          headers={SESSION_HEADER: token}, what="log out of %s" % self.http.endpoint)

    def ping(self):
        """Touch the API session so it does not idle-expire (keep-alive during long uploads)."""
        if self.rest:
            self.request("POST", REST + "/cis/session?~action=get", "keep the API session alive")
        else:
            self.request("GET", "/api/session", "keep the API session alive")

    # -- libraries ------------------------------------------------------------------------------
    def library_find(self, name):
        body = {"spec": {"name": name}} if self.rest else {"name": name}
        return self._list(self.request("POST", self._path("/content/library?", "/content/library?") + self._action("find"),
                                       "find library %s" % name, json=body))

    def library_get(self, library_id):
        """The library model, or None when there is no such library."""
        r = self.request("GET", self._path("/content/library/id:", "/content/library/") + quote(library_id, safe=""),
                         "get library %s" % library_id, expect=(200, 404))
        return self._value(r) if r.status_code == 200 else None

    def library_create_local(self, name, datastore_id, client_token=None):
        """Create a LOCAL library backed by a datastore; return its id (used by tests and fixtures)."""
        spec = {"name": name, "type": "LOCAL", "storage_backings": [{"type": "DATASTORE", "datastore_id": datastore_id}]}
        token = client_token or str(uuid.uuid4())
        if self.rest:
            r = self.request("POST", REST + "/content/local-library", "create library %s" % name,
                             json={"client_token": token, "create_spec": spec})
        else:
            r = self.request("POST", "/api/content/local-library", "create library %s" % name, expect=(200, 201),
                             params={"client_token": token}, json=spec)
        return self._value(r)

    # -- library items ----------------------------------------------------------------------------
    def item_find(self, library_id, name):
        spec = {"library_id": library_id, "name": name}
        body = {"spec": spec} if self.rest else spec
        return self._list(self.request("POST", self._path("/content/library/item?", "/content/library/item?") + self._action("find"),
                                       "find library item %s" % name, json=body))

    def item_get(self, item_id):
        r = self.request("GET", self._path("/content/library/item/id:", "/content/library/item/") + quote(item_id, safe=""),
                         "get library item %s" % item_id, expect=(200, 404))
        return self._value(r) if r.status_code == 200 else None

    def item_create(self, library_id, name, kind, client_token=None):
        """Create a library item; return its id. ``client_token`` makes a repeated request harmless."""
        spec = {"library_id": library_id, "name": name, "type": kind}
        token = client_token or str(uuid.uuid4())
        if self.rest:
            r = self.request("POST", REST + "/content/library/item", "create library item %s" % name,
                             json={"client_token": token, "create_spec": spec})
        else:
            r = self.request("POST", "/api/content/library/item", "create library item %s" % name, expect=(200, 201),
                             params={"client_token": token}, json=spec)
        return self._value(r)

    def item_delete(self, item_id):
        """Delete a library item; False when it did not exist."""
        r = self.request("DELETE", self._path("/content/library/item/id:", "/content/library/item/") + quote(item_id, safe=""),
                         "delete library item %s" % item_id, expect=(200, 204, 404))
        return r.status_code != 404

    def item_files(self, item_id):
        """The files of a library item (``name``, ``size``, ``checksum_info`` where the server has it)."""
        if self.rest:
            r = self.request("GET", REST + "/content/library/item/file", "list the files of library item %s" % item_id,
                             params={"library_item_id": item_id})
        else:
            r = self.request("GET", "/api/content/library/item/%s/file" % quote(item_id, safe=""),
                             "list the files of library item %s" % item_id)
        return self._list(r)

    # -- update sessions ----------------------------------------------------------------------------
    def _session_path(self, session_id):
        return self._path("/content/library/item/update-session/id:", "/content/library/item/update-session/") + quote(session_id, safe="")

    def session_create(self, item_id, client_token=None):
        token = client_token or str(uuid.uuid4())
        what = "create an update session for library item %s" % item_id
        if self.rest:
            r = self.request("POST", REST + "/content/library/item/update-session", what,
                             json={"client_token": token, "create_spec": {"library_item_id": item_id}})
        else:
            r = self.request("POST", "/api/content/library/item/update-session", what, expect=(200, 201),
                             params={"client_token": token}, json={"library_item_id": item_id})
        return self._value(r)

    def session_get(self, session_id):
        """The update session model, or None when the server does not know it."""
        r = self.request("GET", self._session_path(session_id), "get update session %s" % session_id, expect=(200, 404))
        return self._value(r) if r.status_code == 200 else None

    def session_list(self, item_id=None):
        """Update session ids (the server may ignore the item filter: vcsim does)."""
        return self._list(self.request("GET", self._path("/content/library/item/update-session", "/content/library/item/update-session"),
                                       "list update sessions", params={"library_item_id": item_id} if item_id else None))

    def _session_action(self, session_id, action, body=None, expect=VOID):
        return self.request("POST", "%s?%s" % (self._session_path(session_id), self._action(action)),
                            "%s update session %s" % (action, session_id), expect=expect, json=body)

    def session_keep_alive(self, session_id, client_progress=None):
        self._session_action(session_id, "keep-alive", {} if client_progress is None else {"client_progress": client_progress})

    def session_complete(self, session_id):
        self._session_action(session_id, "complete")

    def session_cancel(self, session_id):
        self._session_action(session_id, "cancel")

    def session_fail(self, session_id, message):
        self._session_action(session_id, "fail", {"client_error_message": message})

    def session_delete(self, session_id):
        """Delete an update session; False when it was already gone."""
        r = self.request("DELETE", self._session_path(session_id), "delete update session %s" % session_id, expect=(200, 204, 404))
        return r.status_code != 404

    # -- files of an update session -----------------------------------------------------------------
    def _file_path(self, session_id):
        if self.rest:
            return REST + "/content/library/item/updatesession/file/id:" + quote(session_id, safe="")
        return "/api/content/library/item/update-session/%s/file" % quote(session_id, safe="")

    def file_add(self, session_id, name, size, checksum_info=None):
        """Add (or replace) a PUSH file; return its FileInfo with ``upload_endpoint.uri``."""
        spec = {"name": name, "source_type": "PUSH", "size": size}
        if checksum_info:
            spec["checksum_info"] = checksum_info
        what = "add %s to update session %s" % (name, session_id)
        if self.rest:
            r = self.request("POST", self._file_path(session_id) + "?~action=add", what, json={"file_spec": spec})
        else:
            r = self.request("POST", self._file_path(session_id), what, expect=(200, 201), json=spec)
        info = self._value(r)
        if not isinstance(info, dict) or not (info.get("upload_endpoint") or {}).get("uri"):
            raise ApiError("%s: the server gave no upload_endpoint.uri for the file" % what, status=r.status_code)
        return info

    def file_get(self, session_id, name):
        """FileInfo of one file of the session, or None (vcsim answers the session model: then list)."""
        if self.rest:
            r = self.request("POST", self._file_path(session_id) + "?~action=get", "get %s of update session %s" % (name, session_id),
                             expect=(200, 404), json={"file_name": name})
        else:
            r = self.request("GET", self._file_path(session_id) + "/" + quote(name, safe=""),
                             "get %s of update session %s" % (name, session_id), expect=(200, 404))
        info = self._value(r) if r.status_code == 200 else None
        if isinstance(info, dict) and info.get("name") == name:
            return info
        if r.status_code == 404:
            return None
        return next((f for f in self.file_list(session_id) if f.get("name") == name), None)

    def file_list(self, session_id):
        if self.rest:
            r = self.request("GET", REST + "/content/library/item/updatesession/file", "list the files of update session %s" % session_id,
                             params={"update_session_id": session_id})
        else:
            r = self.request("GET", self._file_path(session_id), "list the files of update session %s" % session_id)
        return [f for f in self._list(r) if isinstance(f, dict)]

    def file_validate(self, session_id):
        """``{"has_errors", "missing_files", "invalid_files"}``; an empty answer (vcsim) means no errors."""
        r = self.request("POST", "%s?%s" % (self._file_path(session_id), self._action("validate")),
                         "validate update session %s" % session_id)
        result = self._value(r) or {}
        return {"has_errors": bool(result.get("has_errors")), "missing_files": list(result.get("missing_files") or []),
                "invalid_files": list(result.get("invalid_files") or [])}

    def put(self, uri, name, body, size):
        """Stream one whole file to its upload endpoint; ``body`` returns a fresh reader per attempt."""
        self.request("PUT", uri, "upload of %s" % name, expect=(200, 201, 204), body=body, idempotent=False,
                     headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)})


# ---------------------------------------------------------------------------------------------
# keep-alive during long uploads

class ByteMeter:
    """Counts the bytes of the file being sent (a 'hasher' fed by the reader) and calls ``check`` (the deadline)."""

    def __init__(self, check):
        self.check = check
        self.count = 0
        self.total = 0

    def restart(self):
        self.count = 0

    def update(self, data):
        self.count += len(data)
        self.total += len(data)
        self.check()


class KeepAlive:
    """A background thread that pings the API session and the update session (with client_progress).

    ``progress()`` gives the percentage to report; it is only ever sent when it grew, since the server
    refuses a client_progress that goes down. Errors are counted, never raised: a session that is
    really lost fails the next request of the upload itself.
    """

    def __init__(self, api, session_id, interval, progress, start_progress=0):
        self.api = api
        self.session_id = session_id
        self.interval = interval
        self.progress = progress
        self.reported = start_progress or 0
        self.pings = 0
        self.errors = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vsphere-keep-alive")
        self._thread.daemon = True

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join()

    def _run(self):
        while not self._stop.wait(self.interval):
            self.ping()

    def ping(self):
        try:
            self.api.ping()
            progress = min(100, max(0, int(self.progress())))
            if progress > self.reported:
                self.api.session_keep_alive(self.session_id, progress)
                self.reported = progress
            else:
                self.api.session_keep_alive(self.session_id)
            self.pings += 1
        except ImageStoreError as exc:
            self.errors.append(exc.message)

    @staticmethod
    def interval_for(session, now=None):
        """A third of the time the server gives the session, at most a minute, at least a second."""
        expires = parse_time((session or {}).get("expiration_time"))
        left = expires - (now or time.time()) if expires else None
        if not left or left <= 0:
            return KEEP_ALIVE_MAX_INTERVAL
        return max(1.0, min(KEEP_ALIVE_MAX_INTERVAL, left / 3.0))


# ---------------------------------------------------------------------------------------------
# the provider

class VSphere(Provider):
    name = "vsphere"
    own_options = ("library", "item", "file_name", "keep_session_on_failure")

    def __init__(self, params, check_mode=False, warn=None):
        super(VSphere, self).__init__(params, check_mode, warn)
        self.api = ContentLibraryClient(self.http, params.get("username"), params.get("password"), params.get("api_style") or "auto")

    def parse_error(self, response):
        return ContentLibraryClient.parse_error(response)

    def close(self):
        try:
            self.api.logout()
        finally:
            super(VSphere, self).close()

    # -- lookups ------------------------------------------------------------------------------
    def _library_id(self, ref):
        """The id of the library named ``ref`` (or whose id is ``ref``)."""
        ids = self.api.library_find(ref)
        if len(ids) > 1:
            raise ImageStoreError("library %r is ambiguous: %d libraries have that name; give the id of one (%s)"
                                  % (ref, len(ids), ", ".join(sorted(ids))))
        if ids:
            return ids[0]
        if _ID.match(ref) and self.api.library_get(ref) is not None:
            return ref
        raise ImageStoreError("library %r not found on %s: give the name or id of an existing content library"
                              % (ref, self.http.endpoint))

    def _item_id(self, library_id, name):
        """The id of the item ``name`` in the library, or None."""
        ids = self.api.item_find(library_id, name)
        if len(ids) > 1:     # a case-insensitive find may match 'Disk' and 'disk': take the exact one
            exact = [i for i in ids if ((self.api.item_get(i) or {}).get("name")) == name]
            ids = exact or ids[:1]
        return ids[0] if ids else None

    def _item_files(self, item_id):
        """name -> the item's file entry (the last one listed, where vcsim lists a name twice)."""
        return dict((f.get("name"), f) for f in self.api.item_files(item_id) if isinstance(f, dict))

    def _sessions_of_item(self, item_id):
        """Models of every update session of the item (filtered here too: vcsim ignores the filter)."""
        found = []
        for session_id in self.api.session_list(item_id):
            model = self.api.session_get(session_id)
            if model is not None and model.get("library_item_id") == item_id:
                model.setdefault("id", session_id)
                found.append(model)
        return found

    def _active_session(self, item_id):
        active = [s for s in self._sessions_of_item(item_id) if s.get("state") == "ACTIVE"]
        return active[0] if active else None

    # -- image_upload -------------------------------------------------------------------------
    def _local_files(self):
        """The files of ``src``: one file, or an OVF descriptor followed by the files it references."""
        src = self.params["src"]
        self.check_src_file(src)
        name = check_file_name(self.params.get("file_name") or os.path.basename(src))
        extension = os.path.splitext(src)[1].lower()
        files = [LocalFile(name, src, self.source(src), declare_checksum=extension != ".ova")]
        if extension == ".ovf":
            folder = os.path.dirname(os.path.abspath(src))
            names = ovf_references(src)
            manifest = os.path.splitext(os.path.basename(src))[0] + ".mf"
            if os.path.isfile(os.path.join(folder, manifest)) and manifest not in names:
                names.append(manifest)
            for ref in names:
                if "://" in ref or "/" in ref or "\\" in ref or ref in (".", "..") or not ref:
                    raise ImageStoreError("src %s references %r: only files in the same folder as the descriptor can be uploaded"
                                          % (src, ref))
                if ref in [f.name for f in files]:
                    raise ImageStoreError("src %s references %r twice (or names itself); each file is uploaded once" % (src, ref))
                path = os.path.join(folder, ref)
                self.check_src_file(path, option="%s (referenced by %s)" % (ref, os.path.basename(src)))
                files.append(LocalFile(ref, path, self.source(path)))
        for f in files:
            f.digests = f.source.digests(("sha1", "sha256"))
        return files

    def upload(self):
        library_ref = check_name(self.params.get("library"), "library")
        item_name = check_name(self.params.get("item"), "item")
        files = self._local_files()
        force = bool(self.params.get("force"))
        library_id = self._library_id(library_ref)
        item_id = self._item_id(library_id, item_name)
        # the ACTIVE session is looked up before the files: an upload that completes in between shows in the files
        session = self._active_session(item_id) if item_id else None
        stored = self._item_files(item_id) if item_id else {}
        todo = [f for f in files if force or not self._holds(stored, f)]
        result = {
            "changed": bool(todo), "session_id": None, "size": sum(f.size for f in files), "bytes_sent": 0, "resumed": False,
            "sha256": files[0].digests["sha256"], "library_id": library_id, "item_id": item_id, "item_created": False,
            "destination": {"library_id": library_id, "item_id": item_id, "file_name": files[0].name},
            "api_style": self.api.style, "diff": self._diff(item_name, files, stored, todo),
        }
        if len(files) > 1:
            result["files"] = [{"name": f.name, "size": f.size, "sha256": f.digests["sha256"], "sha1": f.sha1,
                                "changed": f in todo, "bytes_sent": 0} for f in files]
        where = "item %r of library %r" % (item_name, library_ref)
        if not todo:
            result["msg"] = "%s already holds %s (same size%s); nothing sent (force=true re-uploads)" % (
                where, ", ".join(f.name for f in files), " and SHA-1" if all(stored_checksum(stored.get(f.name))[0] for f in files)
                else "; the server reports no checksum, so the size decides")
            return result
        if self.check_mode:
            return self._would(result, where, item_id, session, todo)
        if item_id is None:
            item_id = self._create_item(library_id, item_name, files[0].path)
            result.update(item_id=item_id, item_created=True)
            result["destination"]["item_id"] = item_id
        # joined: the session was opened by a concurrent run for the same item after this run looked (its create was
        # refused as resource_busy); such a session is used, but never ended by this run
        joined = False
        existing = session is not None
        if session is None:
            session, joined = self._open_session(item_id)
            existing = joined
            if not joined and not force and self._holds_all(item_id, todo):
                # A concurrent run completed the item after this run looked: the session just opened is not needed.
                self.discard(session["id"], "not needed: the item already holds the files")
                result.update(changed=False, msg="another upload completed %s meanwhile; it holds %s; nothing sent" % (
                    where, ", ".join(f.name for f in todo)))
                return result
        result["resumed"] = existing
        restarts = []
        completed = None
        while True:
            session_id = session["id"]
            result["session_id"] = session_id
            in_session = self._files_of_resumed(session_id, todo) if existing else {}
            landed = set()      # files whose PUT from this run the session accepted
            try:
                self._send_all(session, in_session, todo, result, landed)
                completed = self._complete(session_id, item_id, todo)
                rounds = 1
                while completed is None:
                    # a racing run added or sent a file of this upload again after it was READY: wait for it, or send again
                    if rounds > CONFLICTS_MAX:
                        raise ImageStoreError("update session %s cannot be completed: other clients kept replacing %s in it"
                                              % (session_id, ", ".join(f.name for f in todo)))
                    self._send_all(session, {}, todo, result, landed)
                    completed = self._complete(session_id, item_id, todo)
                    rounds += 1
                self._verify(item_id, todo)
                break
            except Exception as exc:  # pylint: disable=broad-except  # every failure must end or keep the session explicitly
                ended = self._ended(session_id, exc)
                if ended in ("DONE", "deleted") and self._holds_all(item_id, todo):
                    completed = False        # a run racing for the item completed the session (and deleted it)
                    break
                if ended in (None, "DONE") or len(restarts) >= SESSION_RESTARTS_MAX:
                    raise self._abandon(session_id, exc, result, owned=not joined)
            # The session ended under the upload (idle-expired, failed or canceled by someone else, or deleted): what it
            # had received is gone with it, so the files are sent again into a new session.
            restarts.append(session_id)
            self.warn("update session %s of %s ended during the upload (%s) and was replaced by a new one" % (
                session_id, where, ended))
            if ended != "deleted":
                self.discard(session_id, "ended during the upload (%s)" % ended)
            session, joined = self._open_session(item_id)
            existing = joined
        self._forget(session_id)
        sent = result["bytes_sent"]
        if restarts:
            result["session_restarts"] = len(restarts)
        if not completed and not landed:
            result["changed"] = False
            result["msg"] = "another upload completed update session %s of %s meanwhile; it holds %s; %s" % (
                session_id, where, ", ".join(f.name for f in todo),
                "%d bytes sent by this run were not needed" % sent if sent else "nothing sent")
            return result
        skipped = [f.name for f in todo if f.name not in landed]
        result["msg"] = "%s %s into %s%s (%d bytes sent)%s" % (
            "resumed update session %s: uploaded" % session_id if result["resumed"] else "uploaded",
            ", ".join(f.name for f in todo if f.name in landed) or "nothing new",
            "new " if result["item_created"] else "", where, sent,
            "; already received before: %s" % ", ".join(sorted(skipped)) if skipped else "")
        return result

    def _holds_all(self, item_id, todo):
        """Does the item hold every file of ``todo`` now?"""
        stored = self._item_files(item_id)
        return all(self._holds(stored, f) for f in todo)

    @staticmethod
    def _holds(stored, f):
        return same_content(stored.get(f.name), f.size, f.digests) or (
            not f.declare_checksum and VSphere._holds_ova(stored, f))

    @staticmethod
    def _holds_ova(stored, f):
        """An OVA is unpacked by the server: it holds it when every member is there with its size."""
        members = ova_members(f.path)
        return bool(members) and all(_int((stored.get(name) or {}).get("size")) == size for name, size in members)

    @staticmethod
    def _diff(item_name, files, stored, todo):
        """Size and SHA-1 of each file before (what the item holds) and after the run."""
        def state(entry):
            return {"size": _int(entry.get("size")), "checksum": stored_checksum(entry)[1]} if entry else {"size": None, "checksum": None}
        before = dict((f.name, state(stored.get(f.name))) for f in files)
        after = dict(before)
        after.update((f.name, {"size": f.size, "checksum": f.sha1}) for f in todo)
        if len(files) == 1:
            where = {"item": item_name, "file_name": files[0].name}
            return {"before": dict(where, **before[files[0].name]), "after": dict(where, **after[files[0].name])}
        return {"before": {"item": item_name, "files": before}, "after": {"item": item_name, "files": after}}

    @staticmethod
    def _would(result, where, item_id, session, todo):
        """The check-mode answer: what a real run would create and send."""
        size = sum(f.size for f in todo)
        names = ", ".join(f.name for f in todo)
        result["would_send"] = size
        if item_id is None:
            result["msg"] = "would create %s and upload %s (%d bytes)" % (where, names, size)
        elif session is not None:
            result.update(resumed=True, session_id=session.get("id"))
            result["msg"] = "would resume update session %s of %s and send %s (at most %d bytes)" % (session.get("id"), where, names, size)
        else:
            result["msg"] = "would upload %s (%d bytes) into %s" % (names, size, where)
        return result

    def _create_item(self, library_id, name, path):
        try:
            return self.api.item_create(library_id, name, item_type(path))
        except ApiError as exc:
            if exc.code != "already_exists":
                raise
            item_id = self._item_id(library_id, name)    # created meanwhile by a concurrent run
            if item_id is None:
                raise
            return item_id

    def _open_session(self, item_id):
        """(session model, joined): a new update session for the item, or, when the server refuses a second one
        (resource_busy: a concurrent run opened one after this run looked), that run's session, joined."""
        for attempt in range(3):
            try:
                session_id = self.api.session_create(item_id)
            except ApiError as exc:
                if exc.code != "resource_busy":
                    raise
                session = self._active_session(item_id)
                if session is not None:
                    return session, True
                if attempt == 2:
                    raise
                continue          # that session ended in between: ask again
            session = self.api.session_get(session_id) or {}
            session.setdefault("id", session_id)
            return session, False
        return None, False

    def _files_of_resumed(self, session_id, todo):
        """name -> FileInfo of a session found ACTIVE; refuse (leaving it alone) one that holds files of another upload
        not yet received, since completing it would fail on them."""
        in_session = dict((f.get("name"), f) for f in self.api.file_list(session_id))
        ours = set(f.name for f in todo)
        foreign = sorted(n for n, f in in_session.items() if n not in ours and f.get("status") != "READY")
        if foreign:
            raise ImageStoreError("the item's ACTIVE update session %s holds files of another upload that are not received (%s): "
                                  "wait for that upload, or remove the session with imagestore.upload.upload_session_absent"
                                  % (session_id, ", ".join(foreign)), details={"session_id": session_id})
        return in_session

    def _send_all(self, session, in_session, todo, result, landed):
        """Send every file of ``todo`` the session does not hold READY; add the names whose PUT it accepted to ``landed``.

        The bytes read for sending are added to ``result["bytes_sent"]``, also when a file fails."""
        session_id = session["id"]
        skipped = set(f.name for f in todo if (in_session.get(f.name) or {}).get("status") == "READY"
                      and same_content(in_session[f.name], f.size, f.digests))
        total = sum(f.size for f in todo) or 1
        done = [sum(f.size for f in todo if f.name in skipped)]
        meter = ByteMeter(lambda: self._check_time("uploading to update session %s" % session_id))

        def progress():
            return 100.0 * (done[0] + meter.count) / total

        keep_alive = KeepAlive(self.api, session_id, KeepAlive.interval_for(session), progress,
                               start_progress=_int(session.get("client_progress")) or 0)
        try:
            with keep_alive:
                for f in todo:
                    if f.name in skipped:
                        continue
                    if self._send_file(session_id, f, meter):
                        landed.add(f.name)
                        for entry in result.get("files") or []:
                            if entry["name"] == f.name:
                                entry["bytes_sent"] = f.size
                    done[0] += f.size
        finally:
            result["bytes_sent"] += meter.total
        if keep_alive.errors:
            self.warn("keeping update session %s alive failed %d time(s); last error: %s" % (
                session_id, len(keep_alive.errors), keep_alive.errors[-1]))

    def _send_file(self, session_id, f, meter):
        """Add the file (size, SHA-1) and PUT it whole; False when the session already holds it without this run's PUT.

        A retryable failure re-adds and re-sends it (``retries`` times, at most FILE_RETRIES_MAX); a lost answer is
        recognised by the file being READY. A transfer of the file that is going on (a run racing for the same item, or
        an earlier attempt the server is still reading) is waited for and never replaced: when it ends READY with this
        content, that is used. Replacing happens the other way round too (a racing run added the file again while this
        run sent it: the server refuses this PUT), which is not counted against ``retries``.
        """
        attempts = 1 + min(FILE_RETRIES_MAX, max(0, self.params.get("retries") or 0))
        attempt, conflicts, failures = 0, 0, []
        while True:
            info = self._settled(session_id, f)
            if (info or {}).get("status") == "READY" and same_content(info, f.size, f.digests):
                return attempt > 0
            if failures and attempt >= attempts:
                raise failures[-1]
            self._check_time("uploading %s" % f.name)
            attempt += 1
            info = self.api.file_add(session_id, f.name, f.size, f.checksum_info())
            sent_sha1 = []

            def body():
                meter.restart()
                for stale in sent_sha1:
                    stale.close()
                # A SHA-1 computed by this run is checked by the identity check after the transfer (any write
                # moves the file's ctime); one taken from the digest cache is checked against the bytes sent,
                # hashed beside the socket writes rather than between them.
                sent_sha1[:] = [ThreadedHasher(hashlib.sha1())] if "sha1" in f.source.from_cache else []
                return f.source.reader(0, f.size - 1, hashers=tuple(sent_sha1) + (meter,)) if f.size else b""
            try:
                self.api.put(info["upload_endpoint"]["uri"], f.name, body, f.size)
            except ImageStoreError as exc:
                changed = self._sent_other_bytes(f, sent_sha1, meter)
                if changed:
                    raise ImageStoreError("%s. %s" % (exc.message, changed), status=exc.status, code=exc.code)
                if exc.code in ("resource_busy", "not_allowed_in_current_state") and conflicts < CONFLICTS_MAX:
                    # another transfer of the file is going on, or the file was added again (or the session ended:
                    # then the next request says so)
                    conflicts += 1
                    attempt -= 1
                    continue
                if not retryable(exc):
                    raise
                failures.append(exc)
                continue
            changed = self._sent_other_bytes(f, sent_sha1, meter)
            if changed:
                raise ImageStoreError(changed)
            f.source.check_unchanged()
            return True

    def _settled(self, session_id, f):
        """FileInfo of ``f`` in the session once no transfer of it is going on; None when the session lacks it.

        A file TRANSFERRING (or VALIDATING) is being received from someone right now: wait while its ``bytes_transferred``
        moves. One that has not moved for TRANSFER_STALL_SECONDS lost its sender and is replaced."""
        delay, seen, since = 0.05, None, time.monotonic()
        while True:
            info = self.api.file_get(session_id, f.name)
            if (info or {}).get("status") not in RECEIVING:
                return info
            moved, now = _int(info.get("bytes_transferred")), time.monotonic()
            if moved != seen:
                seen, since = moved, now
            elif now - since > TRANSFER_STALL_SECONDS:
                return info
            self._check_time("waiting for another transfer of %s into update session %s to end" % (f.name, session_id))
            time.sleep(delay)
            delay = min(1.0, delay * 1.5)

    def _check_time(self, doing):
        """The ``timeout`` of the run (what then happens to the session is said by the failure handling)."""
        remaining = self.deadline.remaining()
        if remaining is not None and remaining < 0:
            raise ImageStoreError("timeout of %s seconds reached while %s" % (self.deadline.seconds, doing), retryable=True)

    def _sent_other_bytes(self, f, sent_sha1, meter):
        """When the bytes sent were not those whose SHA-1 was declared: say so (and fix the digest cache)."""
        if f.size == 0 or meter.count != f.size or not sent_sha1 or sent_sha1[0].hexdigest() == f.sha1:
            return None
        actual = sent_sha1[0].hexdigest()
        if f.source.cache is not None:
            f.source.cache.put(f.path, f.source.identity, {"sha1": actual})
        return ("The SHA-1 of the bytes sent was %s, not the %s computed before: %s changed after its checksum was computed "
                "(in place, keeping its size and modification time); run again to upload its current content" % (actual, f.sha1, f.path))

    def _complete(self, session_id, item_id, todo):
        """Validate, report 100 %, complete, and wait until the session is DONE; True when this run completed it.

        None when validation finds a file of this upload added again or being sent again by another client (a run racing
        for the item): it is to be waited for, or sent again. A session found no longer ACTIVE on the way raises ApiError;
        the caller finds out why (a racing run completed it, or it ended)."""
        validation = self.api.file_validate(session_id)
        if validation["has_errors"]:
            held = dict((f.get("name"), f) for f in self.api.file_list(session_id))
            for f in todo:
                info = held.get(f.name) or {}
                if info.get("status") == "READY" and not same_content(info, f.size, f.digests):
                    raise ImageStoreError("update session %s cannot be completed: another client replaced %s in it with other "
                                          "content (%s bytes, checksum %s); run again once that upload is over" % (
                                              session_id, f.name, info.get("size"), stored_checksum(info)[1] or "not reported"))
            if any((held.get(f.name) or {}).get("status", "WAITING_FOR_TRANSFER") in NOT_YET_READY for f in todo):
                return None
            raise self._validation_error(session_id, validation)
        try:
            self.api.session_keep_alive(session_id, 100)
        except ApiError as exc:
            # client_progress is advisory: a refusal does not stop a complete upload (but a session no longer ACTIVE does)
            if exc.status != 400 or exc.code == "not_allowed_in_current_state":
                raise
        self.complete_and_wait(session_id, lambda: self._holds_all(item_id, todo))
        return True

    def complete_and_wait(self, session_id, deleted_when_done=None):
        """Complete the session and wait until it is DONE; a complete whose answer was lost (then refused
        as the session is no longer ACTIVE) counts when the session is DONE after all."""
        try:
            self.api.session_complete(session_id)
        except ApiError as exc:
            if exc.code != "not_allowed_in_current_state" or (self.api.session_get(session_id) or {}).get("state") != "DONE":
                raise
        return self._wait_done(session_id, deleted_when_done)

    def _ended(self, session_id, exc):
        """Why the session can no longer take the upload, when ``exc`` hints so and the server confirms it: ``DONE``
        (completed by someone else), ``deleted``, ``CANCELED`` or ``ERROR: <reason>`` (idle-expired, or failed by
        someone); None otherwise."""
        if not isinstance(exc, ApiError) or (exc.status != 404 and exc.code != "not_allowed_in_current_state"):
            return None
        try:
            model = self.api.session_get(session_id)
        except ImageStoreError:
            return None
        if model is None:
            return "deleted"
        state = model.get("state")
        if state == "DONE":
            return state
        if state not in ("ERROR", "CANCELED"):
            return None
        reason = _message_text(model.get("error_message"))
        return "%s: %s" % (state, reason) if reason else state

    @staticmethod
    def _validation_error(session_id, validation):
        invalid = ["%s (%s)" % (f.get("name"), _message_text(f.get("error_message")) or "invalid") for f in validation["invalid_files"]]
        parts = []
        if validation["missing_files"]:
            parts.append("missing files: %s" % ", ".join(validation["missing_files"]))
        if invalid:
            parts.append("invalid files: %s" % "; ".join(invalid))
        return ImageStoreError("update session %s cannot be completed: %s" % (session_id, "; ".join(parts) or "the server reports errors"),
                               details={"missing_files": validation["missing_files"],
                                        "invalid_files": [{"name": f.get("name"), "error": _message_text(f.get("error_message"))}
                                                          for f in validation["invalid_files"]]})

    def _wait_done(self, session_id, deleted_when_done=None):
        """Poll until the session is DONE; ``deleted_when_done()`` tells whether a session deleted meanwhile had ended DONE
        (a run racing for the item deletes the DONE session it completed; the item then holds the files)."""
        remaining = self.deadline.remaining()
        end = time.monotonic() + (remaining if remaining is not None else DONE_WAIT_DEFAULT)
        delay = 0.1
        while True:
            session = self.api.session_get(session_id)
            if session is None:
                if deleted_when_done is not None and deleted_when_done():
                    return None
                raise ImageStoreError("update session %s disappeared while it was being completed" % session_id)
            state = session.get("state")
            if state == "DONE":
                return session
            if state in ("ERROR", "CANCELED"):
                raise ImageStoreError("update session %s ended %s instead of DONE: %s" % (
                    session_id, state, _message_text(session.get("error_message")) or "no reason given"))
            if time.monotonic() > end:
                raise ImageStoreError("update session %s is still %s %d seconds after complete; run upload_session_commit "
                                      "later to wait for it" % (session_id, state, DONE_WAIT_DEFAULT if remaining is None else remaining),
                                      retryable=True)
            time.sleep(delay)
            delay = min(2.0, delay * 1.5)

    def _verify(self, item_id, todo):
        stored = self._item_files(item_id)
        for f in todo:
            entry = stored.get(f.name)
            if f.declare_checksum and not same_content(entry, f.size, f.digests):
                raise ImageStoreError("verification failed: after the update session item %s holds %s for %s, expected %d bytes "
                                      "with SHA-1 %s" % (item_id, "nothing" if entry is None else "%s bytes (checksum %s)" % (
                                          entry.get("size"), stored_checksum(entry)[1] or "not reported"), f.name, f.size, f.sha1))

    def _forget(self, session_id):
        """Delete a DONE session (the server would drop it later anyway; a failure only warns)."""
        try:
            self.api.session_delete(session_id)
        except ImageStoreError as exc:
            self.warn("the upload is complete, but deleting its DONE update session %s failed: %s" % (session_id, exc.message))

    def _abandon(self, session_id, exc, result, owned=True):
        """End the session of a failed run (fail, cancel, delete) or keep it; return the error to raise.

        A session not ``owned`` (opened by a concurrent run for the same item, which this run joined) is left to that run."""
        if isinstance(exc, ImageStoreError):
            message, again = exc.message, retryable(exc)
        elif isinstance(exc, (IOError, OSError)):
            message, again = "local file error: %s" % exc, False
        else:
            message, again = str(exc) or type(exc).__name__, False
        details = dict(getattr(exc, "details", None) or {})
        details.update(session_id=session_id, item_id=result["item_id"], library_id=result["library_id"])
        if not owned:
            details["session_cleanup"] = "left"
            note = "update session %s was opened by a concurrent run for the same item and is left to it" % session_id
        elif again and self.params.get("keep_session_on_failure"):
            details["session_cleanup"] = "kept"
            note = ("update session %s is left ACTIVE (keep_session_on_failure=true): run again to resume it, or remove it with "
                    "imagestore.upload.upload_session_absent" % session_id)
        else:
            details["session_cleanup"], note = self.discard(session_id, message)
            if result["item_created"] and details["session_cleanup"] == "deleted":
                note += self._drop_created_item(result["item_id"])
        return ImageStoreError("%s; %s" % (message, note), status=getattr(exc, "status", None), code=getattr(exc, "code", None),
                               retryable=again, details=details)

    def _drop_created_item(self, item_id):
        """Delete the item this run created for an upload that failed (no empty item is left behind), unless it holds files
        now: a run racing for the item may have completed its upload into it meanwhile."""
        try:
            if self._item_files(item_id):
                return "; the library item %s created by this run is kept: it holds files now (another run uploaded them)" % item_id
            self.api.item_delete(item_id)
        except ImageStoreError as exc:
            return "; the library item %s created by this run is left (deleting it failed: %s)" % (item_id, exc.message)
        return "; the library item %s created by this run was deleted" % item_id

    def discard(self, session_id, reason):
        """Fail, cancel and delete an update session, each step tolerating a session already past it.

        Returns (outcome, sentence): outcome ``deleted`` or ``incomplete``; the sentence never hides a
        session that may still be ACTIVE.
        """
        steps = (("failed", lambda: self.api.session_fail(session_id, reason[:1000])),
                 ("canceled", lambda: self.api.session_cancel(session_id)),
                 ("deleted", lambda: self.api.session_delete(session_id)))
        done, problems = [], []
        for step, call in steps:
            try:
                call()
                done.append(step)
            except ApiError as exc:
                if exc.status == 404:
                    done.append("deleted")
                    break
                if exc.code != "not_allowed_in_current_state":
                    problems.append("%s: %s" % (step, exc.message))
            except ImageStoreError as exc:
                problems.append("%s: %s" % (step, exc.message))
                if isinstance(exc, TransportError):     # the server cannot be reached: the next steps would fail alike
                    break
        if "deleted" in done:
            return "deleted", "update session %s was %s" % (session_id, _join(done))
        return "incomplete", ("update session %s could not be cleaned up (%s); it may still be ACTIVE: remove it with "
                              "imagestore.upload.upload_session_absent" % (session_id, "; ".join(problems) or "unknown state"))

    # -- upload_session_info ------------------------------------------------------------------
    def _session_target(self, what):
        """(session models, item id or None) named by session_id, or by library + item."""
        session_id = self.params.get("session_id")
        library, item = self.params.get("library"), self.params.get("item")
        if session_id:
            if not _ID.match(str(session_id)):
                raise ImageStoreError("session_id %r is not a valid vSphere update session id: use the id image_upload or "
                                      "upload_session_info returned (letters, digits, '.', '_', ':' and '-')" % session_id)
            model = self.api.session_get(session_id)
            if model is not None:
                model.setdefault("id", session_id)
            return ([model] if model is not None else []), None
        if not (library and item):
            raise ImageStoreError("provider vsphere %s update sessions by session_id, or by library and item together; give one of them" % what)
        library_id = self._library_id(check_name(library, "library"))
        item_id = self._item_id(library_id, check_name(item, "item"))
        if item_id is None:
            return [], None
        return sorted(self._sessions_of_item(item_id), key=lambda s: (s.get("state") != "ACTIVE", s.get("id"))), item_id

    def sessions(self):
        models = self._session_target("looks up")[0]
        return [self._record(model) for model in models]

    def _record(self, model):
        """The normalised record: sizes and progress from the session's files where the server says."""
        state = str(model.get("state") or "unknown").lower()
        try:
            files = self.api.file_list(model["id"])
        except ApiError as exc:
            if exc.status != 404:
                raise
            files = []          # deleted meanwhile
        sizes = [_int(f.get("size")) for f in files]
        size = sum(sizes) if files and None not in sizes else None
        missing, offset = [], 0
        for f, fsize in zip(files, sizes if size is not None else []):
            received = fsize if f.get("status") == "READY" else min(fsize, _int(f.get("bytes_transferred")) or 0)
            if received < fsize:
                missing.append((offset + received, offset + fsize - 1))
            offset += fsize
        record = session_record(self.name, model["id"], state, size, missing, expires=model.get("expiration_time"), raw=model,
                                library_item_id=model.get("library_item_id"), client_progress=_int(model.get("client_progress")),
                                error=_message_text(model.get("error_message")) or None,
                                files=[{"name": f.get("name"), "size": _int(f.get("size")), "status": str(f.get("status") or "").lower(),
                                        "bytes_transferred": _int(f.get("bytes_transferred")),
                                        "checksum": stored_checksum(f)[1], "error": _message_text(f.get("error_message")) or None}
                                       for f in files])
        if state == "done":
            record["progress"] = 100.0
        elif size is None:
            record["progress"] = float(_int(model.get("client_progress")) or 0)
        return record

    # -- upload_session_commit ----------------------------------------------------------------
    def commit(self):
        models, item_id = self._session_target("commits")
        active = [m for m in models if m.get("state") == "ACTIVE"]
        done = [m for m in models if m.get("state") == "DONE"]
        if not models:
            raise ImageStoreError(self._nothing_found("no update session to commit"))
        if not active:
            if done:
                return {"changed": False, "session": self._record(done[0]),
                        "msg": "update session %s is already DONE" % done[0]["id"]}
            model = models[0]
            raise ImageStoreError("update session %s is %s%s: it cannot be completed; run image_upload again to start a new one" % (
                model["id"], model.get("state"), (" (%s)" % _message_text(model.get("error_message"))) if model.get("error_message") else ""))
        session_id = active[0]["id"]
        record = self._record(active[0])
        validation = self.api.file_validate(session_id)
        if validation["has_errors"]:
            error = self._validation_error(session_id, validation)
            error.details["session"] = record
            raise error
        if not self.check_mode:
            self.complete_and_wait(session_id)
        return {"changed": True, "session": record, "item_id": item_id or active[0].get("library_item_id"),
                "msg": "%s update session %s" % ("would complete" if self.check_mode else "completed", session_id)}

    def _nothing_found(self, what):
        if self.params.get("session_id"):
            return "%s: update session %s is unknown (deleted, or dropped by the server after it ended)" % (what, self.params["session_id"])
        return "%s: item %r of library %r has no update session" % (what, self.params.get("item"), self.params.get("library"))

    # -- upload_session_absent ----------------------------------------------------------------
    def absent(self):
        models = self._session_target("removes")[0]
        canceled, deleted = [], []
        for model in models:
            session_id = model["id"]
            if self.check_mode:
                if model.get("state") == "ACTIVE":
                    canceled.append(session_id)
                deleted.append(session_id)
                continue
            if model.get("state") == "ACTIVE":
                try:
                    self.api.session_cancel(session_id)
                    canceled.append(session_id)
                except ApiError as exc:
                    if exc.status == 404:
                        continue
                    if exc.code != "not_allowed_in_current_state":
                        raise
            if self.api.session_delete(session_id):
                deleted.append(session_id)
        if deleted:
            msg = "%s %d update session(s)%s" % ("would delete" if self.check_mode else "deleted", len(deleted),
                                                 " (canceled first: %s)" % ", ".join(canceled) if canceled else "")
        else:
            msg = "no such update session"
        return {"changed": bool(deleted), "deleted": deleted, "canceled": canceled, "msg": msg}


def _join(words):
    return words[0] if len(words) == 1 else "%s and %s" % (", ".join(words[:-1]), words[-1])
