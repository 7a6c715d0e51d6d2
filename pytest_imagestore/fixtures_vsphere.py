"""vSphere Content Library fixtures: a library item and an update session, removed after the test.

Both work on the emulator (the default) or on a configured vCenter / vcsim (``imagestore_targets``),
and both take ``target=`` to use another ``Target`` (for example one pointing at a vcsim started by
the test session). The library is the target's ``library`` option (``images`` on the emulator).

``vsphere_library_item(name=None, kind="file", target=None, library=None)``
    creates an item (a unique name by default) and returns ``{"id", "name", "library_id", "library"}``;
    after the test every update session of the item is canceled and deleted, then the item.
``vsphere_update_session(item_id=None, target=None)``
    opens an ACTIVE update session on ``item_id`` (a new item when omitted) and returns
    ``{"id", "item_id", "library_id"}``; after the test the session is canceled and deleted.
"""

import uuid

import pytest

# partial_vsphere (the collection's client) is imported when a fixture runs, not when pytest loads the
# plugin: see the note in plugin.py.


class _Clients:
    """One logged-in client per target, logged out at the end."""

    def __init__(self, targets):
        self.targets = targets
        self._clients = {}

    def target(self, target):
        return target if target is not None else self.targets["vsphere"]

    def get(self, target):
        target = self.target(target)
        key = id(target)
        if key not in self._clients:
            from pytest_imagestore.partial_vsphere import client_for
            self._clients[key] = (target, client_for(target))
        return self._clients[key][1]

    def close(self):
        for _, api in self._clients.values():
            try:
                api.logout()
            finally:
                api.http.close()
        self._clients.clear()


def _sessions_of(api, item_id):
    ids = []
    for session_id in api.session_list(item_id):
        model = api.session_get(session_id)
        if model and model.get("library_item_id") == item_id:
            ids.append(session_id)
    return ids


@pytest.fixture
def vsphere_library_item(imagestore_targets):
    """Factory of library items in the target's library; each is deleted (sessions first) after the test."""
    from pytest_imagestore.partial_vsphere import discard_session, library_id_for
    clients = _Clients(imagestore_targets)
    made = []

    def create(name=None, kind="file", target=None, library=None):
        api = clients.get(target)
        library = library or clients.target(target).options.get("library") or "images"
        library_id = library_id_for(api, library)
        name = name or "pytest-%s" % uuid.uuid4().hex[:12]
        item_id = api.item_create(library_id, name, kind)
        made.append((api, item_id))
        return {"id": item_id, "name": name, "library_id": library_id, "library": library}

    yield create
    try:
        for api, item_id in reversed(made):
            for session_id in _sessions_of(api, item_id):
                discard_session(api, session_id)
            api.item_delete(item_id)
    finally:
        clients.close()


@pytest.fixture
def vsphere_update_session(imagestore_targets, vsphere_library_item):
    """Factory of ACTIVE update sessions; each is canceled and deleted after the test."""
    from pytest_imagestore.partial_vsphere import discard_session
    clients = _Clients(imagestore_targets)
    made = []

    def create(item_id=None, target=None):
        api = clients.get(target)
        if item_id is None:
            item_id = vsphere_library_item(target=target)["id"]
        library_id = (api.item_get(item_id) or {}).get("library_id")
        session_id = api.session_create(item_id)
        made.append((api, session_id))
        return {"id": session_id, "item_id": item_id, "library_id": library_id}

    yield create
    try:
        for api, session_id in reversed(made):
            discard_session(api, session_id)
    finally:
        clients.close()
