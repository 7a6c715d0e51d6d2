"""vSphere update sessions and the files in them (create, keep-alive, complete, cancel, fail, delete;
file add, get, list, remove, validate)."""

import hashlib
import os
import time
import uuid
from xml.etree import ElementTree
from urllib.parse import quote

from imagestore_emulator.vsphere_wire import CHECKSUM_ALGORITHMS, _HEX, VapiError, _as_dict, _check_file_name, _check_text, _message, _storage_key


class UpdateSessionOps:
    """Operations on update sessions and their files (mixed into ``VSphereAPI``; the lock is held)."""

    def _op_session_list(self, call):
        item_id = call.arg("library_item_id")
        if item_id:
            self._item(item_id)
        return call.value(sorted(s["id"] for s in self._sessions.values() if not item_id or s["library_item_id"] == item_id))

    def _op_session_get(self, call, session_id):
        return call.value(self._session_model(self._session(session_id)))

    def _op_session_create(self, call):
        spec = call.spec("create_spec")
        token = call.client_token()
        item = self._item(_check_text(spec.get("library_item_id"), "library_item_id"))
        for session in self._sessions.values():
            if token is not None and session["client_token"] == token:
                if session["library_item_id"] != item["id"]:
                    raise VapiError("invalid_argument", "client_token %r was used for another library item" % token)
                return call.created(session["id"])
        busy = [s["id"] for s in self._sessions.values() if s["library_item_id"] == item["id"] and s["state"] == "ACTIVE"]
        if busy:
            raise VapiError("resource_busy", "library item %s already has an ACTIVE update session: %s" % (item["id"], busy[0]))
        now = time.time()
        session = {"id": str(uuid.uuid4()), "library_item_id": item["id"], "library_item_content_version": item["content_version"],
                   "client_token": token, "state": "ACTIVE", "client_progress": 0, "error_message": None,
                   "warning_behavior": [], "created": now, "last_activity": now, "ended": None, "files": {}}
        self._save("sessions", session)       # first: a full disk creates nothing
        self._sessions[session["id"]] = session
        with self._stats_lock:
            self._stats["sessions_created"] += 1
        return call.created(session["id"])

    def _op_session_update(self, call, session_id):
        session = self._active(self._session(session_id), "update")
        spec = call.spec("update_spec")
        unknown = sorted(k for k, v in spec.items() if k != "warning_behavior" and v is not None)
        if unknown:
            raise VapiError("invalid_argument", "only warning_behavior can be updated, not: %s" % ", ".join(unknown))
        behaviour = spec.get("warning_behavior") or []
        if not isinstance(behaviour, list) or not all(
                isinstance(b, dict) and isinstance(b.get("type"), str) and isinstance(b.get("ignored"), bool) for b in behaviour):
            raise VapiError("invalid_argument", "warning_behavior must be a list of {\"type\": str, \"ignored\": bool}")
        session.update(warning_behavior=behaviour, last_activity=time.time())
        self._save("sessions", session)
        return call.void()

    def _op_session_keep_alive(self, call, session_id):
        session = self._active(self._session(session_id), "keep alive")
        progress = call.body().get("client_progress")
        if progress is not None:
            if isinstance(progress, bool) or not isinstance(progress, int) or not 0 <= progress <= 100:
                raise VapiError("invalid_argument", "client_progress must be an integer from 0 to 100")
            if progress < session["client_progress"]:
                raise VapiError("invalid_argument", "client_progress must not go down (%d < %d)" % (progress, session["client_progress"]))
            session["client_progress"] = progress
        session["last_activity"] = time.time()
        self._save("sessions", session)
        return call.void()

    def _op_session_complete(self, call, session_id):
        session = self._active(self._session(session_id), "complete")
        busy = [n for n, f in session["files"].items() if f["status"] == "TRANSFERRING"]
        if busy:
            raise VapiError("not_allowed_in_current_state", *["file %s is still being transferred" % n for n in busy])
        result = self._validation(session)
        if result["has_errors"]:
            raise VapiError("invalid_argument", *(["file %s has not been received" % n for n in result["missing_files"]]
                                                  + ["file %s is invalid: %s" % (e["name"], e["error_message"]["default_message"])
                                                     for e in result["invalid_files"]]))
        item = self._item(session["library_item_id"])
        os.makedirs(self._dir("items", item["id"]), exist_ok=True)
        now = time.time()
        updated = dict(item, files=dict(item["files"]), content_version=item["content_version"] + 1, last_modified_time=now)
        for f in session["files"].values():
            previous = item["files"].get(f["name"])
            updated["files"][f["name"]] = {"name": f["name"], "size": f["received_size"], "sha1": f["sha1"],
                                           "data": _storage_key(f["name"]) + ".data",
                                           "version": previous["version"] + 1 if previous else 1}
        self._save("items", updated)        # first: a full disk refuses the complete with nothing moved
        for f in session["files"].values():
            os.replace(self._dir("sessions", session["id"], f["data"]), self._dir("items", item["id"], updated["files"][f["name"]]["data"]))
        item.update(updated)
        self._end(session, "DONE", now)
        return call.void()

    def _op_session_cancel(self, call, session_id):
        session = self._session(session_id)
        if session["state"] not in ("ACTIVE", "ERROR"):
            raise VapiError("not_allowed_in_current_state", "cannot cancel update session %s: it is %s" % (session_id, session["state"]))
        self._end(session, "CANCELED", time.time(), session["error_message"])
        return call.void()

    def _op_session_fail(self, call, session_id):
        session = self._active(self._session(session_id), "fail")
        text = call.body().get("client_error_message")
        if not isinstance(text, str):
            raise VapiError("invalid_argument", "client_error_message is required")
        self._end(session, "ERROR", time.time(), _message("client_error", text, text))
        return call.void()

    def _op_session_delete(self, call, session_id):
        session = self._session(session_id)
        if session["state"] == "ACTIVE":
            raise VapiError("not_allowed_in_current_state", "update session %s is ACTIVE: complete, cancel or fail it first" % session_id)
        self._drop_session(session)
        return call.void()

    # ----------------------------------------------------------------- files of an update session

    def _file(self, session, name):
        f = session["files"].get(_check_file_name(name))
        if f is None:
            raise VapiError("not_found", "update session %s has no file named %r" % (session["id"], name))
        return f

    @staticmethod
    def _file_model(session, f, base_url):
        """FileInfo; the upload URI follows the address the client used (it survives a restart on a new port)."""
        model = {"name": f["name"], "source_type": f["source_type"], "bytes_transferred": f["bytes_transferred"],
                 "status": f["status"], "keep_in_storage": True}
        size = f["received_size"] if f["received_size"] is not None else f["size"]
        if size is not None:
            model["size"] = size
        if f["checksum_info"]:
            model["checksum_info"] = f["checksum_info"]
        if f["source_type"] == "PUSH":
            model["upload_endpoint"] = {"uri": "%s/cls-data/%s/%s" % (base_url, session["id"], quote(f["name"], safe=""))}
        if f["error_message"]:
            model["error_message"] = f["error_message"]
        return model

    def _op_file_list(self, call, session_id=None):
        session = self._session(session_id or call.arg("update_session_id", required=True))
        return call.value([self._file_model(session, f, call.request.base_url) for f in session["files"].values()])

    def _op_file_get(self, call, session_id, name=None):
        session = self._session(session_id)
        f = self._file(session, name if name is not None else call.body().get("file_name"))
        return call.value(self._file_model(session, f, call.request.base_url))

    def _op_file_add(self, call, session_id):
        session = self._active(self._session(session_id), "add a file to")
        spec = call.spec("file_spec")
        name = _check_file_name(spec.get("name"))
        if spec.get("source_type") != "PUSH":
            raise VapiError("invalid_argument", "source_type must be PUSH (PULL is not emulated), got %r" % spec.get("source_type"))
        size = spec.get("size")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
            raise VapiError("invalid_argument", "size must be a non-negative integer")
        if size is not None:
            self._check_file_size(size, name)
        checksum = _as_dict(spec.get("checksum_info"), "checksum_info") or None
        if checksum is not None:
            algorithm = checksum.get("algorithm") or "SHA1"
            if algorithm not in CHECKSUM_ALGORITHMS:
                raise VapiError("invalid_argument", "checksum algorithm must be one of %s" % ", ".join(CHECKSUM_ALGORITHMS))
            value = checksum.get("checksum")
            length = hashlib.new(CHECKSUM_ALGORITHMS[algorithm]).digest_size * 2
            if not isinstance(value, str) or len(value) != length or not _HEX.match(value):
                raise VapiError("invalid_argument", "checksum must be %d hexadecimal digits for %s" % (length, algorithm))
            checksum = {"algorithm": algorithm, "checksum": value.lower()}
        previous = session["files"].pop(name, None)
        if previous and previous["data"]:
            self._remove_data(session, previous)
        f = {"name": name, "source_type": "PUSH", "size": size, "checksum_info": checksum,
             "status": "WAITING_FOR_TRANSFER", "bytes_transferred": 0, "error_message": None, "received_size": None,
             "sha1": None, "data": None, "gen": (previous["gen"] + 1) if previous else 1}
        session["files"][name] = f
        session["last_activity"] = time.time()
        self._save("sessions", session)
        model = self._file_model(session, f, call.request.base_url)
        return call.created(model) if call.style == "api" else call.value(model)

    def _remove_data(self, session, f):
        try:
            os.unlink(self._dir("sessions", session["id"], f["data"]))
        except FileNotFoundError:
            pass

    def _op_file_remove(self, call, session_id, name=None):
        session = self._active(self._session(session_id), "remove a file from")
        f = self._file(session, name if name is not None else call.body().get("file_name"))
        if f["data"]:
            self._remove_data(session, f)
        del session["files"][f["name"]]
        session["last_activity"] = time.time()
        self._save("sessions", session)
        return call.void()

    def _validation(self, session):
        missing = [n for n, f in session["files"].items() if f["status"] in ("WAITING_FOR_TRANSFER", "TRANSFERRING")]
        missing += [n for n in self._ovf_references(session) if n not in session["files"] and n not in missing]
        invalid = [{"name": n, "error_message": f["error_message"] or _message("invalid_file", "file %s is invalid" % n)}
                   for n, f in session["files"].items() if f["status"] == "ERROR"]
        return {"has_errors": bool(missing or invalid), "missing_files": missing, "invalid_files": invalid}

    def _ovf_references(self, session):
        """The files a received OVF descriptor in the session references (vCenter's validate reports those not added)."""
        names = []
        for n, f in session["files"].items():
            if not n.lower().endswith(".ovf") or f["status"] != "READY" or not f["data"]:
                continue
            try:
                root = ElementTree.parse(self._dir("sessions", session["id"], f["data"])).getroot()
            except (OSError, ElementTree.ParseError):
                continue
            for element in root.iter():
                if element.tag.rsplit("}", 1)[-1] == "File":
                    names += [v for k, v in element.attrib.items() if k.rsplit("}", 1)[-1] == "href" and v not in names]
        return names

    def _op_file_validate(self, call, session_id):
        return call.value(self._validation(self._active(self._session(session_id), "validate")))
