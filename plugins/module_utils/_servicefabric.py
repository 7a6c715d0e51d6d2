# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Service Fabric Image Store adapter (private).

Protocol facts: shared/protocols/servicefabric.md. What this adapter survives:
* 204 with an empty body means "no session" on both get calls (Microsoft's SDK treats it as an error);
* 64-bit numbers arrive as JSON strings; ``StoreRelativePath`` may use ``\\`` or ``/``;
* ``FABRIC_E_UPLOAD_SESSION_RANGE_NOT_SATISFIABLE`` on a chunk means the server's account moved (a
  retried chunk whose first attempt landed, or a concurrent sender): re-read and re-plan;
* a 0-byte file cannot be committed through a session: it goes by whole-file PUT;
* the session id is derived from the destination path and the local file's identity (device, inode,
  size, mtime, ctime), so a re-run of the same file finds its own session again (resume), and a
  different file, or the same file written to since, never resumes into it; the SHA-256 the module
  returns is computed beside the upload, not before it (the Image Store checks no digest).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import os
import uuid

try:
    from urllib.parse import quote
except ImportError:  # pragma: no cover - Python 2 is not supported, but sanity imports on it
    from urllib import quote

from ansible_collections.imagestore.upload.plugins.module_utils._base import Provider, session_record
from ansible_collections.imagestore.upload.plugins.module_utils._http import ApiError, ImageStoreError
from ansible_collections.imagestore.upload.plugins.module_utils._upload import Conflict, Transfer, normalize, total

API_VERSION = "6.0"
CONTENT_API_VERSION = "6.2"
RANGE_NOT_SATISFIABLE = "FABRIC_E_UPLOAD_SESSION_RANGE_NOT_SATISFIABLE"
SESSION_NAMESPACE = uuid.UUID("5b0f3f0e-3a57-4c55-9d33-6b2c6f1d8a11")
DIR_MARKER = "_.dir"
_LOOK_UP = object()


def normalize_path(path, option="path"):
    """Image-store relative path with ``/`` separators; refuse what could escape the store."""
    if path is None or not str(path).strip():
        raise ImageStoreError("%s must be a non-empty image store relative path such as 'images/disk.vhd'" % option)
    text = str(path)
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise ImageStoreError("%s %r contains control characters; use printable characters only" % (option, text))
    parts = text.replace("\\", "/").split("/")
    if text.startswith(("/", "\\")) or (len(parts[0]) == 2 and parts[0][1] == ":"):
        raise ImageStoreError("%s %r is absolute; give a path relative to the image store root, e.g. 'images/disk.vhd'"
                              % (option, text))
    if ".." in parts:
        raise ImageStoreError("%s %r contains a '..' segment; give a path inside the image store" % (option, text))
    parts = [p for p in parts if p not in ("", ".")]
    if not parts:
        raise ImageStoreError("%s must name a file or folder below the image store root" % option)
    return "/".join(parts)


def same_path(a, b):
    return normalize_path(a).lower() == normalize_path(b).lower()


def encode_path(path):
    """Percent-encode a content path as Microsoft's clients do (separators included)."""
    return quote(path, safe="")


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


def check_session_id(value, option="session_id"):
    try:
        parsed = uuid.UUID(str(value))
    except (TypeError, ValueError):
        raise ImageStoreError("%s %r is not a valid upload session id: Service Fabric session ids are GUIDs such as "
                              "'4a2340e8-d8d8-497c-95fe-cdaa1052f33b'" % (option, value))
    if parsed.int == 0:
        raise ImageStoreError("%s must not be the all-zero GUID" % option)
    return str(parsed)


