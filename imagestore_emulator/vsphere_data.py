"""The vSphere data endpoint: ``PUT /cls-data/<session id>/<file name>`` streams one file of an update
session, publishes ``bytes_transferred`` as it arrives, verifies size and checksum, and marks the file
READY or ERROR. A transfer that breaks (connection lost, body stalled past the body time-out) leaves the
file ERROR with the reason; it is sent again after adding the file again, in the same session."""

import hashlib
import os
import socket
import ssl
import time

from imagestore_emulator.storage import check_space, is_disk_full
from imagestore_emulator.vsphere_wire import CHECKSUM_ALGORITHMS, DATASTORE, PROGRESS_BLOCK, VapiError, _message, _storage_key
from imagestore_emulator.wire import PipelinedDigests, Response


class DataEndpoint:
    """The data endpoint (mixed into ``VSphereAPI``)."""

    def _data_put(self, request, segments):
        """``PUT /cls-data/<session>/<name>``: stream the body to a partial file, verify, mark READY or ERROR."""
        if request.method != "PUT" or len(segments) != 2:
            raise VapiError("operation_not_found", "the data endpoint takes PUT /cls-data/<session id>/<file name>")
        session_id, name = segments
        if request.body.length is not None:
            self._check_file_size(request.body.length, name)
        with self._lock:
            self._authenticate(request)
            self._sweep()
            session = self._session(session_id)
            f = self._file(session, name)
            self._active(session, "upload to")
            if f["status"] == "TRANSFERRING":
                raise VapiError("resource_busy", "file %s is already being transferred" % name)
            gen = f["gen"]
            f.update(status="TRANSFERRING", bytes_transferred=0, error_message=None, received_size=None, sha1=None, data=None)
            session["last_activity"] = time.time()
            self._save("sessions", session)
            folder = self._dir("sessions", session_id)
            os.makedirs(folder, exist_ok=True)
            part = os.path.join(folder, "%s.%d.part" % (_storage_key(name), gen))
        with self._stats_lock:
            self._stats["data_puts"] += 1
        algorithm = (f["checksum_info"] or {}).get("algorithm", "SHA1")
        hashers = {"SHA1": hashlib.sha1()}
        hashers.setdefault(algorithm, hashlib.new(CHECKSUM_ALGORITHMS[algorithm]))
        try:
            received = self._receive(request.body, part, hashers, session, f)
        except VapiError as exc:        # larger than the store accepts: the transfer ends, the file is in ERROR
            self._discard(part)
            with self._lock:
                if self._current(session, f, gen):
                    f.update(status="ERROR", error_message=_message("transfer_failed", str(exc)))
                    self._save("sessions", session)
            raise
        except OSError as exc:  # a broken or stalled connection (ConnectionError, timeouts, TLS) or a failing disk
            self._discard(part)
            if is_disk_full(exc):
                reason = "insufficient disk space on datastore '%s' for %s: %s" % (DATASTORE["name"], name, exc.strerror or exc)
            elif isinstance(exc, socket.timeout):
                reason = "the transfer of %s stalled after %d bytes: no data for %g seconds" % (
                    name, f["bytes_transferred"], float(self.config.get("body_timeout_seconds") or 0))
            else:
                reason = "the transfer of %s broke after %d bytes: %s" % (name, f["bytes_transferred"], exc)
            with self._lock:
                if self._current(session, f, gen):
                    f.update(status="ERROR", error_message=_message("transfer_failed", reason))
                    try:
                        self._save("sessions", session)
                    except OSError:
                        pass        # a full disk: the ERROR state is kept in memory
            if isinstance(exc, (ConnectionError, socket.timeout, ssl.SSLError)):
                raise
            if is_disk_full(exc):
                raise VapiError("unable_to_allocate_resource", reason)
            raise VapiError("internal_server_error", "could not store %s: %s" % (name, exc))
        with self._lock:
            if not self._current(session, f, gen):
                self._discard(part)
                raise VapiError("not_allowed_in_current_state", "file %s was re-added or removed, or the session ended, during the transfer"
                                % name)
            problems = []
            if f["size"] is not None and received != f["size"]:
                problems.append("size mismatch for %s: expected %d bytes, received %d" % (name, f["size"], received))
            if f["checksum_info"]:
                got = hashers[algorithm].hexdigest()
                if got != f["checksum_info"]["checksum"]:
                    problems.append("checksum mismatch for %s (%s): expected %s, got %s" % (name, algorithm, f["checksum_info"]["checksum"], got))
            if problems:
                self._discard(part)
                f.update(status="ERROR", error_message=_message("invalid_file", "; ".join(problems)))
                self._save("sessions", session)
                raise VapiError("invalid_argument", *problems)
            data = "%s.data" % _storage_key(name)
            os.replace(part, os.path.join(self._dir("sessions", session_id), data))
            f.update(status="READY", received_size=received, sha1=hashers["SHA1"].hexdigest(), data=data, bytes_transferred=received)
            session["last_activity"] = time.time()
            self._save("sessions", session)
        return Response.empty(200)

    def _receive(self, body, part, hashers, session, f):
        """Copy the request body into ``part``, publishing progress as it arrives; return the byte count."""
        total = 0
        digests = PipelinedDigests(hashers.values())        # hashed beside the socket reads, not between them
        try:
            with open(part, "wb") as fh:
                while body.remaining > 0:
                    buf = bytearray(PROGRESS_BLOCK)         # a fresh buffer: the digest thread may still hold the last
                    n = body.readinto1(buf)                 # what has arrived, up to PROGRESS_BLOCK
                    chunk = memoryview(buf)[:n]
                    self._check_file_size(total + n, f["name"])
                    check_space(n)
                    fh.write(chunk)
                    digests.update(chunk)
                    total += n
                    f["bytes_transferred"] = total
                    session["last_activity"] = time.time()
                    with self._stats_lock:
                        self._stats["data_bytes"] += n
        finally:
            digests.close()
        return total

    def _current(self, session, f, gen):
        """Is this transfer still the one the session expects? Lock held."""
        self._sweep()
        return (self._sessions.get(session["id"]) is session and session["state"] == "ACTIVE"
                and session["files"].get(f["name"]) is f and f["gen"] == gen)

    @staticmethod
    def _discard(path):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

    def _check_file_size(self, size, name):
        """A file larger than the store accepts (``max_file_size``): the datastore cannot hold it."""
        limit = self.max_file_size()
        if limit and size > limit:
            raise VapiError("unable_to_allocate_resource", "insufficient disk space on datastore '%s' for %s: %d bytes, at most %d"
                            " accepted" % (DATASTORE["name"], name, size, limit))
