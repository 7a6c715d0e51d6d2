# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""vSphere Content Library on the engine (private): the hooks of ``image_upload``.

The unit of transfer is the whole file (no source documents ranged PUTs): each file of the upload is
added to the item's update session (size, checksum) and sent in one streamed PUT; the files of an OVF
go out in parallel through the engine's transfer loop. One update session serves the whole upload.

* identity: SHA-1 (what file add declares; the server verifies it) and SHA-256; a ``checksum`` the
  user gives is declared instead (``checksum_info`` SHA256, ...), so nothing is read before the first byte;
* what is stored: the item's files; where the server reports no checksum (vcsim) the size decides and
  the result says so; an OVA counts as stored when every member is in the item with its size;
* resume: the item's ACTIVE update session; a file it holds READY counts only with this file's checksum
  (or, where none is reported, size); a session holding files of another upload is not used;
* races: a create refused as ``resource_busy`` joins the other run's session (never ended by this run); a
  file another client is transferring is waited for, never replaced; a DONE session deleted by a racing
  run counts when the item holds the files;
* cleanup: fail, cancel, delete (unless ``keep_session_on_failure`` and the failure is retryable), and an
  item this run created is deleted with it unless it holds files.

The session modules and ``state=absent`` are in ``_vsphere_manage.py``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import threading

from ansible_collections.imagestore.upload.plugins.module_utils._errors import (
    ApiError, Conflict, DeadlineExceeded, ImageStoreError, SessionLost, SourceChangedError, TransportError, VerificationError,
)
from ansible_collections.imagestore.upload.plugins.module_utils._hashing import ThreadedHasher
from ansible_collections.imagestore.upload.plugins.module_utils._protocol import (
    ACTIVE, DONE, FILE, KEPT, REMOVED, Protocol, Session, Stored, Verdict, compare,
)
from ansible_collections.imagestore.upload.plugins.module_utils._source import parse_checksum
from ansible_collections.imagestore.upload.plugins.module_utils._vsphere_client import ContentLibraryClient, parse_error
from ansible_collections.imagestore.upload.plugins.module_utils._vsphere_formats import (
    ALGORITHMS, OVA, as_int, check_file_name, check_name, declared_checksum, item_type, local_files, looks_like_id,
    ova_members, ova_unpacked, reported_digests, same_content,
)
from ansible_collections.imagestore.upload.plugins.module_utils._vsphere_manage import VSphereManage
from ansible_collections.imagestore.upload.plugins.module_utils._vsphere_sessions import (
    NOT_ALLOWED, KeepAlive, ProgressMeter, complete, discard, ended, open_or_join, sessions_of_item, settle, validation_error,
    wait_done,
)

STR = dict(type="str")
API_STYLE = dict(type="str", default="auto", choices=["auto", "api", "rest"])
CONFLICT_WAIT = 0.5


class Destination:
    """Library and item of one run, as found (the item is created by ``open_session`` when missing)."""

    def __init__(self, library, library_id, item, item_id, file_name=None, kind="file"):
        self.library = library
        self.library_id = library_id
        self.item = item
        self.item_id = item_id
        self.file_name = file_name
        self.kind = kind
        self.item_created = False
        self.item_dropped = False       # the item this run created was deleted by a cleanup (a restart creates it again)


