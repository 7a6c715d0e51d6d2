# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Service Fabric Image Store: the protocol hooks (private).

* unit RANGE: chunks of any size, in any order, in parallel; a session per file, created by its first
  chunk; its id comes from the destination path and the file's size and SHA-256
  (``_servicefabric_records.session_id_for``), so any host holding the same bytes finds it again, and a
  session this collection made for other content at that path is removed when a new one starts;
* files up to ``chunk_size`` (and empty ones) go by one whole-file PUT, without a session;
* ``FABRIC_E_UPLOAD_SESSION_RANGE_NOT_SATISFIABLE`` or a 504 on a chunk: the server's account may have
  moved (a chunk that landed behind a lost answer): re-read and re-plan, never re-send blindly; a chunk
  whose answer was lost (a cut connection, a 504) and that the session holds counts as sent; a 504 on
  a commit or a whole-file PUT: look at the stored file before asking again;
* the store keeps no digest: "already holds these bytes" comes from this collection's record in the
  store (``_servicefabric_records``); a package folder is judged file by file and gets its ``_.dir``
  markers (``_servicefabric_package``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.imagestore.upload.plugins.module_utils._errors import (
    ApiError, BadInput, Conflict, DeadlineExceeded, ImageStoreError, SessionLost, VerificationError,
)
from ansible_collections.imagestore.upload.plugins.module_utils._protocol import (
    ACTIVE, COMPLETE, DONE, KEPT, RANGE, REMOVED, LocalFile, Protocol, Session, Stored, Verdict,
)
from ansible_collections.imagestore.upload.plugins.module_utils._servicefabric_client import (
    RANGE_NOT_SATISFIABLE, WARM_UP, ServiceFabricClient, check_session_id, normalize_path, parse_error, same_path, store_full,
    uncertain,
)
from ansible_collections.imagestore.upload.plugins.module_utils._servicefabric_compress import Compressor
from ansible_collections.imagestore.upload.plugins.module_utils._servicefabric_package import package_files, stored_tree, write_dir_markers
from ansible_collections.imagestore.upload.plugins.module_utils._digest_cache import DigestCache
from ansible_collections.imagestore.upload.plugins.module_utils._servicefabric_records import Record, ours, session_id_for
from ansible_collections.imagestore.upload.plugins.module_utils._wait import once

_LOOK = object()
_STR = dict(type="str")


class ServiceFabric(Protocol):
    name = "servicefabric"
    unit = RANGE
    session_scope = "file"
    multi_file = True
    empty_files = "whole"
    digests = ("sha256",)
    on_failure = "keep"
    options = {"path": _STR, "compress": dict(type="bool", default=False)}
    required = ("path",)
    selectors = {"path": _STR}
    selector_group = ("path",)
    warm_up = WARM_UP

    def __init__(self, ctx):
        super(ServiceFabric, self).__init__(ctx)
        self.api = ServiceFabricClient(self.http)
        self.replaced_sessions = []
        self.compressor = None

    parse_error = staticmethod(parse_error)
    store_full = staticmethod(store_full)

    @property
    def whole_file_max(self):
        return self.params.get("chunk_size") or 0

    # -- what is uploaded where ------------------------------------------------------------------
    def local_files(self, src, make_source):
        if os.path.isdir(src):
            files = package_files(src)
            if self.params.get("compress"):
                self.compressor = Compressor(src, compress_cache_dir() if self.params.get("digest_cache", True) else None)
                files = self.compressor.files(files)
            return [LocalFile(rel, make_source(full, "src file %s" % rel), relative=rel) for full, rel in files]
        if self.params.get("compress"):
            raise BadInput("compress applies to an application package folder; src %s is a file" % src)
        return [LocalFile(os.path.basename(src), make_source(src, "src"), relative="")]

    def destination(self, files):
        path = normalize_path(self.params.get("path"))
        package = files is not None and (len(files) != 1 or files[0].extra["relative"] != "")
        return {"path": path, "package": package, "record": Record(self.api, path, self.put_small), "stored": {}, "after": {}, "pending": [],
                "tree": {}}

    def target(self, dest, f):
        return "%s/%s" % (dest["path"], f.extra["relative"]) if f.extra["relative"] else dest["path"]

    def where(self, dest):
        return ("package folder %s" if dest.get("package") else "%s") % dest["path"]

    def result(self, dest, session_id):
        result = {"destination": {"path": dest["path"]}, "path": dest["path"]}
        if self.replaced_sessions:
            result["replaced_sessions"] = list(self.replaced_sessions)
        if self.compressor is not None:
            result["compressed"] = list(self.compressor.built)
        return result

    def close(self):
        if self.compressor is not None:
            self.compressor.close()

    def diff_state(self, dest, stored, files, after=False, todo=()):
        def size(f):
            if after and f in todo:
                return f.size
            held = stored.get(f.name)
            return held.size if held else None
        if dest["package"]:
            return {"path": dest["path"], "files": dict((f.name, size(f)) for f in files)}
        return {"path": dest["path"], "size": size(files[0])}

    # -- what the store holds ---------------------------------------------------------------------
    def stored(self, dest, files):
        if dest["package"]:
            dest["tree"] = tree = stored_tree(self.api, dest["path"])
            held = dict((f.name, tree.get(self.target(dest, f).lower())) for f in files)
        else:
            held = {files[0].name: self.api.file_info(dest["path"])}
        dest["stored"] = held
        dest["record"].load()
        return dict((name, Stored(name, info["size"], version=info["version"], raw=info))
                    for name, info in held.items() if info is not None)

    def holds(self, dest, stored, f):
        record = dest["record"]
        if record.holds(f.extra["relative"], f.digests["sha256"], stored.raw):
            return Verdict(True, "sha256")
        if record.tokens:
            return Verdict(False, "sha256")
        return Verdict(False, "record", "%s has no record of this collection (uploaded by another tool or an older version): "
                                        "uploaded once to record its digest" % self.target(dest, f))

    # -- sessions -----------------------------------------------------------------------------------
    def resume_key(self, dest, files):
        f = files[0]
        return session_id_for(self.target(dest, f), f.size, f.digests["sha256"])

    def find_session(self, dest, key, files):
        f = files[0]
        path = self.target(dest, f)
        found = None
        for s in self.api.get_sessions_by_path(path):
            if s["id"] == key:
                found = s
            elif ours(s["id"]) and not self.check_mode:
                # a session of this collection for other content of this path: nobody can use it any more
                if self.api.delete_session(s["id"]):
                    self.replaced_sessions.append(s["id"])
                    self.warn("removed upload session %s of %s: it held other content (%d bytes) than the file being uploaded"
                              % (s["id"], path, s["size"]))
        if found is None or found["size"] != f.size:
            return None
        return Session(key, ACTIVE if found["missing"] else COMPLETE, raw_state=None, size=found["size"], missing=found["missing"],
                       raw=found["raw"], found=True, destination={"path": path}, path=path, first=found["missing"], accepted=True)

    def open_session(self, dest, key, files):
        f = files[0]
        path = self.target(dest, f)
        return Session(key, ACTIVE, size=f.size, missing=[(0, f.size - 1)], destination={"path": path}, path=path,
                       first=[(0, f.size - 1)], accepted=False)

    def missing(self, session, files):
        f = files[0]
        first = session.extra.pop("first", None)
        if first is not None:
            return {f.name: first}
        s = self.api.get_session(session.id)
        if s is None:
            if session.extra.get("accepted"):
                raise SessionLost("upload session %s of %s vanished" % (session.id, session.extra["path"]),
                                  reason="expired, deleted, or lost in a failover")
            return {f.name: [(0, f.size - 1)]}          # no chunk landed yet: the next one creates the session
        return {f.name: s["missing"]}

    def send(self, session, f, start, end):
        try:
            self.api.upload_chunk(session.extra["path"], session.id, start, end, f.size, lambda: f.source.body(start, end))
        except ImageStoreError as exc:
            if isinstance(exc, ApiError) and (exc.code == RANGE_NOT_SATISFIABLE or exc.status == 404):
                raise Conflict(exc.message, status=exc.status, code=exc.code)
            if not uncertain(exc) or isinstance(exc, DeadlineExceeded):
                raise
            if self._chunk_landed(session, start, end):
                session.extra["accepted"] = True
                return end - start + 1      # the answer was lost, the bytes landed: this run sent them
            if isinstance(exc, ApiError):
                raise Conflict(exc.message, status=exc.status, code=exc.code, wait=1.0)   # it may land yet: look again
            raise
        session.extra["accepted"] = True
        return end - start + 1

    def _chunk_landed(self, session, start, end):
        """After an uncertain answer (a cut connection, a 504): does the session hold bytes start-end now?"""
        try:
            s = self.api.get_session(session.id)
        except ImageStoreError:
            return False
        return s is not None and not any(a <= end and start <= b for a, b in s["missing"])

    def put_whole(self, dest, f):
        before = dest["stored"].get(f.name)
        self.put_small(self.target(dest, f), lambda: f.source.body(0, f.size - 1) if f.size else b"", f.size, before)
        dest["pending"].append(f)
        return f.size

    def put_small(self, path, body, size, before=_LOOK):
        """A whole-file PUT that is never sent twice: after a 504 or a cut connection, the stored file is looked at first
        (it landed when it is newer than ``before`` and has the size), and the PUT repeated only when it did not."""
        if before is _LOOK:
            before = self.api.file_info(path)
        once(lambda: self.api.put_file(path, body, size), lambda: self._newer(path, size, before), self.deadline,
             "waiting for %s to show in the image store" % path)

    # -- after the bytes ------------------------------------------------------------------------------
    def commit(self, session, dest, files):
        try:
            self.api.commit(session.id)
        except ApiError as exc:
            if exc.status == 400:
                # refused: a commit whose earlier answer was lost had landed, or the session is gone
                if self.landed(session, dest, files):
                    return
                if self.api.get_session(session.id) is None:
                    raise SessionLost("upload session %s of %s vanished before its commit" % (session.id, session.extra["path"]),
                                      reason="expired or deleted")
            raise

    def landed(self, session, dest, files):
        return self._newer(session.extra["path"], files[0].size, dest["stored"].get(files[0].name))

    def _newer(self, path, size, before):
        """Is the stored file at ``path`` newer than ``before`` (another version or date) and ``size`` bytes long?"""
        info = self.api.file_info(path)
        newer = info is not None and (before is None or (info["version"], info["modified"]) != (before["version"], before["modified"]))
        return newer and info["size"] == size

    def verify(self, session, dest, files):
        f = files[0]
        path = self.target(dest, f)
        info = self.api.file_info(path)
        if info is None or info["size"] != f.size:
            raise VerificationError("verification failed: after the commit %s holds %s, expected %d bytes"
                                    % (path, "no file" if info is None else "%d bytes" % info["size"], f.size))
        dest["after"][f.name] = info

    def record(self, session, dest, files):
        for f in files:
            dest["record"].note(f.extra["relative"], f.digests["sha256"], dest["after"][f.name])

    def finish(self, dest, files, changed):
        result = {}
        if dest["pending"]:
            self._check_whole(dest)
        if dest["package"]:
            result["markers"] = write_dir_markers(self.put_small, dest["path"], files, changed or self.params.get("force"), self.check_mode,
                                                  dest["tree"])
        if changed and not self.check_mode:
            result["records_written"] = len(dest["record"].save())
        return result

    def _check_whole(self, dest):
        """Files sent by whole-file PUT: one listing verifies their sizes and gives the versions their records need."""
        tree = stored_tree(self.api, dest["path"]) if dest["package"] else {dest["path"].lower(): self.api.file_info(dest["path"])}
        for f in dest["pending"]:
            info = tree.get(self.target(dest, f).lower())
            if info is None or info["size"] != f.size:
                raise VerificationError("verification failed: after its upload %s holds %s, expected %d bytes" % (
                    self.target(dest, f), "no file" if info is None else "%d bytes" % info["size"], f.size))
            dest["record"].note(f.extra["relative"], f.digests["sha256"], info)

    def abort(self, session, dest, reason, keep):
        if keep:
            return KEPT
        self.api.delete_session(session.id)
        return REMOVED

    # -- session modules ------------------------------------------------------------------------------
    def _session(self, s):
        state = ACTIVE if s["missing"] else COMPLETE
        if state == COMPLETE:
            info = self.api.file_info(s["path"])
            if info is not None and info["size"] == s["size"] and _newer_or_same(info["modified"], s["modified"]):
                state = DONE
        return Session(s["id"], state, raw_state=None, size=s["size"], missing=s["missing"], raw=s["raw"],
                       destination={"path": s["path"]}, path=s["path"], modified=s["modified"])

    def session_by_id(self, session_id):
        s = self.api.get_session(check_session_id(session_id))
        return [self._session(s)] if s else []

    def sessions_at(self):
        return [self._session(s) for s in self.api.get_sessions_by_path(normalize_path(self.params["path"]))]

    def describe(self, session):
        return {"path": session.extra["path"], "modified": session.extra["modified"]}

    def complete(self, session):
        path = session.extra["path"]
        dest = {"stored": {"f": self.api.file_info(path)}}
        files = [LocalFile("f", _Sized(session.size), relative="")]
        once(lambda: self.commit(session, dest, files), lambda: self.landed(session, dest, files), self.deadline,
             "waiting for the commit of upload session %s to show" % session.id)
        info = self.api.file_info(path)
        if info is None or info["size"] != session.size:
            raise VerificationError("verification failed: after the commit %s holds %s, expected %d bytes"
                                    % (path, "no file" if info is None else "%d bytes" % info["size"], session.size))

    def remove(self, session, purge):
        return {"removed": self.api.delete_session(session.id)}

    # -- image_upload state=absent ----------------------------------------------------------------------
    def present(self, dest):
        path = dest["path"]
        listing = self.api.listing(path)
        found = []
        if listing is not None:
            files, folders = listing
            single = len(files) == 1 and not folders and same_path(files[0]["path"], path)
            found.append(path if single else "%s (folder)" % path)
        found.extend("upload session %s" % s["id"] for s in self.api.get_sessions_by_path(path))
        return found

    def remove_content(self, dest, present):
        path = dest["path"]
        for s in self.api.get_sessions_by_path(path):
            self.api.delete_session(s["id"])
        self.api.delete_content(path)
        dest["record"].remove()


def compress_cache_dir():
    """Where the zips of compressed packages are kept between runs (beside the digest cache), or None."""
    cache = DigestCache.default_path()
    if not cache:
        return None
    folder = os.path.join(os.path.dirname(cache), "compressed")
    try:
        if not os.path.isdir(folder):
            os.makedirs(folder, mode=0o700)
    except OSError:
        return None
    return folder


class _Sized(object):
    """Stands for a Source where only the size is known (committing a session found by id)."""

    def __init__(self, size):
        self.size = size
        self.path = None


def _newer_or_same(file_modified, session_modified):
    """True when the stored file was written at or after the session's last change (ISO 8601 strings)."""
    import datetime

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
