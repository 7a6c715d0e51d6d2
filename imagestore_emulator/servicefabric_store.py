"""Service Fabric Image Store state: stored files with their versions, upload sessions, counters.

State under ``data_dir`` (it survives a restart):

* ``content/<path>``           the image store itself, one file per store-relative path (``/`` separated)
* ``content.json``             ``{"next_version": n, "files": {path: version}}`` (FileVersion.VersionNumber): the
                               version index as it was at the last compaction
* ``content.journal``          what changed in the index since: one JSON line per stored file (``{"set": path,
                               "v": version}``) or deleted path (``{"del": path}``, the folder below it too),
                               appended before the change is made, replayed and compacted into ``content.json``
                               at start and once it has as many lines as the index has files (so a PUT costs
                               O(1), not a rewrite of the whole index; a SIGKILL loses nothing that was answered)
* ``sessions/<dir>/``          one directory per session incarnation: ``session.json`` (id, path, size,
                               received ranges, times, committed) and ``data``, the file every chunk is
                               written into at its offset, so a commit is a rename
* ``tmp/``                     whole-file uploads being received (cleared on start)

Every replacement of a stored file (commit or whole-file PUT) takes the next ``VersionNumber`` of the
store and a ``ModifiedDate`` later than the one it replaces.
"""

import json
import os
import shutil
import threading
import time
import uuid

from imagestore_emulator.servicefabric_wire import INVALID_ARG, Fail, display, iso
from imagestore_emulator.storage import read_json, write_json_atomic

JOURNAL_MIN_COMPACT = 1024      # lines before the journal is folded into content.json (or the index's size, if larger)
STAT_NAMES = ("chunk_requests", "chunk_bytes", "rejected_chunks", "whole_file_puts", "whole_file_bytes", "commits")
PATH_COUNTERS = ("chunk_bodies", "chunk_bytes", "file_bodies", "file_bytes", "repeat_chunk_bodies", "repeat_chunk_bytes",
                 "repeat_file_bodies", "repeat_file_bytes")


def merge_range(ranges, start, end):
    """Return the sorted, merged list of inclusive ``[s, e]`` ranges with ``[start, end]`` added."""
    merged = []
    for s, e in sorted(list(ranges) + [[start, end]]):
        if merged and s <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return merged


def complement(ranges, size):
    """The inclusive ranges of ``[0, size-1]`` not covered by the sorted, merged ``ranges``.

    Runtime quirk kept on purpose: a 0-byte file always expects ``(0, 0)``.
    """
    if size == 0:
        return [(0, 0)]
    gaps, position = [], 0
    for s, e in ranges:
        if s > position:
            gaps.append((position, s - 1))
        position = e + 1
    if position <= size - 1:
        gaps.append((position, size - 1))
    return gaps


def overlaps(ranges, start, end):
    return any(s <= end and start <= e for s, e in ranges)


class Session:
    """One upload session incarnation. Mutable fields are guarded by the store's lock."""

    def __init__(self, directory, sid, path, size, received=(), touched=None, committed=False):
        self.dir = directory
        self.id = sid
        self.path = path
        self.size = size
        self.received = [list(r) for r in received]
        self.touched = time.time() if touched is None else touched   # creation or last accepted chunk
        self.committed = committed
        self.in_flight = []            # (start, end) reserved by chunks whose body is streaming
        self.dropped = False           # deleted, expired, replaced or reset: late writers must give up
        self.commit_done = None        # threading.Event of a commit running in the background
        self.commit_error = None       # the Fail a background commit ended with
        self.persist_lock = threading.Lock()

    @property
    def data_path(self):
        return os.path.join(self.dir, "data")

    @property
    def meta_path(self):
        return os.path.join(self.dir, "session.json")

    def expected(self):
        return [] if self.committed else complement(self.received, self.size)

    def to_json(self):
        return {"id": self.id, "path": self.path, "size": self.size, "received": self.received,
                "touched": self.touched, "committed": self.committed}

    def info(self):
        """UploadSessionInfo, 64-bit numbers as strings."""
        return {"StoreRelativePath": display(self.path), "SessionId": self.id, "ModifiedDate": iso(self.touched),
                "FileSize": str(self.size),
                "ExpectedRanges": [{"StartPosition": str(s), "EndPosition": str(e)} for s, e in self.expected()]}