class VSphereBase(Protocol):
    """What every vSphere operation shares: options, the client, library and item lookups, cleanup."""

    name = "vsphere"
    options = {"library": STR, "item": STR, "file_name": STR, "keep_session_on_failure": dict(type="bool", default=False),
               "api_style": API_STYLE}
    required = ("library", "item")
    selectors = {"library": STR, "item": STR, "api_style": API_STYLE}
    selector_group = ("library", "item")
    parse_error = staticmethod(parse_error)

    @staticmethod
    def store_full(status, code, message):
        """com.vmware.vapi.std.errors.unable_to_allocate_resource: the datastore behind the library has no room."""
        return code == "unable_to_allocate_resource"

    def __init__(self, ctx):
        super(VSphereBase, self).__init__(ctx)
        self.api = ContentLibraryClient(self.http, self.params.get("username"), self.params.get("password"),
                                        self.params.get("api_style") or "auto")

    def close(self):
        self.api.logout()

    def where(self, dest):
        return "item %r of library %r" % (dest.item, dest.library)

    def library_id(self, ref):
        """The id of the library named ``ref`` (or whose id is ``ref``)."""
        ids = self.api.library_find(ref)
        if len(ids) > 1:
            raise ImageStoreError("library %r is ambiguous: %d libraries have that name; give the id of one (%s)"
                                  % (ref, len(ids), ", ".join(sorted(ids))))
        if ids:
            return ids[0]
        if looks_like_id(ref) and self.api.library_get(ref) is not None:
            return ref
        raise ImageStoreError("library %r not found on %s: give the name or id of an existing content library" % (ref, self.http.endpoint))

    def item_id(self, library_id, name):
        """The id of the item ``name`` in the library, or None (a case-insensitive find may match 'Disk' and 'disk')."""
        ids = self.api.item_find(library_id, name)
        if len(ids) > 1:
            exact = [i for i in ids if (self.api.item_get(i) or {}).get("name") == name]
            ids = exact or ids[:1]
        return ids[0] if ids else None

    def destination(self, files):
        library = check_name(self.params.get("library"), "library")
        item = check_name(self.params.get("item"), "item")
        library_id = self.library_id(library)
        return Destination(library, library_id, item, self.item_id(library_id, item),
                           files[0].name if files else None, item_type(files[0].path) if files else "file")

    def item_files(self, item_id):
        """name -> the item's file entry (the last one listed, where vcsim lists a name once per PUT)."""
        return dict((f.get("name"), f) for f in self.api.item_files(item_id))

    def result(self, dest, session_id):
        return {"library_id": dest.library_id, "item_id": dest.item_id, "item_created": dest.item_created,
                "api_style": self.api.style,
                "destination": {"library_id": dest.library_id, "item_id": dest.item_id, "file_name": dest.file_name}}

    def drop_created_item(self, dest):
        """Delete the item this run created for an upload that failed, unless it holds files now (a run racing for the
        item may have completed its upload into it meanwhile); a sentence saying what became of it."""
        try:
            if self.item_files(dest.item_id):
                return "the library item %s created by this run is kept: it holds files now (another run uploaded them)" % dest.item_id
            self.api.item_delete(dest.item_id)
            dest.item_dropped = True
        except ImageStoreError as exc:
            return "the library item %s created by this run is left (deleting it failed: %s)" % (dest.item_id, exc.message)
        return "the library item %s created by this run was deleted" % dest.item_id