class ServiceFabricClient:
    """Every Image Store call of the protocol note, on top of the shared HttpClient."""

    def __init__(self, http):
        self.http = http

    @staticmethod
    def parse_error(response):
        try:
            err = response.json().get("Error") or {}
            return err.get("Code"), err.get("Message")
        except ValueError:
            return None, (response.text or "").strip()[:300] or response.reason

    def _params(self, version=API_VERSION, **extra):
        params = {"api-version": version}
        params.update((k.replace("_", "-"), v) for k, v in extra.items() if v is not None)
        return params

    def get_session(self, session_id):
        """The session with that id, or None (204)."""
        r = self.http.request("GET", "/ImageStore/$/GetUploadSession", expect=(200, 204),
                              params=self._params(session_id=session_id), what="get upload session %s" % session_id)
        sessions = self._sessions(r)
        return sessions[0] if sessions else None

    def get_sessions_by_path(self, path):
        r = self.http.request("GET", "/ImageStore/%s/$/GetUploadSession" % encode_path(path), expect=(200, 204),
                              params=self._params(), what="get upload sessions of %s" % path)
        return self._sessions(r)

    @staticmethod
    def _sessions(response):
        if response.status_code == 204 or not response.content.strip():
            return []
        return [parse_session(s) for s in response.json().get("UploadSessions") or []]

    def upload_chunk(self, path, session_id, start, end, size, body):
        """PUT one chunk; ``body`` is a callable returning a fresh reader for each attempt."""
        try:
            self.http.request("PUT", "/ImageStore/%s/$/UploadChunk" % encode_path(path), body=body,
                              params=self._params(session_id=session_id),
                              headers={"Content-Range": "bytes %d-%d/%d" % (start, end, size),
                                       "Content-Type": "application/octet-stream",
                                       "Content-Length": str(end - start + 1)},
                              what="upload bytes %d-%d of %s" % (start, end, path))
        except ApiError as exc:
            if exc.code == RANGE_NOT_SATISFIABLE or exc.status == 404:
                # the server's account moved (a retried chunk had landed), or the session went away
                # (expired, deleted, lost on failover) while this chunk streamed: re-read and re-plan
                raise Conflict(str(exc))
            raise

    def commit(self, session_id):
        self.http.request("POST", "/ImageStore/$/CommitUploadSession", params=self._params(session_id=session_id),
                          what="commit upload session %s" % session_id)

    def delete_session(self, session_id):
        """Delete a session; False when the server did not know it (404)."""
        r = self.http.request("DELETE", "/ImageStore/$/DeleteUploadSession", expect=(200, 404),
                              params=self._params(session_id=session_id), what="delete upload session %s" % session_id)
        return r.status_code == 200

    def put_file(self, path, body, size):
        self.http.request("PUT", "/ImageStore/%s" % encode_path(path), body=body, params=self._params(),
                          headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
                          what="upload %s" % path)

    def content(self, path):
        """ImageStoreContent of a file or folder: None when absent (404), {} for an empty folder (204)."""
        r = self.http.request("GET", "/ImageStore/%s" % encode_path(path), expect=(200, 204, 404),
                              params=self._params(CONTENT_API_VERSION), what="get image store content of %s" % path)
        if r.status_code == 404:
            return None
        if r.status_code == 204 or not r.content.strip():
            return {}
        return r.json()

    def file_info(self, path):
        """FileInfo of the file at ``path`` (size as int), or None."""
        content = self.content(path)
        for f in (content or {}).get("StoreFiles") or []:
            if same_path(f.get("StoreRelativePath") or "", path):
                return {"size": int(f.get("FileSize") or 0), "modified": f.get("ModifiedDate"),
                        "version": (f.get("FileVersion") or {}).get("VersionNumber"), "raw": f}
        return None

    def delete_content(self, path):
        r = self.http.request("DELETE", "/ImageStore/%s" % encode_path(path), expect=(200, 404),
                              params=self._params(), what="delete image store content %s" % path)
        return r.status_code == 200


def session_id_for(path, source):
    """The session id this collection uses for uploading ``source`` (a Source) to ``path``.

    Derived from the file's identity, not its content: it is known before the first byte is read, so
    the upload starts at once and the SHA-256 is computed while the chunks go out. A file written to
    since gets a new ctime, hence a new id: a session never receives bytes of two versions of a file.
    """
    return str(uuid.uuid5(SESSION_NAMESPACE, "%s|%d|%s" % (normalize_path(path).lower(), source.size, source.fingerprint)))


def _newer_or_same(file_modified, session_modified):
    """True when the stored file was written at or after the session's last change (ISO 8601 strings)."""
    def parse(value):
        value = (value or "").rstrip("Z").split("+")[0]
        for fmt in ("%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S"):
            try:
                return datetime.datetime.strptime(value, fmt)
            except ValueError:
                continue
        return None
    f, s = parse(file_modified), parse(session_modified)
    return f is not None and s is not None and f >= s


