# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""vSphere update sessions (private): finding, opening or joining, waiting on, ending them, keeping them alive.

An item has at most one ACTIVE update session. A run that finds one resumes it; a run whose create is
refused (``resource_busy``: a concurrent run opened one after this run looked) joins that run's session
and never ends it. Ending a session of our own is fail, cancel, delete, each step tolerating a session
already past it. Every wait is a ``poll_until`` on the run's deadline; the keep-alive thread pings on an
interval derived from the session's expiry and stops at the deadline.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.imagestore.upload.plugins.module_utils._errors import ApiError, ImageStoreError, TransportError
from ansible_collections.imagestore.upload.plugins.module_utils._vsphere_formats import as_int, message_text, parse_time
from ansible_collections.imagestore.upload.plugins.module_utils._wait import Ticker, poll_until

RECEIVING = ("TRANSFERRING", "VALIDATING")          # file states while some client's bytes are coming in
TRANSFER_STALL_SECONDS = 30.0
DONE_WAIT_DEFAULT = 600
KEEP_ALIVE_MAX_INTERVAL = 60.0
OPEN_ATTEMPTS = 3
NOT_ALLOWED = "not_allowed_in_current_state"


def sessions_of_item(api, item_id):
    """Models of every update session of the item (filtered here too: vcsim ignores the filter)."""
    found = []
    for session_id in api.session_list(item_id):
        model = api.session_get(session_id)
        if model is not None and model.get("library_item_id") == item_id:
            found.append(model)
    return found


def active_session(api, item_id):
    return next((s for s in sessions_of_item(api, item_id) if s.get("state") == "ACTIVE"), None)


def open_or_join(api, item_id):
    """(session model, joined): a new update session for the item, or, when the server refuses a second one
    (``resource_busy``: a concurrent run opened one after this run looked), that run's session, joined."""
    for attempt in range(OPEN_ATTEMPTS):
        try:
            session_id = api.session_create(item_id)
        except ApiError as exc:
            if exc.code != "resource_busy":
                raise
            model = active_session(api, item_id)
            if model is not None:
                return model, True
            if attempt == OPEN_ATTEMPTS - 1:
                raise
            continue          # that session ended in between: ask again
        return api.session_get(session_id) or {"id": session_id, "state": "ACTIVE", "library_item_id": item_id}, False
    raise ImageStoreError("could not open an update session for library item %s" % item_id)   # not reached


def ended(api, session_id):
    """Why the session can no longer take the upload: ``deleted``, ``DONE``, ``CANCELED``, ``ERROR: <reason>`` (idle-expired,
    or failed by someone); None while it is ACTIVE."""
    model = api.session_get(session_id)
    if model is None:
        return "deleted"
    state = model.get("state")
    if state in (None, "ACTIVE"):
        return None
    reason = message_text(model.get("error_message"))
    return "%s: %s" % (state, reason) if reason else state


def discard(api, session_id, reason):
    """Fail, cancel and delete an update session, each step tolerating a session already past it.

    Returns the steps done; raises ImageStoreError naming what failed when the session may still exist."""
    steps = (("failed", lambda: api.session_fail(session_id, reason[:1000])),
             ("canceled", lambda: api.session_cancel(session_id)),
             ("deleted", lambda: api.session_delete(session_id)))
    done, problems = [], []
    for step, call in steps:
        try:
            result = call()
            done.append(step if result is not False else "deleted")
            if result is False:
                break
        except ApiError as exc:
            if exc.status == 404:
                done.append("deleted")
                break
            if exc.code != NOT_ALLOWED:
                problems.append("%s: %s" % (step, exc.message))
        except ImageStoreError as exc:
            problems.append("%s: %s" % (step, exc.message))
            if isinstance(exc, TransportError):     # the server cannot be reached: the next steps would fail alike
                break
    if "deleted" not in done:
        raise ImageStoreError("update session %s could not be cleaned up (%s); it may still be ACTIVE"
                              % (session_id, "; ".join(problems) or "unknown state"))
    return done


def settle(api, session_id, name, deadline, stall_seconds=TRANSFER_STALL_SECONDS):
    """FileInfo of ``name`` once no transfer of it is going on (None when the session lacks it).

    A file TRANSFERRING (or VALIDATING) is being received from someone right now: wait while its
    ``bytes_transferred`` moves; one that has not moved for ``stall_seconds`` lost its sender and is taken over."""
    seen = {"bytes": None, "since": deadline.clock()}

    def done(info):
        if (info or {}).get("status") not in RECEIVING:
            return True
        moved, now = as_int(info.get("bytes_transferred")), deadline.clock()
        if moved != seen["bytes"]:
            seen.update(bytes=moved, since=now)
        return now - seen["since"] > stall_seconds

    return poll_until(lambda: api.file_get(session_id, name), done, deadline,
                      "waiting for another transfer of %s into update session %s to end" % (name, session_id),
                      limit=stall_seconds * 4)


