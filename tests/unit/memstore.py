"""An in-memory image store and a protocol for it: the engine's unit tests run every step against it.

The store keeps files (bytes + version) and sessions (received bytes per file, state); the protocol
implements only the hooks of ``_protocol.Protocol``. Faults are switches on the store: lose a session
after N sends, answer a unit with a conflict or a retryable failure, never accept a unit.
"""

import hashlib
import itertools

from ansible_collections.imagestore.upload.plugins.module_utils._errors import (
    Conflict, ImageStoreError, SessionLost, VerificationError,
)
from ansible_collections.imagestore.upload.plugins.module_utils._protocol import (
    ACTIVE, COMPLETE, DONE, FILE, KEPT, RANGE, REMOVED, SLICE, Protocol, Session, Stored,
)
from ansible_collections.imagestore.upload.plugins.module_utils._ranges import complement, normalize


def data(n, seed=0):
    """``n`` reproducible bytes (another ``seed``: other bytes)."""
    block = hashlib.sha512(str(seed).encode()).digest()
    return (block * (n // len(block) + 1))[:n]


def write(path, content):
    with open(str(path), "wb") as fh:
        fh.write(content)
    return str(path)


def read_body(body):
    """The bytes of a request body as a connection would send them (pieces: bytes, or Segments to iterate)."""
    out = []
    for piece in body:
        out.extend([piece] if isinstance(piece, bytes) else list(piece))
    body.close()
    return b"".join(out)


class FakeClock:
    def __init__(self):
        self.now = 1000.0
        self.slept = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


class MemStore:
    def __init__(self):
        self.files = {}         # name -> (bytes, version)
        self.sessions = {}      # id -> {"key", "names", "sizes", "got": {name: bytearray}, "ranges": {name: [..]}, "state"}
        self.ids = itertools.count(1)
        self.versions = itertools.count(1)
        self.sends = 0
        self.bytes_received = 0
        self.commits = 0
        self.puts = 0
        # faults
        self.lose_session_after_sends = None
        self.conflict_units = set()     # (name, start) answered with Conflict once each
        self.fail_units = {}            # (name, start) -> times to fail with a retryable error
        self.refuse_all = False         # every send answers a retryable failure (a store holding ranges forever)
        self.corrupt_on_commit = False
        self.advance_per_send = 0.0     # seconds the fake clock moves per send
        # a concurrent run opens the session after this run looked: find_session finds nothing, open_session joins it
        self.join_on_open = False
        self.abort_note = None          # a sentence abort() adds about what else it cleaned up
        self.completed_meanwhile = False  # a concurrent run stores the files after this run looked; find_session says DONE
        self.clock = None

    def stored_bytes(self, name):
        return self.files[name][0] if name in self.files else None


class MemProtocol(Protocol):
    """The fourth provider of the engine tests: every hook, nothing else."""

    name = "memstore"
    digests = ("sha256",)

    def __init__(self, ctx, store, unit=RANGE, scope="file", grid=None, whole_file_max=0, empty_files="session", on_failure="keep"):
        super(MemProtocol, self).__init__(ctx)
        self.store = store
        self.unit = unit
        self.session_scope = scope
        self.multi_file = True
        self.grid = grid
        self.whole_file_max = whole_file_max
        self.empty_files = empty_files
        self.on_failure = on_failure
        self.aborted = []

    # -- image_upload
    def local_files(self, src, make_source):
        import os
        if os.path.isdir(src):
            names = sorted(os.listdir(src))
            return [self._file(n, make_source(os.path.join(src, n), n)) for n in names]
        return [self._file(os.path.basename(src), make_source(src, "src"))]

    @staticmethod
    def _file(name, source):
        from ansible_collections.imagestore.upload.plugins.module_utils._protocol import LocalFile
        return LocalFile(name, source)

    def destination(self, files):
        return {"prefix": self.params.get("path") or ""}

    def where(self, dest):
        return "memstore:%s" % dest["prefix"]

    def result(self, dest, session_id):
        return {"destination": {"prefix": dest["prefix"]}}

    def stored(self, dest, files):
        found = {}
        for f in files:
            if f.name in self.store.files:
                data, version = self.store.files[f.name]
                found[f.name] = Stored(f.name, len(data), {"sha256": hashlib.sha256(data).hexdigest()}, version=version)
        return found

    def resume_key(self, dest, files):
        return "|".join("%s:%d:%s" % (f.name, f.size, f.digests.get("sha256")) for f in files)

    def find_session(self, dest, key, files):
        if self.store.completed_meanwhile:
            for f in files:
                self.store.files[f.name] = (f.source.read(0, f.size - 1), next(self.store.versions))
            return Session(None, DONE)
        if self.store.join_on_open:
            return None
        for sid, s in self.store.sessions.items():
            if s["key"] == key and s["state"] == ACTIVE:  # noqa: E501  (an open session of this content)
                return self._session(sid, found=True)
        return None

    def _session(self, sid, found=False):
        s = self.store.sessions[sid]
        missing = []
        offset = 0
        for name in s["names"]:
            for a, b in complement(s["ranges"][name], s["sizes"][name]):
                missing.append((offset + a, offset + b))
            offset += s["sizes"][name]
        state = self._state(sid)
        return Session(sid, state, raw_state=state.upper(), size=sum(s["sizes"].values()), missing=missing,
                       found=found, grid=self.grid, destination={"names": list(s["names"])})

    def open_session(self, dest, key, files):
        if self.store.join_on_open:
            for sid, s in self.store.sessions.items():
                if s["key"] == key and s["state"] == ACTIVE:
                    session = self._session(sid, found=True)
                    session.owned = False
                    return session
        sid = "s%d" % next(self.store.ids)
        self.store.sessions[sid] = {"key": key, "names": [f.name for f in files], "sizes": dict((f.name, f.size) for f in files),
                                    "got": dict((f.name, bytearray(f.size)) for f in files),
                                    "ranges": dict((f.name, []) for f in files), "state": ACTIVE}
        return self._session(sid)

    def _live(self, session):
        s = self.store.sessions.get(session.id)
        if s is None or s["state"] != ACTIVE:
            raise SessionLost("session %s is gone" % session.id, reason="expired")
        return s

    def missing(self, session, files):
        s = self._live(session)
        return dict((f.name, complement(s["ranges"][f.name], f.size)) for f in files)

    def send(self, session, f, start, end):
        store = self.store
        if store.clock is not None and store.advance_per_send:
            store.clock.now += store.advance_per_send
        s = self._live(session)
        store.sends += 1
        if store.lose_session_after_sends is not None and store.sends > store.lose_session_after_sends:
            store.lose_session_after_sends = None
            del store.sessions[session.id]
            raise SessionLost("session %s expired" % session.id, reason="expired")
        if store.refuse_all:
            raise ImageStoreError("the store holds this range", retryable=True)
        if (f.name, start) in store.conflict_units:
            store.conflict_units.discard((f.name, start))
            raise Conflict("range moved")
        if store.fail_units.get((f.name, start)):
            store.fail_units[(f.name, start)] -= 1
            raise ImageStoreError("connection reset", retryable=True)
        if self.unit == SLICE:
            assert start % self.grid == 0 and (end + 1 == f.size or (end + 1) % self.grid == 0), (start, end)
        if self.unit == FILE:
            assert (start, end) == (0, f.size - 1)
        data = read_body(f.source.body(start, end)) if end >= start else b""      # as a request body is sent
        s["got"][f.name][start:end + 1] = data
        s["ranges"][f.name] = normalize(s["ranges"][f.name] + [(start, end)])
        store.bytes_received += len(data)
        return len(data)

    def put_whole(self, dest, f):
        self.store.puts += 1
        data = f.source.read(0, f.size - 1) if f.size else b""
        self.store.files[f.name] = (data, next(self.store.versions))
        return len(data)

    def commit(self, session, dest, files):
        s = self._live(session)
        for name in s["names"]:
            data = bytes(s["got"][name])
            if self.store.corrupt_on_commit:
                data = b"X" + data[1:]
            self.store.files[name] = (data, next(self.store.versions))
        s["state"] = DONE
        self.store.commits += 1

    def verify(self, session, dest, files):
        for f in files:
            data = self.store.files[f.name][0]
            if hashlib.sha256(data).hexdigest() != f.digests["sha256"]:
                raise VerificationError("verification failed for %s" % f.name)

    def abort(self, session, dest, reason, keep):
        self.aborted.append((session.id, keep, reason))
        if keep:
            return KEPT
        self.store.sessions.pop(session.id, None)
        return (REMOVED, self.store.abort_note) if self.store.abort_note else REMOVED

    # -- session modules
    selector_group = ("path",)

    def session_by_id(self, session_id):
        return [self._session(session_id)] if session_id in self.store.sessions else []

    def sessions_at(self):
        return [self._session(sid) for sid in sorted(self.store.sessions)]

    def complete(self, session):
        s = self.store.sessions[session.id]
        for name in s["names"]:
            self.store.files[name] = (bytes(s["got"][name]), next(self.store.versions))
        s["state"] = DONE

    def remove(self, session, purge):
        return {"removed": self.store.sessions.pop(session.id, None) is not None}

    def _state(self, sid):
        s = self.store.sessions[sid]
        complete = all(not complement(s["ranges"][n], s["sizes"][n]) for n in s["names"])
        return COMPLETE if complete and s["state"] == ACTIVE else s["state"]

    # -- state=absent
    def present(self, dest):
        return sorted(self.store.files)

    def remove_content(self, dest, present):
        for name in present:
            self.store.files.pop(name, None)