class ServiceFabric(Provider):
    name = "servicefabric"
    own_options = ("path",)

    def __init__(self, params, check_mode=False, warn=None):
        super(ServiceFabric, self).__init__(params, check_mode, warn)
        self.api = ServiceFabricClient(self.http)

    def parse_error(self, response):
        return ServiceFabricClient.parse_error(response)

    # -- image_upload -------------------------------------------------------------------------
    def upload(self):
        src = self.params["src"]
        path = normalize_path(self.params["path"])
        if not os.path.exists(src):
            raise ImageStoreError("src: %s does not exist on the host running the module" % src)
        if os.path.isdir(src):
            return self._upload_tree(src, path)
        self.check_src_file(src)
        result = self._upload_file(src, path)
        result["destination"] = {"path": path}
        result["diff"] = {"before": {"path": path, "size": result.pop("_before_size")},
                          "after": {"path": path, "size": result["size"]}}
        return result

    def _upload_file(self, src, path, stored=_LOOK_UP):
        """Upload one file to ``path``; ``stored``: what the store holds there if already known (None: nothing)."""
        source = self.source(src)
        force = self.params.get("force")
        if stored is _LOOK_UP:
            stored = self.api.file_info(path)
        result = {"changed": False, "path": path, "size": source.size, "bytes_sent": 0, "resumed": False,
                  "session_id": None, "_before_size": stored["size"] if stored else None,
                  "sha256": source.cached_digests(("sha256",)).get("sha256")}
        if stored is not None and stored["size"] == source.size and not force:
            # the Image Store keeps no digest to compare with: the size decides, and the file is not read
            result["msg"] = "%s already holds %d bytes; nothing sent (force=true re-uploads)" % (path, source.size)
            return result
        result["changed"] = True
        if source.size == 0:
            if not self.check_mode:
                self.api.put_file(path, b"", 0)
                self._verify(path, 0)
            result["sha256"] = source.digest("sha256")
            result["msg"] = "uploaded an empty file by whole-file PUT"
            return result
        session_id = session_id_for(path, source)
        result["session_id"] = session_id
        session = self.api.get_session(session_id)
        if session is not None and (not same_path(session["path"], path) or session["size"] != source.size):
            session = None   # an id collision cannot be ours; the server answers 409/400 if we insist
        if session is not None and not session["missing"] and not self.check_mode:
            # Every byte is in: either a run stopped between its last chunk and the commit (commit it
            # now), or the session was committed and the file since replaced (start a fresh session).
            if not force and self._commit_and_verify(session_id, path, source.size):
                result.update(resumed=True, sha256=source.digest("sha256"),
                              msg="committed the complete session %s left by an earlier run" % session_id)
                return result
            self.api.delete_session(session_id)
            session = None
        missing = session["missing"] if session else [(0, source.size - 1)]
        result["resumed"] = session is not None and total(missing) < source.size
        if self.check_mode:
            result["bytes_sent"] = 0
            result["would_send"] = total(missing)
            result["msg"] = "would %s %d of %d bytes to %s" % ("resume and send" if result["resumed"] else "send",
                                                               total(missing), source.size, path)
            return result
        first = [missing]
        restarts = []

        def current_missing():
            self.deadline.check("uploading %s" % path)
            if first:
                return first.pop()
            s = self.api.get_session(session_id)
            if s is None:
                # expired, deleted or lost on a failover: the next chunk starts the session afresh
                restarts.append(session_id)
                return [(0, source.size - 1)]
            return s["missing"]

        def send(start, end, src_file):
            self.deadline.check("uploading %s" % path)
            self.api.upload_chunk(path, session_id, start, end, source.size, lambda: src_file.reader(start, end))

        digests = source.digests_in_background(("sha256",))
        transfer = Transfer(source, current_missing, send, chunk_size=self.chunk_size, parallel=self.parallel)
        result["bytes_sent"] = transfer.run()
        result["sha256"] = digests.result()["sha256"]
        source.check_unchanged()
        self.api.commit(session_id)
        self._verify(path, source.size)
        result["chunks_replanned"] = transfer.conflicts
        if restarts:
            result["session_restarts"] = len(restarts)
            self.warn("upload session %s of %s vanished during the upload (expired or deleted) and was started again"
                      % (session_id, path))
        result["msg"] = "%s %d bytes to %s" % ("resumed upload, sent the missing" if result["resumed"] else "uploaded",
                                               result["bytes_sent"], path)
        return result

    def _commit_and_verify(self, session_id, path, size):
        self.api.commit(session_id)
        stored = self.api.file_info(path)
        return stored is not None and stored["size"] == size

    def _verify(self, path, size):
        stored = self.api.file_info(path)
        if stored is None or stored["size"] != size:
            raise ImageStoreError("verification failed: after commit %s holds %s bytes, expected %d"
                                  % (path, "no file" if stored is None else stored["size"], size))

    def _upload_tree(self, src, path):
        """An application package: every file, then an empty ``_.dir`` marker per folder (deepest first)."""
        files, folders = [], []
        for root, dirs, names in os.walk(src):
            dirs.sort()
            rel = os.path.relpath(root, src)
            folders.append("" if rel == "." else rel.replace(os.sep, "/"))
            for name in sorted(names):
                if name == DIR_MARKER:
                    continue
                full = os.path.join(root, name)
                files.append((full, "/".join(p for p in (folders[-1], name) if p)))
        stored = self._stored_tree(path)
        results, before, after = [], {}, {}
        for full, rel in files:
            self.check_src_file(full)
            dest = "%s/%s" % (path, rel)
            info = stored.get(dest.lower())
            before[rel] = info["size"] if info else None
            r = self._upload_file(full, dest, stored=info)
            r.pop("_before_size", None)
            after[rel] = r["size"]
            results.append(r)
        markers = []
        for folder in sorted(folders, key=lambda f: (-f.count("/") if f else 1, f)):
            marker = "/".join(p for p in (path, folder, DIR_MARKER) if p)
            if marker.lower() in stored and not self.params.get("force") and not any(r["changed"] for r in results):
                continue
            markers.append(marker)
            if not self.check_mode:
                self.api.put_file(marker, b"", 0)
        changed = any(r["changed"] for r in results) or bool(markers)
        return {
            "changed": changed,
            "path": path,
            "destination": {"path": path},
            "size": sum(r["size"] for r in results),
            "bytes_sent": sum(r["bytes_sent"] for r in results),
            "resumed": any(r["resumed"] for r in results),
            "session_id": None,
            "sha256": None,
            "files": results,
            "markers": markers,
            "diff": {"before": {"path": path, "files": before}, "after": {"path": path, "files": after}},
            "msg": "%d of %d files uploaded, %d folder markers written" % (
                sum(1 for r in results if r["changed"]), len(results), len(markers)),
        }

    def _stored_tree(self, path):
        """Every file below ``path`` in the store: lower-cased path -> FileInfo."""
        found = {}
        pending = [path]
        while pending:
            folder = pending.pop()
            content = self.api.content(folder)
            for f in (content or {}).get("StoreFiles") or []:
                p = normalize_path(f.get("StoreRelativePath") or "")
                found[p.lower()] = {"size": int(f.get("FileSize") or 0), "raw": f}
            for d in (content or {}).get("StoreFolders") or []:
                pending.append(normalize_path(d.get("StoreRelativePath") or ""))
        return found

    # -- upload_session_info ------------------------------------------------------------------
    def sessions(self):
        if self.params.get("session_id"):
            session = self.api.get_session(check_session_id(self.params["session_id"]))
            found = [session] if session else []
        elif self.params.get("path"):
            found = self.api.get_sessions_by_path(normalize_path(self.params["path"]))
        else:
            raise ImageStoreError("provider servicefabric looks sessions up by session_id or by path; give one of them")
        return [self._record(s) for s in found]

    def _record(self, s):
        state = "active" if s["missing"] else "complete"
        return session_record(self.name, s["id"], state, s["size"], s["missing"], expires=None, raw=s["raw"],
                              path=s["path"], modified=s["modified"])

    # -- upload_session_commit ----------------------------------------------------------------
    def commit(self):
        session_id = check_session_id(self.params.get("session_id"))
        session = self.api.get_session(session_id)
        if session is None:
            raise ImageStoreError("no upload session %s on the image store (it was deleted, or expired 30 minutes after "
                                  "its last chunk)" % session_id)
        record = self._record(session)
        if session["missing"]:
            ranges = ", ".join("%d-%d" % r for r in session["missing"])
            raise ImageStoreError("upload session %s cannot be committed: %d bytes are missing (ranges %s); run "
                                  "image_upload again to send them" % (session_id, total(session["missing"]), ranges),
                                  details={"missing_ranges": record["missing_ranges"], "session": record})
        stored = self.api.file_info(session["path"])
        if stored is not None and stored["size"] == session["size"] and _newer_or_same(stored["modified"], session["modified"]):
            return {"changed": False, "session": record, "path": session["path"],
                    "msg": "session %s was already committed to %s" % (session_id, session["path"])}
        if not self.check_mode:
            self.api.commit(session_id)
            self._verify(session["path"], session["size"])
        return {"changed": True, "session": record, "path": session["path"],
                "msg": "committed session %s to %s" % (session_id, session["path"])}

    # -- upload_session_absent ----------------------------------------------------------------
    def absent(self):
        if self.params.get("session_id"):
            ids = [check_session_id(self.params["session_id"])]
            if self.check_mode:
                ids = [i for i in ids if self.api.get_session(i) is not None]
        elif self.params.get("path"):
            ids = [s["id"] for s in self.api.get_sessions_by_path(normalize_path(self.params["path"]))]
        else:
            raise ImageStoreError("provider servicefabric finds sessions to delete by session_id or by path; give one of them")
        deleted = []
        for session_id in ids:
            if self.check_mode or self.api.delete_session(session_id):
                deleted.append(session_id)
        return {"changed": bool(deleted), "deleted": deleted,
                "msg": ("deleted %d upload session(s)" % len(deleted)) if deleted else "no such upload session"}
