"""The toy store's state: files and upload sessions on disk (JSON beside the bytes), ranges in flight and counters in
memory. No HTTP here (that is server.py); every method that changes something is called under ``Store.lock``.

On disk, under the data dir:
  files/<sha256 of the path>.bin|.json      a stored file and its metadata {"path", "size", "sha256", "version", "modified"}
  sessions/<id>.bin|.json                   a session's bytes (sparse until received) and {"id", "path", "size", "sha256",
                                            "received", "gen", "created", "updated"}
A restart on the same dir keeps both; a crash (SIGKILL) loses at most the range being written. Writes of stored
content go through ``write_content``, so the ``enospc`` fault (imagestore_emulator.storage) fills the content disk only;
a real full filesystem fails any write, JSON included, and nothing half-written is kept.
"""

import hashlib
import json
import os
import re
import secrets
import shutil
import threading
import time

from imagestore_emulator.storage import check_space

SESSION_ID = re.compile(r"^[0-9a-f]{32}$")


class Fail(Exception):
    """An error answer of the API: {"error": {"code", "message"}} with ``status`` (and ``headers``)."""

    def __init__(self, status, code, message, headers=None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def check_path(text):
    parts = [p for p in str(text or "").split("/") if p not in ("", ".")]
    if not parts or str(text).startswith("/") or ".." in parts or any(ord(c) < 32 for c in str(text)):
        raise Fail(400, "BAD_PATH", "path %r is not a relative path inside the store" % text)
    return "/".join(parts)


def complement(ranges, size):
    gaps, pos = [], 0
    for start, end in sorted(ranges):
        if start > pos:
            gaps.append([pos, start - 1])
        pos = max(pos, end + 1)
    if pos < size:
        gaps.append([pos, size - 1])
    return gaps


def merge(ranges):
    out = []
    for start, end in sorted(ranges):
        if out and start <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return out


def overlaps(ranges, start, end):
    return any(a <= end and start <= b for a, b in ranges)


def write_content(fd, block, offset):
    """Write received bytes of a session (the one kind of write the ``enospc`` fault fails)."""
    check_space(len(block))
    os.pwrite(fd, block, offset)


class Store:
    """Files and sessions. ``in_flight`` maps a session's generation (``gen``: a new one each time a session with that
    id is created) to the ranges being received, so the PUTs of an ended session never count for its successor."""

    def __init__(self, root, username, password):
        self.root, self.username, self.password = root, username, password
        self.lock = threading.Lock()
        self.tokens = set()
        self.load()

    def load(self):
        for sub in ("files", "sessions"):
            os.makedirs(os.path.join(self.root, sub), exist_ok=True)
        self.files = dict((m["path"], m) for m in self._metas("files"))
        self.sessions = dict((m["id"], dict(m, gen=m.get("gen") or secrets.token_hex(8))) for m in self._metas("sessions"))
        self.in_flight = {}             # session generation -> [[start, end], ...]
        self.version = max([m["version"] for m in self.files.values()] + [0])
        self.stats = dict(payload_bytes=0, puts=0, conflicts=0, cut_bodies=0, commits=0, logins=0, expired=0, disk_full=0)

    def _metas(self, sub):
        folder = os.path.join(self.root, sub)
        for name in sorted(os.listdir(folder)):
            if name.endswith(".json"):
                with open(os.path.join(folder, name)) as fh:
                    yield json.load(fh)

    def blob(self, kind, key):
        name = hashlib.sha256(key.encode()).hexdigest() if kind == "files" else key
        return os.path.join(self.root, kind, name + ".bin")

    def save(self, kind, key, meta):
        """The metadata document, atomically: a full disk leaves the previous one (and no temporary file)."""
        os.replace(*self.draft(kind, key, meta))

    def draft(self, kind, key, meta):
        """Write the document beside its place; (draft, place) for os.replace. Nothing is left when the disk is full."""
        path = self.blob(kind, key)[:-4] + ".json"
        try:
            with open(path + ".tmp", "w") as fh:
                json.dump(meta, fh)
        except OSError:
            if os.path.exists(path + ".tmp"):
                os.unlink(path + ".tmp")
            raise
        return path + ".tmp", path

    def drop(self, kind, key):
        for path in (self.blob(kind, key), self.blob(kind, key)[:-4] + ".json"):
            if os.path.exists(path):
                os.unlink(path)

    def reset(self):
        with self.lock:
            for sub in ("files", "sessions"):
                shutil.rmtree(os.path.join(self.root, sub), ignore_errors=True)
            self.load()

    def view(self, s):
        return dict(s, missing=complement(s["received"], s["size"]), in_flight=sorted(self.in_flight.get(s["gen"], [])),
                    received_bytes=sum(e - s0 + 1 for s0, e in s["received"]))

    def session(self, sid):
        if not SESSION_ID.match(sid):
            raise Fail(400, "BAD_SESSION_ID", "session id %r is not 32 lower-case hex digits" % sid)
        s = self.sessions.get(sid)
        if s is None:
            raise Fail(404, "NO_SESSION", "no upload session %s" % sid)
        return s

    def create_session(self, sid, path, size, sha256):
        """A new session; its files are written before it is known, so a full disk leaves nothing behind."""
        now = time.time()
        s = dict(id=sid, path=path, size=size, sha256=sha256, received=[], gen=secrets.token_hex(8), created=now, updated=now)
        try:
            with open(self.blob("sessions", sid), "wb") as fh:
                fh.truncate(size)
            self.save("sessions", sid, s)
        except OSError:
            self.drop("sessions", sid)
            raise
        self.sessions[sid] = s
        return s

    def end_session(self, sid):
        """Delete a session with what it received (DELETE, the ``expire`` fault, a commit moves its bytes first)."""
        s = self.sessions.pop(sid)
        self.in_flight.pop(s["gen"], None)
        self.drop("sessions", sid)
        return s

    def receive_range(self, s, start, end):
        """Record bytes start-end of session ``s`` as received: the document first, so a full disk records nothing."""
        current = self.sessions.get(s["id"])
        if current is None or current["gen"] != s["gen"]:
            raise Fail(404, "NO_SESSION", "upload session %s ended while bytes %d-%d were being received" % (s["id"], start, end))
        received = merge(current["received"] + [[start, end]])
        now = time.time()
        self.save("sessions", s["id"], dict(current, received=received, updated=now))
        current.update(received=received, updated=now)
        self.stats["payload_bytes"] += end - start + 1

    def commit(self, s):
        """The file at the session's path replaced by the session's bytes (checked against its SHA-256); the session ends."""
        digest = hashlib.sha256()
        with open(self.blob("sessions", s["id"]), "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != s["sha256"]:
            raise Fail(422, "DIGEST_MISMATCH", "the received bytes have SHA-256 %s, not the declared %s"
                       % (digest.hexdigest(), s["sha256"]))
        meta = dict(path=s["path"], size=s["size"], sha256=s["sha256"], version=self.version + 1, modified=time.time())
        draft = self.draft("files", s["path"], meta)               # the one write of a commit: before anything moves
        os.replace(self.blob("sessions", s["id"]), self.blob("files", s["path"]))
        os.replace(*draft)
        self.version += 1
        self.files[s["path"]] = meta
        self.end_session(s["id"])
        self.stats["commits"] += 1
        return meta
