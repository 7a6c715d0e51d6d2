# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The toy store: the protocol hooks (private). Every step, retry and cleanup is the engine's; these only speak the API.

* unit RANGE: byte ranges of any size, any order, in parallel; a session per file, whose id the client
  derives from the path, the size and the SHA-256 (the resume key), so any host with the same bytes finds it;
* a range the store already has, or still receives, answers 409: the engine re-reads what is missing and
  re-plans (after the wait the store asks for); a vanished session is ``SessionLost`` (the engine starts over);
  a session made again after a concurrent run committed these bytes is the upload done (DONE), never made twice;
  a range whose answer was lost and that the session holds counts as sent;
* the store computes the SHA-256 of what it holds: ``holds()`` and ``verify()`` compare it with the file's;
* a commit is made once: when its answer is lost, the engine asks ``landed()`` (the file at the path, newer, with these
  bytes) before it makes it again; a full disk (507 NO_SPACE) is ``StoreFull`` (the client says so).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib

from ansible_collections.imagestore.upload.plugins.module_utils._errors import (
    ApiError, Conflict, ImageStoreError, SessionLost, TransportError, VerificationError,
)
from ansible_collections.imagestore.upload.plugins.module_utils._protocol import (
    ACTIVE, COMPLETE, DONE, KEPT, RANGE, REMOVED, Protocol, Session, Stored,
)
from ansible_collections.imagestore.upload.plugins.module_utils._wait import once
from ansible_collections.imagestore_test.toystore.plugins.module_utils._toystore_client import (
    ToyStoreClient, check_session_id, normalize_path, parse_error,
)

_STR = dict(type="str")


