"""vSphere API sessions (login, token check, logout), datastores, libraries and library items."""

import base64
import secrets
import time
import uuid

from imagestore_emulator.vsphere_wire import DATASTORE, SESSION_HEADER, API_SESSION_IDLE_SECONDS, VapiError, _check_text, _iso


class ContentOps:
    """Operations on API sessions, libraries and items (mixed into ``VSphereAPI``; the lock is held)."""

    def _login(self, call):
        header = call.request.header("Authorization") or ""
        user = password = None
        if header[:6].lower() == "basic ":
            try:
                user, _, password = base64.b64decode(header[6:].strip()).decode("utf-8").partition(":")
            except (ValueError, UnicodeDecodeError):
                user = None
        if user is None:
            raise VapiError("unauthenticated", "HTTP Basic credentials are required to create a session")
        if user != self.config["vsphere_username"] or password != self.config["vsphere_password"]:
            raise VapiError("unauthenticated", "Authentication failed: wrong user name or password")
        token = secrets.token_hex(16)
        now = time.time()
        with self._lock:
            self._tokens[token] = {"user": user, "created": now, "last": now}
            self._save_tokens()
        with self._stats_lock:
            self._stats["logins"] += 1
        return call.created(token)

    def _authenticate(self, request):
        """Check the session header; refresh the token's idle clock. Call with the lock held."""
        token = request.header(SESSION_HEADER)
        if not token:
            raise VapiError("unauthenticated", "This method requires authentication: send the %s header" % SESSION_HEADER)
        info = self._tokens.get(token)
        now = time.time()
        if info is not None and now - info["last"] > API_SESSION_IDLE_SECONDS:
            del self._tokens[token]
            self._save_tokens()
            info = None
        if info is None:
            raise VapiError("unauthenticated", "The session is unknown or has expired; log in again")
        info["last"] = now
        return token

    def _op_logout(self, call):
        del self._tokens[call.request.header(SESSION_HEADER)]
        self._save_tokens()
        with self._stats_lock:
            self._stats["logouts"] += 1
        return call.void()

    def _op_api_session_info(self, call):
        info = self._tokens[call.request.header(SESSION_HEADER)]
        return call.value({"user": info["user"], "created_time": _iso(info["created"]), "last_accessed_time": _iso(info["last"])})

    def _op_datastore_list(self, call):
        return call.value([dict(DATASTORE)])

    def _op_library_list(self, call):
        return call.value(sorted(self._libraries))

    def _op_library_get(self, call, library_id):
        return call.value(self._library_model(self._library(library_id)))

    def _op_library_find(self, call):
        spec = call.spec("spec")
        name, kind = spec.get("name"), spec.get("type")
        found = [lib["id"] for lib in self._libraries.values()
                 if (name is None or str(name).lower() == lib["name"].lower()) and (kind is None or kind == lib["type"])]
        return call.value(sorted(found))

    def _op_library_create(self, call):
        spec = call.spec("create_spec")
        token = call.client_token()
        for library in self._libraries.values():
            if token is not None and library.get("client_token") == token:
                return call.created(library["id"])
        name = _check_text(spec.get("name"), "name")
        if spec.get("type", "LOCAL") != "LOCAL":
            raise VapiError("invalid_argument", "only LOCAL libraries can be created here")
        backings = spec.get("storage_backings")
        if (not isinstance(backings, list) or len(backings) != 1 or not isinstance(backings[0], dict)
                or backings[0].get("type") != "DATASTORE" or backings[0].get("datastore_id") != DATASTORE["datastore"]):
            raise VapiError("invalid_argument", "storage_backings must be [{\"type\": \"DATASTORE\", \"datastore_id\": \"%s\"}]"
                            % DATASTORE["datastore"])
        if any(lib["name"].lower() == name.lower() for lib in self._libraries.values()):
            raise VapiError("already_exists", "a library named %r already exists" % name)
        now = time.time()
        library = {"id": str(uuid.uuid4()), "name": name, "type": "LOCAL", "description": str(spec.get("description") or ""),
                   "storage_backings": [{"type": "DATASTORE", "datastore_id": DATASTORE["datastore"]}],
                   "creation_time": now, "last_modified_time": now, "client_token": token}
        self._save("libraries", library)      # first: a full disk creates nothing
        self._libraries[library["id"]] = library
        return call.created(library["id"])

    def _op_item_list(self, call):
        library = self._library(call.arg("library_id", required=True))
        return call.value(sorted(i["id"] for i in self._items.values() if i["library_id"] == library["id"]))

    def _op_item_get(self, call, item_id):
        return call.value(self._item_model(self._item(item_id)))

    def _op_item_find(self, call):
        spec = call.spec("spec")
        name, library_id, kind = spec.get("name"), spec.get("library_id"), spec.get("type")
        found = [i["id"] for i in self._items.values()
                 if (name is None or str(name).lower() == i["name"].lower())
                 and (library_id is None or library_id == i["library_id"])
                 and (kind is None or str(kind).lower() == (i["type"] or "").lower())]
        return call.value(sorted(found))

    def _op_item_create(self, call):
        spec = call.spec("create_spec")
        token = call.client_token()
        for item in self._items.values():
            if token is not None and item.get("client_token") == token:
                return call.created(item["id"])
        name = _check_text(spec.get("name"), "name")
        library = self._library(_check_text(spec.get("library_id"), "library_id"))
        kind = _check_text(spec.get("type"), "type", required=False)
        if any(i["name"] == name and i["library_id"] == library["id"] for i in self._items.values()):
            raise VapiError("already_exists", "an item named %r already exists in library %s" % (name, library["name"]))
        now = time.time()
        item = {"id": str(uuid.uuid4()), "library_id": library["id"], "name": name, "type": kind,
                "description": str(spec.get("description") or ""), "creation_time": now, "last_modified_time": now,
                "content_version": 1, "client_token": token, "files": {}}
        self._save("items", item)             # first: a full disk creates nothing
        self._items[item["id"]] = item
        return call.created(item["id"])

    def _op_item_delete(self, call, item_id):
        item = self._item(item_id)
        if any(s["library_item_id"] == item_id and s["state"] == "ACTIVE" for s in self._sessions.values()):
            raise VapiError("resource_busy", "library item %s has an ACTIVE update session" % item_id)
        for session in [s for s in self._sessions.values() if s["library_item_id"] == item_id]:
            self._drop_session(session)
        del self._items[item["id"]]
        self._unlink("items", item["id"])
        return call.void()

    def _op_item_file_list(self, call, item_id=None):
        item = self._item(item_id or call.arg("library_item_id", required=True))
        name = call.arg("name") if call.style == "api" else None
        if name is not None:
            return self._op_item_file_get(call, item["id"], name)
        return call.value([self._item_file_model(f) for f in item["files"].values()])

    def _op_item_file_get(self, call, item_id, name=None):
        item = self._item(item_id)
        if name is None:
            name = _check_text(call.body().get("name"), "name")
        f = item["files"].get(name)
        if f is None:
            raise VapiError("not_found", "library item %s has no file named %r" % (item_id, name))
        return call.value(self._item_file_model(f))

