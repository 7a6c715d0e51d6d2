# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""vSphere update sessions as the session modules see them, and ``image_upload state=absent`` (private).

A session is named by ``session_id`` or by ``library`` and ``item`` (every session of the item, the
ACTIVE one first). Its record lays the session's files end to end: ``size`` is the sum of their declared
sizes (when the server reports them all), a file READY counts whole, another its ``bytes_transferred``.
States: ACTIVE is ``active`` (``complete`` once every file is READY), DONE ``done``, ERROR ``failed``,
CANCELED ``canceled``; the server's word is ``raw_state``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.imagestore.upload.plugins.module_utils._errors import ApiError
from ansible_collections.imagestore.upload.plugins.module_utils._protocol import ACTIVE, CANCELED, COMPLETE, DONE, FAILED, Session
from ansible_collections.imagestore.upload.plugins.module_utils._vsphere_formats import (
    as_int, check_name, check_session_id, message_text, reported_digests,
)
from ansible_collections.imagestore.upload.plugins.module_utils._vsphere_sessions import (
    NOT_ALLOWED, RECEIVING, complete, sessions_of_item, validation_error, wait_done,
)

STATES = {"ACTIVE": ACTIVE, "DONE": DONE, "ERROR": FAILED, "CANCELED": CANCELED}


class VSphereManage(object):
    """The session-module hooks and ``state=absent`` (a mixin of the vSphere protocol: uses its client and lookups)."""

    # -- reading sessions ---------------------------------------------------------------------------
    def as_session(self, model):
        """The engine's Session of an update session model, with its files."""
        try:
            files = self.api.file_list(model["id"])
        except ApiError as exc:
            if exc.status != 404:
                raise
            files = []          # deleted meanwhile
        sizes = [as_int(f.get("size")) for f in files]
        size = sum(sizes) if files and None not in sizes else None
        missing, offset = [], 0
        for f, fsize in zip(files, sizes if size is not None else []):
            received = 0                      # a file waiting, or in ERROR (its bytes are not kept: it is sent again whole)
            if f.get("status") == "READY":
                received = fsize
            elif f.get("status") in RECEIVING:
                received = min(fsize, as_int(f.get("bytes_transferred")) or 0)
            if received < fsize:
                missing.append((offset + received, offset + fsize - 1))
            offset += fsize
        raw_state = model.get("state")
        state = STATES.get(raw_state, str(raw_state or "unknown").lower())
        if state == ACTIVE and files and all(f.get("status") == "READY" for f in files):
            state = COMPLETE
        return Session(model["id"], state, raw_state=raw_state, size=size, missing=missing, raw=model,
                       expires=model.get("expiration_time"), destination={"library_item_id": model.get("library_item_id")},
                       library_item_id=model.get("library_item_id"), client_progress=as_int(model.get("client_progress")),
                       error=message_text(model.get("error_message")) or None,
                       files=[{"name": f.get("name"), "size": as_int(f.get("size")), "status": str(f.get("status") or "").lower(),
                               "bytes_transferred": as_int(f.get("bytes_transferred")),
                               "checksum": next(iter(reported_digests(f).values()), None),
                               "error": message_text(f.get("error_message")) or None} for f in files])

    def describe(self, session):
        """Where the server reports no file sizes (vcsim), progress is the session's client_progress."""
        if session.size is None and session.state != DONE:
            return {"progress": float(session.extra.get("client_progress") or 0)}
        return {}

    def session_by_id(self, session_id):
        model = self.api.session_get(check_session_id(session_id))
        return [self.as_session(model)] if model is not None else []

    def sessions_at(self):
        library_id = self.library_id(check_name(self.params.get("library"), "library"))
        item_id = self.item_id(library_id, check_name(self.params.get("item"), "item"))
        if item_id is None:
            return []
        models = sorted(sessions_of_item(self.api, item_id), key=lambda m: (m.get("state") != "ACTIVE", m.get("id")))
        return [self.as_session(m) for m in models]

    # -- upload_session_commit ------------------------------------------------------------------------
    def complete(self, session):
        """Validate (naming missing and invalid files), complete, and wait until DONE."""
        validation = self.api.file_validate(session.id)
        if validation["has_errors"]:
            raise validation_error(session.id, validation)
        complete(self.api, session.id)
        wait_done(self.api, session.id, self.deadline)

    # -- upload_session_absent ------------------------------------------------------------------------
    def remove(self, session, purge):
        """Cancel an ACTIVE session, then delete it; {"removed", "canceled": [id]}."""
        canceled = []
        if session.raw_state == "ACTIVE":
            try:
                self.api.session_cancel(session.id)
                canceled.append(session.id)
            except ApiError as exc:
                if exc.status == 404:
                    return {"removed": False}
                if exc.code != NOT_ALLOWED:
                    raise
        return {"removed": self.api.session_delete(session.id), "canceled": canceled}

    # -- image_upload state=absent ----------------------------------------------------------------------
    def present(self, dest):
        """The item's file names ([] when there is no such item)."""
        if dest.item_id is None:
            return []
        return sorted(self.item_files(dest.item_id)) or ["no files (an empty item)"]

    def remove_content(self, dest, present):
        """Delete the item: its update sessions first (an ACTIVE one canceled), then the item with its files."""
        for model in sessions_of_item(self.api, dest.item_id):
            self.remove(Session(model["id"], STATES.get(model.get("state"), ACTIVE), raw_state=model.get("state")), False)
        self.api.item_delete(dest.item_id)