class ImageStoreState:
    """The state half of ``ServiceFabricAPI``: everything on disk and in memory, no HTTP."""

    def _init_state(self, data_dir):
        self._lock = threading.Lock()
        self._content_dir = os.path.join(data_dir, "content")
        self._sessions_dir = os.path.join(data_dir, "sessions")
        self._tmp_dir = os.path.join(data_dir, "tmp")
        self._index_path = os.path.join(data_dir, "content.json")
        self._journal_path = os.path.join(data_dir, "content.journal")
        self._journal = None
        self._load()

    def _load(self):
        """Read the state from ``data_dir`` (at start and after a reset)."""
        shutil.rmtree(self._tmp_dir, ignore_errors=True)
        for d in (self._content_dir, self._sessions_dir, self._tmp_dir):
            os.makedirs(d, exist_ok=True)
        index = read_json(self._index_path, {}) or {}
        self._versions = dict(index.get("files", {}))
        self._next_version = int(index.get("next_version", 1))
        self._replay_journal()
        self._stats = dict.fromkeys(STAT_NAMES, 0)
        self._paths = {}               # path -> PATH_COUNTERS (in memory)
        self._put_stored = {}          # path -> (inode, mtime, size) of the file a whole-file PUT stored there
        self._gateway_stats = {"timeouts": 0, "renegotiation_refusals": 0}
        self._sessions = {}
        self._by_path = {}             # path -> {session id: session}: the sessions of one path without a scan
        for entry in os.scandir(self._sessions_dir):
            doc = read_json(os.path.join(entry.path, "session.json"))
            if not doc:
                shutil.rmtree(entry.path, ignore_errors=True)     # killed while it was being created
                continue
            session = Session(entry.path, doc["id"], doc["path"], doc["size"], doc["received"], doc["touched"], doc["committed"])
            if not session.committed and not os.path.exists(session.data_path):
                session.received = []      # killed between the commit's rename and its record: claim nothing
            other = self._sessions.get(session.id)
            if other is not None:          # killed while an id was being reused: the newer incarnation wins
                if other.touched >= session.touched:
                    other, session = session, other
                self._drop_locked(other)
            self._sessions[session.id] = session
        for session in self._sessions.values():
            self._by_path.setdefault(session.path, {})[session.id] = session
        self._touched_bound = min((s.touched for s in self._sessions.values()), default=float("inf"))

    def _persist(self, session):
        """Write the session's record; a later snapshot never loses to an earlier one."""
        with session.persist_lock:
            with self._lock:
                if session.dropped:
                    return
                doc = session.to_json()
            try:
                write_json_atomic(session.meta_path, doc)
            except FileNotFoundError:
                if not session.dropped:   # its directory vanished because the session was dropped meanwhile
                    raise

    def _drop_locked(self, session):
        session.dropped = True
        if self._sessions.get(session.id) is session:
            del self._sessions[session.id]
            same_path = self._by_path.get(session.path, {})
            if same_path.get(session.id) is session:
                del same_path[session.id]
                if not same_path:
                    del self._by_path[session.path]
        shutil.rmtree(session.dir, ignore_errors=True)

    def _sessions_of_path_locked(self, path):
        return list(self._by_path.get(path, {}).values())

    def _add_session_locked(self, session):
        self._sessions[session.id] = session
        self._by_path.setdefault(session.path, {})[session.id] = session
        self._touched_bound = min(self._touched_bound, session.touched)

    def _expiry(self):
        return float(self.config.get("sf_session_expiry_seconds", 1800))

    def _sweep_locked(self):
        """Drop expired sessions (never one with a chunk streaming into it or a commit running)."""
        limit = time.time() - self._expiry()
        if self._touched_bound >= limit:        # no session was touched before the limit (touched only grows)
            return
        for session in list(self._sessions.values()):
            if session.touched < limit and not session.in_flight and session.commit_done is None:
                self._drop_locked(session)
        self._touched_bound = min((s.touched for s in self._sessions.values()), default=float("inf"))

    def _content_file(self, path):
        return os.path.join(self._content_dir, *path.split("/")) if path else self._content_dir

    def _check_placement_locked(self, path):
        """Refuse a file path that is a folder, or below a file."""
        parts = path.split("/")
        for i in range(1, len(parts)):
            parent = self._content_file("/".join(parts[:i]))
            if os.path.exists(parent) and not os.path.isdir(parent):
                raise Fail(400, INVALID_ARG, "'%s' is a file, not a folder" % display("/".join(parts[:i])))
        if os.path.isdir(self._content_file(path)):
            raise Fail(400, INVALID_ARG, "'%s' is a folder" % display(path))

    def _store_locked(self, source, path):
        """Move ``source`` into the store at ``path`` (replacing a file there) with a new version and a later
        ModifiedDate. The version index is written first, so a full disk leaves the store as it was."""
        self._check_placement_locked(path)
        target = self._content_file(path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        self._journal_locked({"set": path, "v": self._next_version})
        try:
            before = os.stat(target).st_mtime_ns
        except OSError:
            before = 0
        os.replace(source, target)
        now = max(time.time_ns(), before + 1000000)      # at least 1 ms later: ModifiedDate always changes
        os.utime(target, ns=(now, now))
        self._versions[path] = self._next_version
        self._next_version += 1
        self._put_stored.pop(path, None)
        self._maybe_compact_locked()

    def _forget_locked(self, path):
        """A deleted file or folder leaves the version index (journaled first, as a store is)."""
        self._journal_locked({"del": path})
        self._versions = {p: v for p, v in self._versions.items() if p != path and not p.startswith(path + "/")}
        self._maybe_compact_locked()

    # ----------------------------------------------------------------- the version index on disk

    def _replay_journal(self):
        """Apply the journal's lines to the index read from content.json, then fold them into it. A line cut short
        by a crash, or any line that is not a complete record, is skipped: it was never answered."""
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        lines = 0
        try:
            with open(self._journal_path, "rb") as fh:
                for line in fh:
                    lines += 1
                    try:
                        record = json.loads(line)
                    except ValueError:
                        continue
                    if not isinstance(record, dict):
                        continue
                    if isinstance(record.get("set"), str) and isinstance(record.get("v"), int):
                        self._versions[record["set"]] = record["v"]
                        self._next_version = max(self._next_version, record["v"] + 1)
                    elif isinstance(record.get("del"), str):
                        gone = record["del"]
                        self._versions = {p: v for p, v in self._versions.items() if p != gone and not p.startswith(gone + "/")}
        except FileNotFoundError:
            pass
        if lines:                   # folded in, and a torn last line never has a record appended to it
            self._compact_locked()
            open(self._journal_path, "wb").close()
        self._journal = open(self._journal_path, "ab", buffering=0)
        self._journal_lines = 0
        self._journal_size = self._journal.tell()

    def _journal_locked(self, record):
        """Append one record; on an error (a full disk) the journal is cut back, so it never holds half a line."""
        data = (json.dumps(record, separators=(",", ":")) + "\n").encode("utf-8")
        try:
            written = 0
            while written < len(data):
                written += self._journal.write(data[written:])
        except BaseException:
            try:
                self._journal.truncate(self._journal_size)
            except OSError:
                pass
            raise
        self._journal_size += len(data)
        self._journal_lines += 1

    def _maybe_compact_locked(self):
        if self._journal_lines >= max(JOURNAL_MIN_COMPACT, len(self._versions)):
            try:
                self._compact_locked()
            except OSError:
                return              # a full disk: the journal keeps the records, the next change tries again
            self._journal.truncate(0)
            self._journal_lines = self._journal_size = 0

    def _compact_locked(self):
        write_json_atomic(self._index_path, {"next_version": self._next_version, "files": self._versions})

    def _count_locked(self, path, kind, nbytes):
        counters = self._paths.setdefault(path, dict.fromkeys(PATH_COUNTERS, 0))
        counters[kind + "_bodies"] += 1
        counters[kind + "_bytes"] += nbytes

    def _chunk_session_locked(self, sid, path, total):
        """The open session a chunk belongs to; the first chunk of a new (or reused) id creates it."""
        session = self._sessions.get(sid)
        if session is not None and not session.committed:
            if session.path != path:
                raise Fail(409, "FABRIC_E_UPLOAD_SESSION_ID_CONFLICT", "session %s uploads '%s'" % (sid, display(session.path)))
            if session.size != total:
                raise Fail(400, INVALID_ARG, "session %s has FileSize %d, not %d" % (sid, session.size, total))
            return session
        if session is not None:
            if session.commit_done is not None:
                raise Fail(400, INVALID_ARG, "session %s is being committed" % sid)
            self._drop_locked(session)     # an id may be reused once its session was committed
        directory = os.path.join(self._sessions_dir, uuid.uuid4().hex)
        os.makedirs(directory)
        try:
            session = Session(directory, sid, path, total)
            os.close(os.open(session.data_path, os.O_WRONLY | os.O_CREAT, 0o644))
            write_json_atomic(session.meta_path, session.to_json())
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        self._add_session_locked(session)
        return session

    def _session_list(self):
        with self._lock:
            self._sweep_locked()
            expiry = self._expiry()
            return [{"id": s.id, "path": s.path, "size": s.size,
                     "received": [{"start": a, "end": b} for a, b in s.received],
                     "in_flight": [{"start": a, "end": b} for a, b in sorted(s.in_flight)],
                     "committed": s.committed, "committing": s.commit_done is not None and not s.committed,
                     "modified": iso(s.touched), "expires": iso(s.touched + expiry)}
                    for s in sorted(self._sessions.values(), key=lambda s: (s.touched, s.id))]