def wait_done(api, session_id, deadline, deleted_ok=None):
    """Poll until the session is DONE; its model, or None when it was deleted meanwhile and ``deleted_ok()`` says the item
    holds the files (a run racing for the item deletes the DONE session it completed)."""
    def done(model):
        if model is None:
            if deleted_ok is not None and deleted_ok():
                return True
            raise ImageStoreError("update session %s disappeared while it was being completed" % session_id)
        state = model.get("state")
        if state in ("ERROR", "CANCELED"):
            raise ImageStoreError("update session %s ended %s instead of DONE: %s" % (
                session_id, state, message_text(model.get("error_message")) or "no reason given"))
        return state == "DONE"

    return poll_until(lambda: api.session_get(session_id), done, deadline,
                      "waiting for update session %s to be DONE" % session_id, limit=DONE_WAIT_DEFAULT)


def complete(api, session_id):
    """Complete the session; a complete whose answer was lost (then refused: the session is no longer ACTIVE) counts when
    the session is DONE after all."""
    try:
        api.session_complete(session_id)
    except ApiError as exc:
        if exc.code != NOT_ALLOWED or (api.session_get(session_id) or {}).get("state") != "DONE":
            raise


def validation_error(session_id, validation, retryable=False):
    invalid = ["%s (%s)" % (f.get("name"), message_text(f.get("error_message")) or "invalid") for f in validation["invalid_files"]]
    parts = []
    if validation["missing_files"]:
        parts.append("missing files: %s" % ", ".join(validation["missing_files"]))
    if invalid:
        parts.append("invalid files: %s" % "; ".join(invalid))
    advice = "; run image_upload again to send them" if validation["missing_files"] or invalid else ""
    reason = "; ".join(parts) or "the server reports errors"
    return ImageStoreError("update session %s cannot be completed: %s%s" % (session_id, reason, advice),
                           retryable=retryable,
                           details={"missing_files": validation["missing_files"],
                                    "invalid_files": [{"name": f.get("name"), "error": message_text(f.get("error_message"))}
                                                      for f in validation["invalid_files"]]})


class KeepAlive(Ticker):
    """A background thread that pings the API session and the update session (with ``client_progress``).

    ``progress()`` gives the percentage to report; it is only sent when it grew (the server refuses a
    client_progress that goes down). Errors are counted, never raised: a session that is really lost fails
    the upload's own next request. The thread stops when told to or at the deadline; ``wait(seconds)`` (default:
    the stop event's) is injectable, so tests run it without real time.
    """

    def __init__(self, api, session_id, interval, progress, deadline, start_progress=0, wait=None):
        super(KeepAlive, self).__init__(interval, name="vsphere-keep-alive", deadline=deadline, wait=wait)
        self.api = api
        self.session_id = session_id
        self.progress = progress
        self.reported = start_progress or 0
        self.pings = 0
        self.errors = []

    def tick(self):
        self.ping()

    def ping(self):
        try:
            self.api.ping()
            progress = min(100, max(0, int(self.progress())))
            if progress > self.reported:
                self.api.session_keep_alive(self.session_id, progress)
                self.reported = progress
            else:
                self.api.session_keep_alive(self.session_id)
            self.pings += 1
        except ImageStoreError as exc:
            self.errors.append(exc.message)

    @staticmethod
    def interval_for(session, now=None):
        """A third of the time the server gives the session, at most a minute, at least a second."""
        expires = parse_time((session or {}).get("expiration_time"))
        left = expires - (time.time() if now is None else now) if expires else None
        if not left or left <= 0:
            return KEEP_ALIVE_MAX_INTERVAL
        return max(1.0, min(KEEP_ALIVE_MAX_INTERVAL, left / 3.0))


class ProgressMeter:
    """Counts the bytes sent (``add(n)``, called by the request body after each piece) into a shared total, for
    client_progress; ``restart()`` takes back what an attempt that is repeated had counted."""

    def __init__(self, shared, lock):
        self.shared = shared
        self.lock = lock
        self.count = 0

    def restart(self):
        with self.lock:
            self.shared[0] -= self.count
        self.count = 0

    def add(self, n):
        self.count += n
        with self.lock:
            self.shared[0] += n
