# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The interface a provider implements (private): small hooks, capability flags, the shared vocabulary.

The engine (``_engine.py``) owns every step of an upload and every edge case; a protocol only speaks
its API. docs/architecture.md explains the steps and how to add a provider.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.imagestore.upload.plugins.module_utils._ranges import normalize, total

# -- units of transfer ----------------------------------------------------------------------------
RANGE = "range"     # byte ranges of any size, any order, in parallel (Service Fabric)
SLICE = "slice"     # slices of a fixed grid the store fixes (ZStack); ``Session.grid`` says its size
FILE = "file"       # whole files, re-sent whole (vSphere); files of one upload go in parallel

# -- session states (``upload_session_info``'s ``state``; the server's own word is ``raw_state``) ------
ACTIVE = "active"           # takes bytes
SUSPENDED = "suspended"     # paused by the store; resumable (ZStack: a Suspended long job)
COMPLETE = "complete"       # every byte received, not yet committed
DONE = "done"               # committed: the content is usable at its destination
FAILED = "failed"           # ended in error; what it received is not usable
CANCELED = "canceled"
EXPIRED = "expired"
STATES = (ACTIVE, SUSPENDED, COMPLETE, DONE, FAILED, CANCELED, EXPIRED)
OPEN_STATES = (ACTIVE, SUSPENDED, COMPLETE)

# -- cleanup outcomes (``session_cleanup`` of a failed run) ----------------------------------------
KEPT = "kept"               # left for a re-run to resume
REMOVED = "removed"         # canceled/deleted with what it received
LEFT = "left"               # another run's session, joined by this one: left to it
INCOMPLETE = "incomplete"   # cleaning up failed; the session may still exist


class LocalFile:
    """One file of an upload: its name at the destination, its Source, and the protocol's notes on it."""

    def __init__(self, name, source, role=None, **extra):
        self.name = name
        self.source = source
        self.path = source.path
        self.size = source.size
        self.role = role            # protocol-specific (e.g. vSphere: "ova", whose checksum is not declared)
        self.extra = extra
        self.digests = {}           # identity digests, filled by the engine before anything is compared

    def __repr__(self):
        return "LocalFile(%r, %d bytes)" % (self.name, self.size)


class Stored:
    """What the store holds at one file's destination (None in ``stored()``'s answer: nothing)."""

    def __init__(self, name, size, digests=None, version=None, raw=None, **extra):
        self.name = name
        self.size = size
        self.digests = dict(digests or {})   # algorithm -> hex, as the store reports them (lower case)
        self.version = version                # what changes whenever the stored file is replaced (if the store says)
        self.raw = raw if raw is not None else {}
        self.extra = extra


class Verdict:
    """Does the store hold this file's bytes? ``compared`` says how that was decided (sha256, md5, sha1, size, record)."""

    def __init__(self, same, compared, note=None):
        self.same = bool(same)
        self.compared = compared
        self.note = note


def compare(stored, local, algorithms):
    """The usual verdict: same size, and the first digest both sides know is equal; the size alone when the store
    reports none (``compared: size``, and the note says so)."""
    if stored is None:
        return Verdict(False, "absent")
    if stored.size != local.size:
        return Verdict(False, "size")
    for algorithm in algorithms:
        mine, theirs = local.digests.get(algorithm), stored.digests.get(algorithm)
        if mine and theirs:
            return Verdict(mine == theirs, algorithm)
    return Verdict(True, "size", "the store reports no checksum for %s, so only its size was compared" % stored.name)


class Session:
    """An upload session as the engine sees it; ``raw`` is the server's own model."""

    def __init__(self, id, state, raw_state=None, size=None, missing=None, raw=None, owned=True, found=False,
                 grid=None, expires=None, destination=None, **extra):
        self.id = id
        self.state = state
        self.raw_state = raw_state
        self.size = size
        self.missing = normalize(missing or [])
        self.raw = raw if raw is not None else {}
        self.owned = owned          # False: a concurrent run's session that this run joined (never ended by this run)
        self.found = found          # True: it existed before this run (a resume)
        self.grid = grid            # the slice size, for SLICE protocols
        self.expires = expires
        self.destination = destination or {}
        self.extra = extra

    def __repr__(self):
        return "Session(%r, %s)" % (self.id, self.state)


