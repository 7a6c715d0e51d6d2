# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ZStack's hooks of the session modules (private): upload jobs as sessions, by session_id (the long job uuid) or image_id.

``upload_session_info`` by image_id lists the unfinished jobs (what GetUploadImageJobDetails lists); commit and absent
also see the finished ones this collection submitted (found by their mark), so a commit of a finished upload says so
and a purge reaches the image a failed job left. States: Waiting and Running -> active (complete once every byte is
in), Suspended -> suspended, Succeeded -> done, Failed -> failed, Canceling and Canceled -> canceled.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.imagestore.upload.plugins.module_utils._protocol import (
    ACTIVE, CANCELED, COMPLETE, DONE, FAILED, OPEN_STATES, SUSPENDED, Session,
)
from ansible_collections.imagestore.upload.plugins.module_utils._zstack_client import FINAL_STATES, job_error
from ansible_collections.imagestore.upload.plugins.module_utils._zstack_jobs import (
    check_image_id, check_job_uuid, image_sizes, job_image_id, job_image_uuid, parse_offset,
)

STATES = {"Waiting": ACTIVE, "Running": ACTIVE, "Suspended": SUSPENDED, "Succeeded": DONE, "Failed": FAILED,
          "Canceling": CANCELED, "Canceled": CANCELED}


class ZStackSessions:
    """Mixed into the ZStack protocol (which gives ``api`` and ``jobs``)."""

    def session_by_id(self, session_id):
        job_uuid = check_job_uuid(session_id)
        job = self.api.get_long_job(job_uuid)
        if job is None:
            return []
        image_id = job_image_id(job)
        detail = self.api.job_detail(image_id, job_uuid) if image_id and job.get("state") not in FINAL_STATES else None
        return [self._view(job, detail, image_id)]

    def sessions_at(self):
        image_id = check_image_id(self.params["image_id"])
        sessions = [self._view(None, d, image_id) for d in self.api.upload_job_details(image_id)]
        if self.ctx.operation in ("commit", "absent"):
            seen = set(s.id for s in sessions)
            sessions += [self._view(j, None, image_id) for j in self.jobs.of_image_id(image_id)
                         if j.get("uuid") not in seen and j.get("state") in FINAL_STATES]
        return sessions

    def _view(self, job, detail, image_id):
        """A job (and its details entry while unfinished) as a Session; ``session.view`` keeps what describe() shows."""
        job_uuid = (detail or {}).get("longJobUuid") or job["uuid"]
        if job is None:
            job = self.api.get_long_job(job_uuid) or {}
        raw = (detail or {}).get("longJobState") or job.get("state")
        image_uuid = (detail or {}).get("imageUuid") or job_image_uuid(job)
        image = self.api.get_image(image_uuid) if image_uuid else None
        sizes = image_sizes(image)
        size = sizes[0] if sizes else None
        offset = parse_offset(detail.get("offset")) if detail else None
        state = STATES.get(raw, ACTIVE)
        missing, extra = [], {}
        if state in (FAILED, CANCELED):
            size = None
        elif state in OPEN_STATES:
            if size and offset is not None and offset < size:
                missing = [(offset, size - 1)]
            elif size and offset is not None and state == ACTIVE:
                state = COMPLETE
            if not size:
                extra["incomplete"] = "nothing received yet" if not offset else "%d bytes received, the size is not known yet" % offset
        session = Session(job_uuid, state, raw_state=raw, size=size, missing=missing, raw=detail if detail is not None else job,
                          destination={"image_uuid": image_uuid, "name": (image or {}).get("name")}, **extra)
        session.view = {"image_id": image_id, "image_uuid": image_uuid, "offset": offset,
                        "upload_url": (detail or {}).get("imageUploadUrl"), "name": (image or {}).get("name"),
                        "image_status": (image or {}).get("status"), "error": job_error(job) if raw != "Succeeded" else None}
        session.image = image
        return session

    def describe(self, session):
        return dict(session.view)

    def complete(self, session):
        """Every byte is in: wait until the image is Ready and its job Succeeded."""
        self.api.wait_ready(session.view["image_uuid"], session.id)

    def removable(self, session, purge):
        if session.state in OPEN_STATES:
            return True
        return bool(purge) and session.state != DONE and session.image is not None

    def remove(self, session, purge):
        """Cancel an unfinished job (ZStack deletes its image); with ``purge`` delete and expunge the image a job that did not
        succeed left. The image of a Succeeded job is never touched."""
        removed, purged = False, []
        if session.state in OPEN_STATES:
            if not self.api.cancel_long_job(session.id):
                job = self.api.get_long_job(session.id)      # it ended meanwhile: keep a Succeeded job's image
                if (job or {}).get("state") == "Succeeded":
                    return {"removed": False, "purged": []}
            removed = True
        image_uuid = session.view["image_uuid"]
        if purge and image_uuid and self.jobs.purge_image(image_uuid):
            purged.append(image_uuid)
            removed = True
        return {"removed": removed, "purged": purged}
