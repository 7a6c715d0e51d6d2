"""ZStack state: the seeded backup storage, sessions, api-jobs, images and long jobs (``state.json``), the
image data files (``images/<uuid>.img``), and the lazy clock that moves long jobs on.

See ``zstack.py`` for the sources each rule follows (UploadImageTracker, LongJobManagerImpl).
"""

import json
import os
import time

from imagestore_emulator.httpd import log_line
from imagestore_emulator.storage import is_disk_full, write_json_atomic
from imagestore_emulator.zstack_wire import (
    API_JOB_TTL, BACKUP_STORAGE_CAPACITY, BACKUP_STORAGE_NAME, BACKUP_STORAGE_UUID, BASE_URL_TOKEN, STAGE_SECONDS, UPLOAD_PATH, error_code, timestamp)


class ZStackState:
    """The state half of ``ZStackAPI`` (mixed into it); callers hold ``self._lock``."""

    @staticmethod
    def _zero_stats():
        return {"slice_requests": 0, "slice_bytes": 0, "rejected_slices": 0, "logins": 0, "logouts": 0, "polls": 0}

    @staticmethod
    def _seed():
        now = timestamp()
        storage = {
            "uuid": BACKUP_STORAGE_UUID, "name": BACKUP_STORAGE_NAME, "description": "image store of the emulator", "url": "/zstack_bs",
            "hostname": "127.0.0.1", "username": "root", "sshPort": 22, "type": "ImageStoreBackupStorage", "state": "Enabled",
            "status": "Connected", "totalCapacity": BACKUP_STORAGE_CAPACITY, "availableCapacity": BACKUP_STORAGE_CAPACITY,
            "attachedZoneUuids": [], "createDate": now, "lastOpDate": now,
        }
        return {"backup_storage": {BACKUP_STORAGE_UUID: storage}, "sessions": {}, "api_jobs": {}, "images": {}, "jobs": {}, "next_ref_id": 1}

    def _save(self):
        """Persist the state. A full disk does not fail the API (a real management server's database is not on the
        backup storage): the state stays in memory, and the failure is logged once per call."""
        try:
            write_json_atomic(self._state_path, self._state)
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            log_line("zstack: state.json not written (%s); the state is kept in memory" % (exc.strerror or exc))

    def _images_dir(self):
        return os.path.join(self.data_dir, "images")

    def _data_path(self, image_uuid):
        return os.path.join(self._images_dir(), image_uuid + ".img")

    def _tick(self):
        """Lazy clock: expire sessions and api-jobs, move long jobs on, apply the idle limits. True if state changed."""
        now = time.time()
        changed = False
        for table, alive in (("sessions", lambda s: s["expires"] > now), ("api_jobs", lambda j: now - j["created"] < API_JOB_TTL)):
            for key in [k for k, v in self._state[table].items() if not alive(v)]:
                del self._state[table][key]
                changed = True
        idle_limit = float(self.config.get("zstack_idle_seconds", 30))
        for job_uuid, job in self._state["jobs"].items():
            changed = self._advance(job_uuid, job, now, idle_limit) or changed
        return changed

    def _advance(self, job_uuid, job, now, idle_limit):
        inventory = job["inventory"]
        if inventory["state"] == "Waiting" and now - job["stage_at"] >= STAGE_SECONDS:
            self._start_tracking(job, now)
            return True
        if inventory["state"] != "Running":
            return False
        image = self._state["images"][job["image_uuid"]]
        if inventory["jobResult"] is None and now - job["stage_at"] >= STAGE_SECONDS:
            self._set_job(job, jobResult=self._event_json(image))
            return True
        upload = job["upload"]
        if self._inflight.get(job["image_uuid"]) or self._complete(upload) or now - upload["last_activity"] <= idle_limit:
            return False
        if upload["received"]:
            self._suspend(job_uuid, job, "uploading has been inactive more than %s sec" % idle_limit)
        else:
            self._finish(job, "Failed", error_code("SYS.1006", "upload session expired"))
            self._remove_image(image["uuid"])
        return True

    # ------------------------------------------------------------ long jobs

    def _start_tracking(self, job, now):
        """Waiting -> Running: the image appears, Downloading, with the upload URL as install path."""
        params = job["params"]
        image_uuid = job["image_uuid"]
        created = timestamp(now)
        refs = []
        for storage_uuid in params["backupStorageUuids"]:
            refs.append({"id": self._state["next_ref_id"], "imageUuid": image_uuid, "backupStorageUuid": storage_uuid,
                         "installPath": BASE_URL_TOKEN + UPLOAD_PATH, "status": "Downloading", "exportMd5Sum": None,
                         "exportUrl": None, "createDate": created, "lastOpDate": created})
            self._state["next_ref_id"] += 1
        self._state["images"][image_uuid] = {
            "uuid": image_uuid, "name": params["name"], "description": params.get("description"), "state": "Enabled",
            "status": "Downloading", "size": 0, "actualSize": 0, "md5Sum": None, "url": params["url"],
            "mediaType": params["mediaType"], "guestOsType": params.get("guestOsType"), "type": "zstack",
            "platform": params["platform"], "architecture": params["architecture"], "format": params["format"],
            "system": False, "virtio": params.get("virtio", True), "createDate": created, "lastOpDate": created,
            "backupStorageRefs": refs, "systemTags": [],
        }
        self._set_job(job, state="Running", targetResourceUuid=image_uuid)
        job["stage_at"] = now
        job["upload"]["last_activity"] = now

    @staticmethod
    def _set_job(job, **fields):
        job["inventory"].update(fields, lastOpDate=timestamp())

    @staticmethod
    def _event_json(image):
        """jobResult of a tracked or finished AddImage long job: the JSON text of its APIAddImageEvent."""
        return json.dumps({"inventory": image, "success": True})

    def _finish(self, job, state, error=None):
        """Move a long job to a final state; ``error`` becomes its jobResult."""
        self._digests.pop(job["inventory"]["uuid"], None)
        fields = {"state": state, "executeTime": max(1, int(time.time() - job["created"]))}
        if error is not None:
            fields["jobResult"] = json.dumps(error)
        self._set_job(job, **fields)

    def _suspend(self, job_uuid, job, details):
        error = error_code("LONG_JOB.1002", "some error interrupt long job[uuid:%s], analysis the cause to fix it and resume long job"
                           " if you want to continue." % job_uuid, error_code("IMG.1001", details))
        self._set_job(job, state="Suspended", jobResult=json.dumps(error))

    def _remove_image(self, image_uuid):
        """Delete an image directly: record and data file gone."""
        self._state["images"].pop(image_uuid, None)
        try:
            os.unlink(self._data_path(image_uuid))
        except FileNotFoundError:
            pass

    def _job_of_image(self, image_uuid):
        return next(((u, j) for u, j in self._state["jobs"].items() if j["image_uuid"] == image_uuid), (None, None))

    @staticmethod
    def _prefix(upload):
        """The contiguous, slice-aligned number of bytes received from offset 0."""
        count = 0
        for index in upload["received"]:
            if index != count:
                break
            count += 1
        return min(count * upload["slice_size"], upload["total"]) if count else 0

    def _complete(self, upload):
        return upload["total"] is not None and self._prefix(upload) == upload["total"]