def session_record(provider, session):
    """The normalised form of one session (``upload_session_info``'s ``sessions`` items)."""
    size = session.size
    received = max(0, size - total(session.missing)) if size is not None else None
    if session.state == DONE:
        progress = 100.0
    elif size:
        progress = round(100.0 * received / size, 2)
    else:
        progress = 0.0
    record = {
        "id": session.id,
        "provider": provider,
        "state": session.state,
        "raw_state": session.raw_state,
        "size": size,
        "bytes_received": received,
        "missing_ranges": [{"start": s, "end": e} for s, e in session.missing],
        "progress": progress,
        "expires": session.expires,
        "destination": session.destination,
        "raw": session.raw,
    }
    for key, value in session.extra.items():
        record.setdefault(key, value)
    return record


class Context:
    """What a protocol gets from the engine: options, the HTTP client, the deadline, check mode, warnings."""

    def __init__(self, params, http, deadline, check_mode=False, warn=None, operation=None):
        self.params = params
        self.http = http
        self.deadline = deadline
        self.check_mode = check_mode
        #: which module runs: "upload" (image_upload), "sessions" (info), "commit" or "absent" (None: not said)
        self.operation = operation
        self.warnings = []
        self._warn = warn

    def warn(self, message):
        self.warnings.append(message)
        if self._warn is not None:
            self._warn(message)


