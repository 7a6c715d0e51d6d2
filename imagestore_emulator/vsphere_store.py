"""vSphere Content Library state: libraries, items, update sessions and API tokens on disk.

State under ``data_dir`` (it survives a restart):

* ``libraries/<id>.json``, ``items/<id>.json``, ``sessions/<id>.json``  one document per object
* ``items/<id>/<key>.data``           committed file content (``key``: SHA-256 of the file name)
* ``sessions/<id>/<key>.data``        received file content, moved into the item on complete
* ``sessions/<id>/<key>.<gen>.part``  a PUT in progress (removed on start: such a file is ERROR)
* ``tokens.json``                     API login tokens; ``seed.json`` the seeded library id

An update session's idle clock is reset by create, keep-alive, update, file add/remove and by bytes
arriving on the data endpoint; reads do not reset it. Expired sessions go ERROR ("session expired") and
are deleted one more expiry period later.
"""

import os
import shutil
import time

from imagestore_emulator.storage import read_json, write_json_atomic
from imagestore_emulator.vsphere_wire import DATASTORE, SEED_LIBRARY, VapiError, _iso, _message


class VSphereState:
    """The state half of ``VSphereAPI`` (mixed into it): persistence, lookups, models, session life cycle.
    Callers hold ``self._lock``."""

    def _dir(self, *parts):
        return os.path.join(self.data_dir, *parts)

    def _load(self):
        for sub in ("libraries", "items", "sessions"):
            os.makedirs(self._dir(sub), exist_ok=True)
        self._libraries = self._load_kind("libraries")
        self._items = self._load_kind("items")
        self._sessions = self._load_kind("sessions")
        now = time.time()
        tokens = read_json(self._dir("tokens.json"), {}) or {}
        self._tokens = {t: dict(info, last=max(info.get("last", 0), now)) for t, info in tokens.items()}
        for session in self._sessions.values():
            self._recover_session(session)
        if self._seed_library_id not in self._libraries:
            self._seed()

    def _load_kind(self, kind):
        objects = {}
        for entry in os.listdir(self._dir(kind)):
            if entry.endswith(".json"):
                obj = read_json(self._dir(kind, entry))
                if isinstance(obj, dict) and obj.get("id") == entry[:-5]:
                    objects[obj["id"]] = obj
        return objects

    def _recover_session(self, session):
        """After a restart: a transfer that was in progress is lost; its partial file goes."""
        changed = False
        for f in session["files"].values():
            if f["status"] == "TRANSFERRING":
                f.update(status="ERROR", data=None, bytes_transferred=0,
                         error_message=_message("transfer_interrupted", "the transfer of %s was interrupted (server restart)" % f["name"]))
                changed = True
        folder = self._dir("sessions", session["id"])
        if os.path.isdir(folder):
            for entry in os.listdir(folder):
                if entry.endswith(".part"):
                    os.unlink(os.path.join(folder, entry))
        if changed:
            self._save("sessions", session)

    def _seed(self):
        now = time.time()
        self._libraries[self._seed_library_id] = {
            "id": self._seed_library_id, "name": SEED_LIBRARY, "type": "LOCAL", "description": "Seeded by the emulator",
            "storage_backings": [{"type": "DATASTORE", "datastore_id": DATASTORE["datastore"]}],
            "creation_time": now, "last_modified_time": now, "client_token": None,
        }
        self._save("libraries", self._libraries[self._seed_library_id])
        write_json_atomic(self._dir("seed.json"), {"library_id": self._seed_library_id})

    def _save(self, kind, obj):
        write_json_atomic(self._dir(kind, obj["id"] + ".json"), obj)

    def _unlink(self, kind, obj_id):
        try:
            os.unlink(self._dir(kind, obj_id + ".json"))
        except FileNotFoundError:
            pass
        shutil.rmtree(self._dir(kind, obj_id), ignore_errors=True)

    def _save_tokens(self):
        write_json_atomic(self._dir("tokens.json"), self._tokens)
    def _library(self, library_id):
        library = self._libraries.get(library_id)
        if library is None:
            raise VapiError("not_found", "library %s not found" % library_id)
        return library

    @staticmethod
    def _library_model(library):
        return {"id": library["id"], "name": library["name"], "type": library["type"], "description": library["description"],
                "storage_backings": library["storage_backings"], "creation_time": _iso(library["creation_time"]),
                "last_modified_time": _iso(library["last_modified_time"]), "version": "1"}
    def _item(self, item_id):
        item = self._items.get(item_id)
        if item is None:
            raise VapiError("not_found", "library item %s not found" % item_id)
        return item

    @staticmethod
    def _item_model(item):
        return {"id": item["id"], "library_id": item["library_id"], "name": item["name"], "type": item["type"],
                "description": item["description"], "creation_time": _iso(item["creation_time"]),
                "last_modified_time": _iso(item["last_modified_time"]), "content_version": str(item["content_version"]),
                "metadata_version": "1", "version": "1", "cached": bool(item["files"]),
                "size": sum(f["size"] for f in item["files"].values())}

    @staticmethod
    def _item_file_model(f):
        return {"name": f["name"], "size": f["size"], "checksum_info": {"algorithm": "SHA1", "checksum": f["sha1"]},
                "version": str(f["version"]), "cached": True}

    def _expiry(self):
        return float(self.config.get("vsphere_session_expiry_seconds") or 300)

    def _session(self, session_id):
        session = self._sessions.get(session_id)
        if session is None:
            raise VapiError("not_found", "update session %s not found" % session_id)
        return session

    def _active(self, session, operation):
        if session["state"] != "ACTIVE":
            raise VapiError("not_allowed_in_current_state", "cannot %s update session %s: it is %s, not ACTIVE"
                            % (operation, session["id"], session["state"]))
        return session

    def _session_model(self, session):
        model = {"id": session["id"], "library_item_id": session["library_item_id"],
                 "library_item_content_version": str(session["library_item_content_version"]),
                 "client_progress": session["client_progress"], "state": session["state"],
                 "expiration_time": _iso(self._deadline(session)),
                 "preview_info": {"state": "NOT_APPLICABLE"}, "warning_behavior": session["warning_behavior"]}
        if session["error_message"]:
            model["error_message"] = session["error_message"]
        return model

    def _deadline(self, session):
        """When an ACTIVE session idle-expires, or when an ended one is deleted."""
        return (session["last_activity"] if session["state"] == "ACTIVE" else session["ended"]) + self._expiry()

    def _sweep(self):
        """Idle-expire ACTIVE sessions; delete ended ones one expiry period after they ended. Lock held."""
        now = time.time()
        for session in list(self._sessions.values()):
            if session["state"] == "ACTIVE" and now >= self._deadline(session):
                self._expire(session, self._deadline(session))
            if session["state"] != "ACTIVE" and now >= self._deadline(session):
                self._drop_session(session)

    def _expire(self, session, when):
        self._end(session, "ERROR", when, _message(
            "session_expired", "session expired: no activity for %g seconds" % self._expiry(), self._expiry()))

    def _end(self, session, state, when, error_message=None):
        """Move ``session`` to a final state; received content that was not committed is dropped."""
        session.update(state=state, ended=when, error_message=error_message)
        if state != "DONE":
            for f in session["files"].values():
                if f["status"] in ("READY", "TRANSFERRING"):
                    f.update(status="ERROR", data=None,
                             error_message=_message("content_dropped", "content dropped: the session is %s" % state))
        shutil.rmtree(self._dir("sessions", session["id"]), ignore_errors=True)
        self._save("sessions", session)

    def _drop_session(self, session):
        del self._sessions[session["id"]]
        self._unlink("sessions", session["id"])

