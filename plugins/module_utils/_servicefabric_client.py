# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Service Fabric Image Store: the wire calls (private).

Protocol facts: shared/protocols/servicefabric.md. What this client survives:
* 204 with an empty body means "no session" on both get calls (Microsoft's SDK treats it as an error);
* 64-bit numbers arrive as JSON strings; ``StoreRelativePath`` may use ``\\`` or ``/``;
* every call passes the server-side ``timeout`` (seconds), derived from what is left of the run's
  deadline and ``request_timeout``, so the gateway gives up before the client does and says so (504);
* 503 ``FABRIC_E_NOT_PRIMARY``/``FABRIC_E_NOT_READY`` did not run: retried by the HTTP layer (backoff,
  Retry-After); a 504 ``FABRIC_E_TIMEOUT`` may have run behind the time-out, so calls that change
  something are never repeated blindly: ``uncertain()`` tells the protocol to look first;
* gateways that renegotiate TLS for the client certificate: every connection carries a small request
  before its first large body (``WARM_UP``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import uuid

try:
    from urllib.parse import quote
except ImportError:  # pragma: no cover - Python 2 is not supported, but sanity imports on it
    from urllib import quote

from ansible_collections.imagestore.upload.plugins.module_utils._errors import ApiError, BadInput
from ansible_collections.imagestore.upload.plugins.module_utils._errors import uncertain as generic_uncertain
from ansible_collections.imagestore.upload.plugins.module_utils._ranges import normalize

API_VERSION = "6.0"
CONTENT_API_VERSION = "6.2"
RANGE_NOT_SATISFIABLE = "FABRIC_E_UPLOAD_SESSION_RANGE_NOT_SATISFIABLE"
TIMEOUT_CODE = "FABRIC_E_TIMEOUT"
#: HRESULT_FROM_WIN32(ERROR_DISK_FULL), which the gateway answers as HTTP 500 when the store's disk is full
DISK_FULL = "0x80070070"
#: a small request every pooled connection carries before its first body larger than the threshold (HTTP.sys
#: buffers 48 KiB before it renegotiates TLS for the client certificate)
WARM_UP = ("/ImageStore/$/GetUploadSession?api-version=%s&session-id=00000000-0000-0000-0000-000000000001" % API_VERSION,
           32 * 1024)


def normalize_path(path, option="path"):
    """Image-store relative path with ``/`` separators; refuse what could escape the store."""
    if path is None or not str(path).strip():
        raise BadInput("%s must be a non-empty image store relative path such as 'images/disk.vhd'" % option)
    text = str(path)
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise BadInput("%s %r contains control characters; use printable characters only" % (option, text))
    parts = text.replace("\\", "/").split("/")
    if text.startswith(("/", "\\")) or (len(parts[0]) == 2 and parts[0][1] == ":"):
        raise BadInput("%s %r is absolute; give a path relative to the image store root, e.g. 'images/disk.vhd'" % (option, text))
    if ".." in parts:
        raise BadInput("%s %r contains a '..' segment; give a path inside the image store" % (option, text))
    parts = [p for p in parts if p not in ("", ".")]
    if not parts:
        raise BadInput("%s must name a file or folder below the image store root" % option)
    return "/".join(parts)


def same_path(a, b):
    return normalize_path(a).lower() == normalize_path(b).lower()


def encode_path(path):
    """Percent-encode a content path as Microsoft's clients do (separators included)."""
    return quote(path, safe="")


def check_session_id(value, option="session_id"):
    try:
        parsed = uuid.UUID(str(value))
    except (TypeError, ValueError):
        raise BadInput("%s %r is not a valid upload session id: Service Fabric session ids are GUIDs such as "
                       "'4a2340e8-d8d8-497c-95fe-cdaa1052f33b'" % (option, value))
    if parsed.int == 0:
        raise BadInput("%s must not be the all-zero GUID" % option)
    return str(parsed)


def parse_session(info):
    """UploadSessionInfo with numbers as ints and ranges as inclusive tuples."""
    ranges = [(int(r["StartPosition"]), int(r["EndPosition"])) for r in info.get("ExpectedRanges") or []]
    return {
        "id": info.get("SessionId"),
        "path": normalize_path(info.get("StoreRelativePath") or "?"),
        "size": int(info.get("FileSize") or 0),
        "modified": info.get("ModifiedDate"),
        "missing": normalize(ranges),
        "raw": info,
    }


def parse_file(entry):
    return {"path": normalize_path(entry.get("StoreRelativePath") or "?"), "size": int(entry.get("FileSize") or 0),
            "modified": entry.get("ModifiedDate"), "version": (entry.get("FileVersion") or {}).get("VersionNumber"),
            "raw": entry}


def parse_error(response):
    """(code, message) of a FabricError body, or of whatever else the gateway answered."""
    try:
        err = response.json().get("Error") or {}
        return err.get("Code"), err.get("Message")
    except (ValueError, AttributeError):
        return None, " ".join((response.text or "").split())[:300] or response.reason


def uncertain(exc):
    """Did a call that changes something fail in a way that leaves open whether it ran? (504, cut connection)"""
    return generic_uncertain(exc) or (isinstance(exc, ApiError) and exc.code == TIMEOUT_CODE)


def store_full(status, code, message):
    """HRESULT_FROM_WIN32(ERROR_DISK_FULL): the gateway's answer when the store's disk is full."""
    return code == DISK_FULL or "not enough space on the disk" in message.lower()


class ServiceFabricClient:
    """Every Image Store call of the protocol note, on top of the shared HttpClient."""

    def __init__(self, http):
        self.http = http

    def _params(self, version=API_VERSION, **extra):
        """api-version, the server-side time-out (a little under the client's), and the call's own parameters."""
        params = {"api-version": version, "timeout": str(max(1, int(self.http.request_timeout()) - 1))}
        params.update((k.replace("_", "-"), v) for k, v in extra.items() if v is not None)
        return params

    def _json(self, response, what):
        return self.http.json(response, what)

    def get_session(self, session_id):
        """The session with that id, or None (204)."""
        what = "get upload session %s" % session_id
        r = self.http.request("GET", "/ImageStore/$/GetUploadSession", expect=(200, 204), params=self._params(session_id=session_id),
                              what=what)
        sessions = self._sessions(r, what)
        return sessions[0] if sessions else None

    def get_sessions_by_path(self, path):
        what = "get upload sessions of %s" % path
        r = self.http.request("GET", "/ImageStore/%s/$/GetUploadSession" % encode_path(path), expect=(200, 204),
                              params=self._params(), what=what)
        return self._sessions(r, what)

    def _sessions(self, response, what):
        if response.status_code == 204 or not response.content.strip():
            return []
        body = self._json(response, what)
        return [parse_session(s) for s in (body.get("UploadSessions") if isinstance(body, dict) else None) or []]

    def upload_chunk(self, path, session_id, start, end, size, body):
        """PUT one chunk; ``body`` is a callable returning a fresh reader for each attempt. Not repeated when it may
        have landed (a cut connection, a 504): the caller re-reads the session instead."""
        self.http.request("PUT", "/ImageStore/%s/$/UploadChunk" % encode_path(path), body=body, idempotent=False,
                          params=self._params(session_id=session_id),
                          headers={"Content-Range": "bytes %d-%d/%d" % (start, end, size),
                                   "Content-Type": "application/octet-stream", "Content-Length": str(end - start + 1)},
                          what="upload bytes %d-%d of %s" % (start, end, path))

    def commit(self, session_id):
        self.http.request("POST", "/ImageStore/$/CommitUploadSession", params=self._params(session_id=session_id),
                          idempotent=False, what="commit upload session %s" % session_id)

    def delete_session(self, session_id):
        """Delete a session; False when the server did not know it (404)."""
        r = self.http.request("DELETE", "/ImageStore/$/DeleteUploadSession", expect=(200, 404),
                              params=self._params(session_id=session_id), what="delete upload session %s" % session_id)
        return r.status_code == 200

    def put_file(self, path, body, size):
        """Whole-file PUT; not repeated when it may have landed (the caller looks at the stored file first)."""
        self.http.request("PUT", "/ImageStore/%s" % encode_path(path), body=body, params=self._params(), idempotent=False,
                          headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
                          what="upload %s" % path)

    def content(self, path):
        """ImageStoreContent of a file or folder: None when absent (404), {} for an empty folder (204)."""
        what = "get image store content of %s" % path
        r = self.http.request("GET", "/ImageStore/%s" % encode_path(path), expect=(200, 204, 404),
                              params=self._params(CONTENT_API_VERSION), what=what)
        if r.status_code == 404:
            return None
        if r.status_code == 204 or not r.content.strip():
            return {}
        body = self._json(r, what)
        if not isinstance(body, dict):
            raise ApiError("%s: the answer is not an ImageStoreContent object" % what, status=r.status_code)
        return body

    def file_info(self, path):
        """The file at ``path`` (parse_file), or None."""
        for f in (self.content(path) or {}).get("StoreFiles") or []:
            if same_path(f.get("StoreRelativePath") or "", path):
                return parse_file(f)
        return None

    def listing(self, folder):
        """(files, folders) directly in ``folder``: files as parse_file, folders as paths; None when absent."""
        content = self.content(folder)
        if content is None:
            return None
        files = [parse_file(f) for f in content.get("StoreFiles") or []]
        folders = [normalize_path(d.get("StoreRelativePath") or "?") for d in content.get("StoreFolders") or []]
        return files, folders

    def delete_content(self, path):
        r = self.http.request("DELETE", "/ImageStore/%s" % encode_path(path), expect=(200, 404),
                              params=self._params(), what="delete image store content %s" % path)
        return r.status_code == 200