class Protocol:
    """Base class of the providers. Subclasses set the flags and implement the hooks they need.

    Hooks of ``image_upload`` (in the order the engine calls them):
      local_files(src) -> [LocalFile];  destination(files) -> dest;  stored(dest, files) -> {name: Stored};
      holds(dest, stored, file) -> Verdict;  resume_key(dest, files) -> str;
      find_session(dest, key, files) -> Session | None;  open_session(dest, key, files) -> Session (either may answer a
        Session in state DONE: a concurrent run completed this upload after this run looked; nothing is sent, verify runs);
      missing(session, files) -> {name: [ranges]};  send(session, file, start, end) -> bytes accepted;
      put_whole(dest, file) (small and empty files, when ``whole_file_max``/``empty_files`` say so);
      commit(session, dest, files);  wait(session, dest, files);  verify(session, dest, files);
      record(session, dest, files);  abort(session, dest, reason, keep) -> cleanup outcome (or (outcome, a sentence on
        what else the cleanup did, appended to the message));
      finish(dest, files, changed) -> extra result keys;  result(dest, session) -> provider result keys;
      diff_state(dest, stored, files) -> the diff's "before"/"after" description.
    Hooks of the session modules: select() -> [Session];  describe(session) -> extra record keys;
      complete(session) (commit a complete session);  remove(session, purge) -> cleanup outcome.
    ``remove_content(dest, files)`` serves ``image_upload state=absent``.
    """

    name = None
    #: unit of transfer: RANGE, SLICE or FILE
    unit = RANGE
    #: "file": a session per file (Service Fabric); "upload": one session for every file of the upload (vSphere)
    session_scope = "file"
    #: src may be several files (a package folder, an OVF and the files it references)
    multi_file = False
    #: empty files: "session" (like any other), "whole" (put_whole), "refuse"
    empty_files = "session"
    #: files up to this many bytes go by put_whole, no session (0: never)
    whole_file_max = 0
    #: identity digests needed before the first byte (resume key, comparison, declaring)
    digests = ("sha256",)
    #: a session kept after a retryable failure is resumed by a re-run
    resumable = True
    #: what a retryable failure leaves by default: "keep" the session for a re-run, or "abort" it
    on_failure = "keep"
    #: this provider's options of image_upload (argument spec entries), and the ones it requires
    options = {}
    required = ()
    #: what image_upload state=absent requires (None: the same as ``required``)
    required_absent = None
    #: options of the session modules that name a session's destination (argument spec entries)
    selectors = {}
    #: options of upload_session_absent only (argument spec entries)
    absent_options = {}
    #: (path, threshold): with a client certificate, every connection carries ``GET path`` before its first body larger
    #: than threshold bytes (gateways that renegotiate TLS for the certificate; see _http.warm_adapter)
    warm_up = None

    def __init__(self, ctx):
        self.ctx = ctx
        self.params = ctx.params
        self.http = ctx.http
        self.deadline = ctx.deadline

    # -- plumbing of the HTTP client ------------------------------------------------------------
    @staticmethod
    def parse_error(response):
        """(code, message) from an error answer of this API."""
        return None, (response.text or "")[:300]

    @staticmethod
    def classify(response):
        """OK / RETRY / ERROR for an answer the default rule would get wrong, else None."""
        return None

    @staticmethod
    def store_full(status, code, message):
        """Does this error answer say the store has no room left? (raised as StoreFull: not repeated in this run)"""
        return False

    def close(self):
        """End what the run opened (a login)."""

    def warn(self, message):
        self.ctx.warn(message)

    @property
    def check_mode(self):
        return self.ctx.check_mode

    # -- image_upload hooks with a usual answer -----------------------------------------------------
    def local_files(self, src, make_source):
        """The files of ``src``; ``make_source(path, option)`` checks and opens one. Default: one file, its base name."""
        return [LocalFile(os.path.basename(src), make_source(src, "src"))]

    def holds(self, dest, stored, f):
        return compare(stored, f, self.digests)

    def where(self, dest):
        """A few words naming the destination in messages (e.g. "images/disk.vhd", "item 'x' of library 'y'")."""
        return str(dest)

    def result(self, dest, session_id):
        """Provider-specific result keys (at least ``destination``); called before and after the transfer."""
        return {"destination": {}}

    def diff_state(self, dest, stored, files, after=False, todo=()):
        """What the destination holds, for the diff: before the run, or (``after``) once ``todo`` is uploaded."""
        def state(f):
            held = stored.get(f.name)
            if after and f in todo:
                return {"size": f.size, "sha256": f.digests.get("sha256")}
            return {"size": held.size if held else None}
        if len(files) == 1:
            return dict({"name": files[0].name}, **state(files[0]))
        return {"files": dict((f.name, state(f)) for f in files)}

    def keeps_on_failure(self, exc):
        """Whether a retryable failure keeps the session for a re-run (the default: ``on_failure``)."""
        return self.on_failure == "keep"

    def put_whole(self, dest, f):
        raise NotImplementedError("%s stores no file without a session" % self.name)

    def landed(self, session, dest, files):
        """After a commit whose outcome is uncertain (its answer lost, a 504): did it take effect? (default: cannot tell,
        so it is asked again; the engine never asks again once this says yes)"""
        return False

    def wait(self, session, dest, files):
        """Wait until the committed content is usable (default: it is at once)."""

    def record(self, session, dest, files):
        """Keep a record of what was uploaded where the store keeps no digest (default: nothing to do)."""

    def finish(self, dest, files, changed):
        return {}

    def describe(self, session):
        """Provider-specific keys of a session's normalised record."""
        return {}

    def remove_content(self, dest, present):
        """Remove what ``present()`` found (with its records and sessions)."""
        raise NotImplementedError("%s cannot remove stored content" % self.name)

    # -- session modules (see _sessions.py) ---------------------------------------------------------
    #: the selector options that, together, name a session's destination (e.g. ("library", "item"))
    selector_group = ()

    def session_by_id(self, session_id):
        """[Session] with that id, or [] (check the id's form here, with a message naming session_id)."""
        raise NotImplementedError

    def sessions_at(self):
        """Sessions of the destination named by the selector options (the engine checked they are given)."""
        raise NotImplementedError

    def complete(self, session):
        """Commit a session that holds every byte, wait until usable, verify."""
        raise NotImplementedError

    def removable(self, session, purge):
        """Whether upload_session_absent has something to remove for this session."""
        return True

    def remove(self, session, purge):
        """Remove the session (and with ``purge`` what it made); {"removed": bool, other keys: lists merged into the result}."""
        raise NotImplementedError

    # -- image_upload state=absent -------------------------------------------------------------------
    def present(self, dest):
        """What the store holds at the destination, as a list of short descriptions ([] when nothing)."""
        raise NotImplementedError("%s cannot remove stored content" % self.name)
