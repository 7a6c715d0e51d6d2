"""vSphere Content Library fixtures: a library item and an update session, removed after the test.

Both work on the emulator (the default) or on a configured vCenter / vcsim (``imagestore_targets``),
and both take ``target=`` to use another ``Target`` (for example one pointing at a vcsim started by
the test session). The library is the target's ``library`` option (``images`` on the emulator).
They run the collection's own client in a child process (``pytest_imagestore.partial_run``), so the test
process never imports the collection (Ansible's collection loader, installed by pytest-ansible, must be the
first to import it there).

``vsphere_library_item(name=None, kind="file", target=None, library=None)``
    creates an item (a unique name by default) and returns ``{"id", "name", "library_id", "library"}``;
    after the test every update session of the item is canceled and deleted, then the item.
``vsphere_update_session(item_id=None, target=None)``
    opens an ACTIVE update session on ``item_id`` (a new item when omitted) and returns
    ``{"id", "item_id", "library_id"}``; after the test the session is canceled and deleted.
"""

import uuid

import pytest

from pytest_imagestore.partial import child, target_options


def _target(targets, target):
    return target if target is not None else targets["vsphere"]


def _cleanup(made, action):
    errors = []
    for request in reversed(made):
        try:
            child(action, request)
        except Exception as exc:  # keep cleaning the rest; report the first failure at the end
            errors.append(exc)
    if errors:
        raise errors[0]


@pytest.fixture
def vsphere_library_item(imagestore_targets):
    """Factory of library items in the target's library; each is deleted (sessions first) after the test."""
    made = []

    def create(name=None, kind="file", target=None, library=None):
        target = _target(imagestore_targets, target)
        options = target_options(target)
        item = child("vsphere_item", {"options": options, "name": name or "pytest-%s" % uuid.uuid4().hex[:12], "kind": kind,
                                      "library": library or target.options.get("library") or "images"})
        made.append({"options": options, "item_id": item["id"]})
        return item

    yield create
    _cleanup(made, "vsphere_remove")


@pytest.fixture
def vsphere_update_session(imagestore_targets, vsphere_library_item):
    """Factory of ACTIVE update sessions; each is canceled and deleted after the test."""
    made = []

    def create(item_id=None, target=None):
        if item_id is None:
            item_id = vsphere_library_item(target=target)["id"]
        options = target_options(_target(imagestore_targets, target))
        session = child("vsphere_session", {"options": options, "item_id": item_id})
        made.append({"options": options, "session_ids": [session["id"]]})
        return session

    yield create
    _cleanup(made, "vsphere_remove")