class ToyStore(Protocol):
    name = "toystore"
    unit = RANGE
    session_scope = "file"
    empty_files = "session"
    digests = ("sha256",)
    on_failure = "keep"
    options = {"path": _STR}
    required = ("path",)
    selectors = {"path": _STR}
    selector_group = ("path",)

    parse_error = staticmethod(parse_error)

    def __init__(self, ctx):
        super(ToyStore, self).__init__(ctx)
        self.api = ToyStoreClient(self.http, self.params.get("username"), self.params.get("password"))

    def close(self):
        self.api.logout()

    # -- what goes where ---------------------------------------------------------------------------
    def destination(self, files):
        return {"path": normalize_path(self.params.get("path")), "before": None}

    def where(self, dest):
        return dest["path"]

    def result(self, dest, session_id):
        return {"destination": {"path": dest["path"]}, "path": dest["path"]}

    def diff_state(self, dest, stored, files, after=False, todo=()):
        f = files[0]
        if after and f in todo:
            return {"path": dest["path"], "size": f.size, "sha256": f.digests.get("sha256")}
        held = stored.get(f.name)
        return {"path": dest["path"], "size": held.size if held else None, "sha256": held.digests["sha256"] if held else None}

    def stored(self, dest, files):
        info = dest["before"] = self.api.file_info(dest["path"])
        if info is None:
            return {}
        return {files[0].name: Stored(files[0].name, info["size"], {"sha256": info["sha256"]}, version=info["version"], raw=info)}

    # -- sessions ----------------------------------------------------------------------------------
    def resume_key(self, dest, files):
        f = files[0]
        return hashlib.sha256(("%s\n%d\n%s" % (dest["path"], f.size, f.digests["sha256"])).encode("utf-8")).hexdigest()[:32]

    def _session(self, s, found=False, owned=True):
        return Session(s["id"], ACTIVE if s["missing"] else COMPLETE, raw_state="open", size=s["size"], missing=s["missing"],
                       raw=s, found=found, owned=owned, destination={"path": s["path"]}, path=s["path"], sha256=s["sha256"])

    def find_session(self, dest, key, files):
        s = self.api.session(key)
        return self._session(s, found=True) if s is not None else None

    def open_session(self, dest, key, files):
        f = files[0]
        s, created = self.api.create_session(key, dest["path"], f.size, f.digests["sha256"])
        if created and self._landed(dest["path"], f.size, f.digests["sha256"], dest["before"]):
            # a concurrent run with these bytes committed (and so ended) the session after this run looked at the path:
            # the upload is done; the session just made again is not needed
            self.api.delete_session(key)
            return Session(key, DONE, raw_state="committed", size=f.size, missing=[], found=True, owned=False,
                           destination={"path": dest["path"]}, path=dest["path"], sha256=f.digests["sha256"])
        return self._session(s, found=not created, owned=created)     # not created: a concurrent run's, joined

    def missing(self, session, files):
        s = self.api.session(session.id)
        if s is None:
            raise SessionLost("upload session %s of %s vanished" % (session.id, session.extra["path"]), reason="deleted")
        return {files[0].name: s["missing"]}

    def send(self, session, f, start, end):
        try:
            refused = self.api.put_range(session.id, start, end, f.size, lambda: f.source.reader(start, end))
        except TransportError:
            if self._range_landed(session, start, end):
                return end - start + 1          # the answer was lost, the bytes landed: this run sent them
            raise
        if refused is None:
            return end - start + 1
        status, code, message, wait = refused
        if status == 404:
            raise SessionLost("upload session %s vanished during the upload" % session.id, reason="deleted", status=404, code=code)
        raise Conflict("upload bytes %d-%d: %s" % (start, end, message), status=status, code=code, wait=wait)

    def _range_landed(self, session, start, end):
        """After a lost answer: does the session hold bytes start-end now (received, not still in flight)?"""
        try:
            s = self.api.session(session.id)
        except ImageStoreError:
            return False
        return s is not None and not any(a <= end and start <= b for a, b in s["missing"] + s["in_flight"])

    # -- after the bytes ---------------------------------------------------------------------------
    def commit(self, session, dest, files):
        self._commit(session.id, dest["path"], files[0].size, files[0].digests["sha256"], dest["before"])

    def _commit(self, session_id, path, size, sha256, before):
        """One commit; a lost answer is the engine's (``once``: ``landed()`` is asked before the commit is made again)."""
        try:
            self.api.commit(session_id)
        except ApiError as exc:
            if exc.status == 422:
                raise VerificationError("the toy store refused the commit of %s: %s" % (path, exc.message), status=422)
            if exc.status == 409:       # ranges still missing or in flight (a concurrent sender): a re-run finishes
                raise ImageStoreError("%s; run again to finish the upload" % exc.message, status=409, code=exc.code,
                                      retryable=True)
            if exc.status != 404:
                raise
            if not self._landed(path, size, sha256, before):
                raise SessionLost("upload session %s of %s vanished before its commit" % (session_id, path),
                                  reason="deleted", status=404)
            # a concurrent run with the same bytes committed it (or an earlier attempt of ours whose answer was lost)

    def landed(self, session, dest, files):
        return self._landed(dest["path"], files[0].size, files[0].digests["sha256"], dest["before"])

    def _landed(self, path, size, sha256, before):
        """Does ``path`` hold a newer file than ``before`` with these bytes?"""
        info = self.api.file_info(path)
        return (info is not None and (info["size"], info["sha256"]) == (size, sha256)
                and (before is None or info["version"] != before["version"]))

    def verify(self, session, dest, files):
        self._verify(dest["path"], files[0].size, files[0].digests["sha256"])

    def _verify(self, path, size, sha256):
        info = self.api.file_info(path)
        if info is None or (info["size"], info["sha256"]) != (size, sha256):
            raise VerificationError("verification failed: after the commit %s holds %s, expected %d bytes with SHA-256 %s" % (
                path, "no file" if info is None else "%d bytes with SHA-256 %s" % (info["size"], info["sha256"]), size, sha256))

    def abort(self, session, dest, reason, keep):
        if keep:
            return KEPT
        self.api.delete_session(session.id)
        return REMOVED

    # -- session modules ---------------------------------------------------------------------------
    def session_by_id(self, session_id):
        s = self.api.session(check_session_id(session_id))
        return [self._session(s)] if s is not None else []

    def sessions_at(self):
        return [self._session(s) for s in self.api.sessions(normalize_path(self.params["path"]))]

    def describe(self, session):
        return {"in_flight": [{"start": a, "end": b} for a, b in session.raw["in_flight"]]}

    def complete(self, session):
        path, sha256 = session.extra["path"], session.extra["sha256"]
        before = self.api.file_info(path)
        once(lambda: self._commit(session.id, path, session.size, sha256, before),
             lambda: self._landed(path, session.size, sha256, before), self.deadline,
             "waiting for the commit of upload session %s to show" % session.id)
        self._verify(path, session.size, sha256)

    def remove(self, session, purge):
        return {"removed": self.api.delete_session(session.id)}

    # -- image_upload state=absent -----------------------------------------------------------------
    def present(self, dest):
        found = [dest["path"]] if self.api.file_info(dest["path"]) is not None else []
        return found + ["upload session %s" % s["id"] for s in self.api.sessions(dest["path"])]

    def remove_content(self, dest, present):
        for s in self.api.sessions(dest["path"]):
            self.api.delete_session(s["id"])
        self.api.delete_file(dest["path"])