class VSphere(VSphereManage, VSphereBase):
    unit = FILE
    session_scope = "upload"
    multi_file = True
    digests = ("sha1", "sha256")
    on_failure = "abort"

    def __init__(self, ctx):
        super(VSphere, self).__init__(ctx)
        if self.params.get("checksum") and self.params.get("state", "present") == "present":
            algorithm = parse_checksum(self.params["checksum"])[0]
            if algorithm.upper() in ALGORITHMS:
                self.digests = (algorithm,)     # declared as checksum_info: no pass over the file before the first byte
        self._landed = set()            # (session id, file name) whose PUT the server accepted in this run
        self._keep_alive = None
        self._read = [0]                # bytes read for sending in this run (client_progress)
        self._lock = threading.Lock()

    def close(self):
        self._stop_keep_alive()
        super(VSphere, self).close()

    # -- local files and what the item holds ------------------------------------------------------
    def local_files(self, src, make_source):
        return local_files(src, self.params.get("file_name") and check_file_name(self.params["file_name"]), make_source)

    def stored(self, dest, files):
        if dest.item_id is None:
            return {}
        entries = self.item_files(dest.item_id)
        found = {}
        for f in files:
            if f.role == OVA:
                if ova_unpacked(entries, f.path):
                    found[f.name] = Stored(f.name, f.size, raw={"members": [m[0] for m in ova_members(f.path)]}, unpacked=True)
                continue
            entry = entries.get(f.name)
            if entry is not None:
                found[f.name] = Stored(f.name, as_int(entry.get("size")), reported_digests(entry), version=entry.get("version"),
                                       raw=entry)
        return found

    def digest(self, f, algorithm):
        """``f``'s digest in ``algorithm`` (declared, known, or computed now: a server may report another algorithm)."""
        if algorithm not in f.digests:
            f.digests[algorithm] = f.source.declared.get(algorithm) or f.source.digests((algorithm,))[algorithm]
        return f.digests[algorithm]

    def holds(self, dest, stored, f):
        if stored.extra.get("unpacked"):
            return Verdict(True, "size", "the server unpacks %s: every member of the archive is in the item with its size" % f.name)
        if stored.size == f.size:
            for algorithm in stored.digests:
                self.digest(f, algorithm)
        return compare(stored, f, tuple(stored.digests) + tuple(self.digests))

    def diff_state(self, dest, stored, files, after=False, todo=()):
        def state(f):
            if after and f in todo:
                checksum = declared_checksum(f) if f.role != OVA and (f.digests or f.source.declared) else None
                return {"size": f.size, "checksum": checksum["checksum"] if checksum else None}
            held = stored.get(f.name)
            return {"size": held.size if held else None, "checksum": next(iter(held.digests.values()), None) if held else None}
        if len(files) == 1:
            return dict({"item": dest.item, "file_name": files[0].name}, **state(files[0]))
        return {"item": dest.item, "files": dict((f.name, state(f)) for f in files)}

    def resume_key(self, dest, files):
        return "|".join("%s:%d:%s" % (f.name, f.size, (declared_checksum(f) or {}).get("checksum", "")) for f in files)

    # -- the session --------------------------------------------------------------------------------
    def _session(self, model, files, owned=True, found=False):
        return Session(model["id"], ACTIVE, raw_state=model.get("state"), size=sum(f.size for f in files), raw=model,
                       owned=owned, found=found, expires=model.get("expiration_time"),
                       destination={"library_item_id": model.get("library_item_id")})

    def find_session(self, dest, key, files):
        """The item's ACTIVE update session (looked up now, after the digests: before the item's files, so an upload that
        completes in between shows in the files); a DONE one when a concurrent run completed these files meanwhile.
        A session holding files of another upload that are not received is not used."""
        if dest.item_id is None:
            return None
        models = sessions_of_item(self.api, dest.item_id)
        model = next((m for m in models if m.get("state") == "ACTIVE"), None)
        if model is None:
            if self.params.get("force") or not self._holds_all(dest, files):
                return None
            done = next((m for m in models if m.get("state") == "DONE"), None)
            return Session(done["id"] if done else None, DONE, raw_state="DONE", raw=done or {})
        ours = set(f.name for f in files)
        foreign = sorted(e.get("name") for e in self.api.file_list(model["id"]) if e.get("name") not in ours and e.get("status") != "READY")
        if foreign:
            raise ImageStoreError("the item's ACTIVE update session %s holds files of another upload that are not received (%s): "
                                  "wait for that upload, or remove the session with imagestore.upload.upload_session_absent"
                                  % (model["id"], ", ".join(foreign)), details={"session_id": model["id"]})
        return self._session(model, files, found=True)

    def open_session(self, dest, key, files):
        """The item (created when missing) and a new update session, or the one a concurrent run opened meanwhile (joined)."""
        if dest.item_id is None or dest.item_dropped:
            self._create_item(dest)
        try:
            model, joined = open_or_join(self.api, dest.item_id)
        except ImageStoreError as exc:
            if not dest.item_created:
                raise
            raise exc.with_message("%s; %s" % (exc.message, self.drop_created_item(dest)))
        if not joined and not self.params.get("force") and self._holds_all(dest, files):
            # a racing run completed the item after this run looked: the new session is not needed
            discard(self.api, model["id"], "not needed: the item already holds the files")
            return Session(None, DONE, raw_state="DONE")
        return self._session(model, files, owned=not joined, found=joined)

    def _create_item(self, dest):
        dest.item_dropped = False
        try:
            dest.item_id = self.api.item_create(dest.library_id, dest.item, dest.kind)
            dest.item_created = True
        except ApiError as exc:
            if exc.code != "already_exists":
                raise
            dest.item_id, dest.item_created = self.item_id(dest.library_id, dest.item), False   # a concurrent run made it
            if dest.item_id is None:
                raise

    def _holds_all(self, dest, files):
        """Does the item hold every file now (an OVA: every member of the archive, with its size)?"""
        return self._item_holds(dest.item_id, files)

    def _item_holds(self, item_id, files):
        entries = self.item_files(item_id)
        return all(ova_unpacked(entries, f.path) if f.role == OVA else self._same(entries.get(f.name), f) for f in files)

    def _completed_meanwhile(self, session, why, files):
        """Did a racing run complete this session: DONE, or DONE and deleted (its owner deletes it) with the item holding
        the files?"""
        return why == "DONE" or (why == "deleted" and self._item_holds(session.destination.get("library_item_id"), files))

    def _live(self, session, files):
        """The session's model while it takes bytes; SessionLost once it ended under the upload (None: a racing run
        completed it)."""
        why = ended(self.api, session.id)
        if why is not None and self._completed_meanwhile(session, why, files):
            return None
        if why is not None:
            raise SessionLost("update session %s is %s" % (session.id, why), reason=why)
        return True

    def missing(self, session, files):
        """The files the session does not hold READY with this content (each is missing whole)."""
        if self._live(session, files) is None:
            return {}
        entries = dict((e.get("name"), e) for e in self.api.file_list(session.id))
        todo = {}
        for f in files:
            entry = entries.get(f.name)
            if entry is not None and entry.get("status") == "READY" and self._same(entry, f):
                continue
            if (session.id, f.name) in self._landed and "bytes_transferred" not in (entry or {}):
                continue        # vcsim: the file's status never moves, the accepted PUT is all there is to know
            todo[f.name] = [(0, f.size - 1)]
        return todo

    def _same(self, entry, f):
        return same_content(entry, f, lambda algorithm: self.digest(f, algorithm))

    # -- sending one file --------------------------------------------------------------------------
    def send(self, session, f, start, end):
        """File add (size, checksum) and one streamed PUT of the whole file; 0 when the session already holds it."""
        self._start_keep_alive(session)
        info = settle(self.api, session.id, f.name, self.deadline)
        if info is not None and info.get("status") == "READY" and self._same(info, f):
            return 0            # another transfer (a racing run, or an earlier attempt) delivered it
        try:
            info = self.api.file_add(session.id, f.name, f.size, declared_checksum(f))
        except ApiError as exc:
            raise self._refused(session, f, exc)
        sent_sha1, meter = [], ProgressMeter(self._read, self._lock)
        check_sha1 = "sha1" in f.source.from_cache and (declared_checksum(f) or {}).get("algorithm") == "SHA1"

        def body():
            meter.restart()
            for stale in sent_sha1:
                stale.close()
            # a SHA-1 taken from the digest cache is checked against the bytes sent (hashed beside the socket writes)
            sent_sha1[:] = [ThreadedHasher(hashlib.sha1())] if check_sha1 else []
            return f.source.body(0, f.size - 1, hashers=tuple(sent_sha1), progress=meter.add) if f.size else b""
        try:
            self.api.put(info["upload_endpoint"]["uri"], f.name, body, f.size)
        except ImageStoreError as exc:
            self._check_sent(f, sent_sha1, meter, exc)
            refusal = self._refused(session, f, exc) if isinstance(exc, ApiError) else exc
            if refusal is not exc:
                raise refusal
            if not isinstance(exc, DeadlineExceeded) and (exc.retryable or isinstance(exc, TransportError)):
                landed = self.api.file_get(session.id, f.name)
                if landed is not None and landed.get("status") == "READY" and self._same(landed, f):
                    self._landed.add((session.id, f.name))
                    return f.size           # the answer was lost, the bytes landed
            raise
        self._check_sent(f, sent_sha1, meter)
        self._landed.add((session.id, f.name))
        return f.size

    def _refused(self, session, f, exc):
        """What a refusal means: the session ended under the upload (SessionLost), or the file is being sent by someone
        else or was added again (Conflict: the transfer loop asks the session again); other errors stay as they are."""
        if exc.code not in ("resource_busy", NOT_ALLOWED) and exc.status != 404:
            return exc
        why = ended(self.api, session.id)
        if why is not None and not self._completed_meanwhile(session, why, [f]):
            return SessionLost("update session %s is %s" % (session.id, why), reason=why)
        return Conflict("%s (another transfer of %s is going on, or it was added again)" % (exc.message, f.name),
                        status=exc.status, code=exc.code, wait=CONFLICT_WAIT)

    def _check_sent(self, f, sent_sha1, meter, exc=None):
        """When the bytes sent were not those whose SHA-1 was declared (a stale cache entry): say so, fix the cache."""
        if f.size == 0 or meter.count != f.size or not sent_sha1:
            return
        actual = sent_sha1[0].hexdigest()
        if actual == f.digests.get("sha1"):
            return
        if f.source.cache is not None:
            f.source.cache.put(f.path, f.source.identity, {"sha1": actual})
        text = ("The SHA-1 of the bytes sent was %s, not the %s computed before: %s changed after its checksum was computed "
                "(in place, keeping its size and modification time); run again to upload its current content"
                % (actual, f.digests.get("sha1"), f.path))
        raise SourceChangedError("%s. %s" % (exc.message, text) if exc is not None else text,
                                 status=getattr(exc, "status", None), code=getattr(exc, "code", None))

    def _start_keep_alive(self, session):
        with self._lock:
            if self._keep_alive is not None and self._keep_alive.session_id == session.id:
                return
            previous, self._keep_alive = self._keep_alive, None
        if previous is not None:
            previous.stop()
        total = max(1, session.size or 0)

        def progress():
            return 100.0 * self._read[0] / total
        keep_alive = KeepAlive(self.api, session.id, KeepAlive.interval_for(session.raw), progress, self.deadline,
                               start_progress=as_int(session.raw.get("client_progress")) or 0)
        with self._lock:
            if self._keep_alive is None:
                self._keep_alive = keep_alive.start()
                return
        keep_alive.stop()

    def _stop_keep_alive(self):
        with self._lock:
            keep_alive, self._keep_alive = self._keep_alive, None
        if keep_alive is not None:
            keep_alive.stop()
            if keep_alive.errors:
                self.warn("keeping update session %s alive failed %d time(s); last error: %s" % (
                    keep_alive.session_id, len(keep_alive.errors), keep_alive.errors[-1]))

    # -- commit, wait, verify, cleanup ----------------------------------------------------------------
    def commit(self, session, dest, files):
        """Validate, report 100 %, complete; a session a racing run completed (DONE, or DONE and deleted while the item
        holds the files) counts."""
        self._stop_keep_alive()
        try:
            validation = self.api.file_validate(session.id)
            if validation["has_errors"]:
                raise self._not_completable(session, files, validation)
            try:
                self.api.session_keep_alive(session.id, 100)
            except ApiError as exc:
                if exc.status != 400 or exc.code == NOT_ALLOWED:      # client_progress is advisory
                    raise
            complete(self.api, session.id)
        except ApiError as exc:
            if exc.code != NOT_ALLOWED and exc.status != 404:
                raise
            why = ended(self.api, session.id)
            if why == "DONE" or (why == "deleted" and self._holds_all(dest, files)):
                session.extra["completed_by"] = "another run"
                return
            if why is not None:
                raise SessionLost("update session %s is %s" % (session.id, why), reason=why)
            raise

    def _not_completable(self, session, files, validation):
        held = dict((e.get("name"), e) for e in self.api.file_list(session.id))
        for f in files:
            entry = held.get(f.name) or {}
            if entry.get("status") == "READY" and not self._same(entry, f):
                return ImageStoreError("update session %s cannot be completed: another client replaced %s in it with other content "
                                       "(%s bytes, checksum %s); run again once that upload is over" % (
                                           session.id, f.name, entry.get("size"),
                                           next(iter(reported_digests(entry).values()), "not reported")))
        ours = set(f.name for f in files)
        racing = [n for n in validation["missing_files"] if n in ours]
        return validation_error(session.id, validation, retryable=bool(racing))

    def wait(self, session, dest, files):
        wait_done(self.api, session.id, self.deadline, lambda: self._holds_all(dest, files))

    def verify(self, session, dest, files):
        """The item holds each file with its size and, where the server reports one this run can check, its checksum."""
        entries = self.item_files(dest.item_id)
        for f in files:
            if f.role == OVA:
                continue            # unpacked by the server: what it keeps is the archive's members
            entry = entries.get(f.name)
            reported = reported_digests(entry)
            known = dict((a, v) for a, v in reported.items() if a in f.digests or a in f.source.declared)
            if entry is None or as_int(entry.get("size")) != f.size or \
                    any(v != (f.digests.get(a) or f.source.declared.get(a)) for a, v in known.items()):
                mine = declared_checksum(f) or {}
                raise VerificationError("verification failed: after the update session item %s holds %s for %s, expected %d bytes "
                                        "with %s %s" % (dest.item_id, "nothing" if entry is None else "%s bytes (checksum %s)" % (
                                            entry.get("size"), next(iter(reported.values()), "not reported")),
                                            f.name, f.size, mine.get("algorithm", "checksum"), mine.get("checksum", "not declared")))

    def record(self, session, dest, files):
        """Delete the DONE session (the server would drop it later anyway; a failure only warns)."""
        try:
            self.api.session_delete(session.id)
        except ImageStoreError as exc:
            self.warn("the upload is complete, but deleting its DONE update session %s failed: %s" % (session.id, exc.message))

    def keeps_on_failure(self, exc):
        return bool(self.params.get("keep_session_on_failure"))

    def abort(self, session, dest, reason, keep):
        """Keep the session ACTIVE for a re-run, or fail, cancel and delete it (and an item this run created, if empty)."""
        self._stop_keep_alive()
        if keep:
            return KEPT
        discard(self.api, session.id, reason)
        if dest.item_created:
            return REMOVED, self.drop_created_item(dest)
        return REMOVED
