# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The toy store: the wire calls (private), on the HttpClient the engine gives the protocol.

The API is described at the top of tests/contract/toystore/server.py. Every call carries the token of
one login (the shared ``TokenSession``: log in lazily, again once on a 401, log out at the end).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

try:
    from urllib.parse import quote
except ImportError:  # pragma: no cover - Python 2 is not supported, but sanity imports on it
    from urllib import quote

from ansible_collections.imagestore.upload.plugins.module_utils._errors import ApiError, BadInput, StoreFull
from ansible_collections.imagestore.upload.plugins.module_utils._tokens import TokenSession


def normalize_path(path, option="path"):
    """A relative path with ``/`` separators; refuse what could escape the store."""
    text = str(path or "")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if not parts or text.startswith("/") or ".." in parts or any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise BadInput("%s %r is not a path inside the toy store: give a relative path such as 'images/disk.img' "
                       "(no leading '/', no '..', no control characters)" % (option, text))
    return "/".join(parts)


def check_session_id(value, option="session_id"):
    if not re.match(r"^[0-9a-f]{32}$", str(value or "")):
        raise BadInput("%s %r is not a toy store session id (32 lower-case hex digits)" % (option, value))
    return str(value)


def parse_error(response):
    """(code, message) of an error answer: {"error": {"code", "message"}}, or whatever else came back."""
    try:
        error = response.json()["error"]
        return error.get("code"), error.get("message")
    except (ValueError, KeyError, TypeError, AttributeError):
        return None, " ".join((response.text or "").split())[:300] or response.reason


def writing(call):
    """A call that writes: the store's full disk (507 NO_SPACE) becomes StoreFull, with the store's own words."""
    def wrapper(*args, **kwargs):
        try:
            return call(*args, **kwargs)
        except ApiError as exc:
            if exc.status == 507 or exc.code == "NO_SPACE":
                raise StoreFull("%s: the toy store has no room left (free space on its disk, then run again: what it "
                                "received is kept)" % exc.message, status=exc.status, code=exc.code)
            raise
    return wrapper


def parse_session(body):
    """A session with inclusive (start, end) tuples."""
    return dict(body, missing=[tuple(r) for r in body.get("missing") or []],
                in_flight=[tuple(r) for r in body.get("in_flight") or []])


class ToyStoreClient:
    def __init__(self, http, username, password):
        self.http = http
        self._credentials = {"username": username, "password": password}
        self.tokens = TokenSession(self._login, self._logout, lambda exc: exc.status == 401)

    # -- the token session --------------------------------------------------------------------------
    def _login(self):
        r = self.http.request("POST", "/v1/login", json=self._credentials, what="log in to the toy store")
        return self.http.json(r, "log in to the toy store")["token"]

    def _logout(self, token):
        self.http.request("DELETE", "/v1/login", expect=(204, 401), headers={"Authorization": "Bearer %s" % token},
                          what="log out of the toy store")

    def logout(self):
        self.tokens.logout()

    def _call(self, method, path, what, headers=None, **kwargs):
        def call(token):
            return self.http.request(method, path, what=what, headers=dict(headers or {}, Authorization="Bearer %s" % token),
                                     **kwargs)
        return self.tokens.call(call)

    # -- files ----------------------------------------------------------------------------------------
    def file_info(self, path):
        """{"path", "size", "sha256", "version", "modified"} of the file at ``path``, or None."""
        r = self._call("GET", "/v1/files/%s" % quote(path), "look at %s" % path, expect=(200, 404))
        return self.http.json(r, "look at %s" % path) if r.status_code == 200 else None

    def delete_file(self, path):
        r = self._call("DELETE", "/v1/files/%s" % quote(path), "delete %s" % path, expect=(204, 404))
        return r.status_code == 204

    # -- sessions -------------------------------------------------------------------------------------
    def session(self, session_id):
        what = "get upload session %s" % session_id
        r = self._call("GET", "/v1/sessions/%s" % session_id, what, expect=(200, 404))
        return parse_session(self.http.json(r, what)) if r.status_code == 200 else None

    def sessions(self, path):
        what = "list the upload sessions of %s" % path
        r = self._call("GET", "/v1/sessions", what, params={"path": path})
        return [parse_session(s) for s in self.http.json(r, what).get("sessions") or []]

    @writing
    def create_session(self, session_id, path, size, sha256):
        """(session, created): the id is the caller's, so a repeated call finds the session the first one made."""
        what = "start upload session %s for %s" % (session_id, path)
        r = self._call("PUT", "/v1/sessions/%s" % session_id, what, expect=(200, 201),
                       json={"path": path, "size": size, "sha256": sha256})
        return parse_session(self.http.json(r, what)), r.status_code == 201

    @writing
    def put_range(self, session_id, start, end, size, body):
        """Send bytes start-end; None when accepted, else (status, code, message, seconds to wait) of a 404 or 409.
        Never repeated here: a cut body may be held "in flight" by the store, the caller re-reads the session."""
        r = self._call("PUT", "/v1/sessions/%s/data" % session_id, "upload bytes %d-%d" % (start, end), expect=(204, 404, 409),
                       body=body, idempotent=False,
                       headers={"Content-Range": "bytes %d-%d/%d" % (start, end, size), "Content-Length": str(end - start + 1),
                                "Content-Type": "application/octet-stream"})
        if r.status_code == 204:
            return None
        code, message = parse_error(r)
        return r.status_code, code, message, float(r.headers.get("Retry-After") or 0)

    @writing
    def commit(self, session_id):
        """The file the commit made; never repeated here: when its answer is lost, the engine asks ``landed()`` first."""
        what = "commit upload session %s" % session_id
        r = self._call("POST", "/v1/sessions/%s/commit" % session_id, what, idempotent=False)
        return self.http.json(r, what)

    def delete_session(self, session_id):
        r = self._call("DELETE", "/v1/sessions/%s" % session_id, "delete upload session %s" % session_id, expect=(204, 404))
        return r.status_code == 204
