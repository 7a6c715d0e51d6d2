# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ZStack upload jobs and images (private): the image's options, the content mark of a job, and the jobs of one image_id.

An upload is an ``APIAddImageMsg`` long job tagged ``uploadImage::<image_id>``. Tags cannot be queried, so the
AddImage description carries this collection's mark, ``imagestore.upload imageId=<id> md5=<hex> size=<n>``: the
content the job was submitted for. A job is resumed only when its mark names this file's MD5 and size: a job of
this collection for other content (an explicit ``image_id`` whose file was rewritten) is canceled and its image
deleted, and a job without the mark (another client's) is never resumed, since the bytes it received cannot be
checked. Never two jobs for one image_id: a submit whose answer was lost, or that ZStack refused because another
run submitted one meanwhile, takes over the job found for the image_id and this content instead.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re

from ansible_collections.imagestore.upload.plugins.module_utils._errors import BadInput, ImageStoreError, TransportError
from ansible_collections.imagestore.upload.plugins.module_utils._wait import Deadline, poll_until
from ansible_collections.imagestore.upload.plugins.module_utils._zstack_client import (
    FINAL_STATES, INVALID_ARGUMENT, NOT_FOUND, ZStackApiError,
)

DESCRIPTION_MARK = "imagestore.upload imageId="
EXTENSION_FORMATS = {".iso": "iso", ".qcow2": "qcow2", ".raw": "raw", ".img": "raw", ".vmdk": "vmdk"}
LOST_SUBMIT_WAIT = 5.0      # seconds to look for the job of a submit whose answer was lost (ZStack creates it asynchronously)
MIN_GRID = 64 * 1024
IMAGE_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,255}$")
ZSTACK_UUID_RE = re.compile(r"^[0-9a-f]{32}$")
FORMAT_RE = re.compile(r"^[a-z0-9]{1,32}$")
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


# -- options ---------------------------------------------------------------------------------------
def check_name(name):
    if not name or not str(name).strip() or len(name) > 255 or CONTROL_RE.search(name):
        raise BadInput("name %r is not a usable ZStack image name: give 1 to 255 printable characters" % (name,))
    return name


def check_image_id(value, option="image_id"):
    text = str(value)
    if not IMAGE_ID_RE.match(text):
        raise BadInput("%s %r is not usable as a ZStack upload id: give 1 to 255 letters, digits, '.', '_' or '-' "
                       "(the default, the MD5 of the file, is one)" % (option, text))
    return text


def check_job_uuid(value, option="session_id"):
    text = str(value).strip().lower().replace("-", "")
    if not ZSTACK_UUID_RE.match(text):
        raise BadInput("%s %r is not a ZStack long job uuid: give the 32 hexadecimal digits image_upload returned "
                       "as session_id (or look the job up by image_id)" % (option, value))
    return text


def image_options(src, params):
    """name, format, media_type and platform of the image, defaults from the file extension; checked."""
    name = check_name(params.get("name"))
    media_type = params.get("media_type")
    image_format = params.get("format")
    if image_format:
        image_format = image_format.strip().lower()
        if not FORMAT_RE.match(image_format):
            raise BadInput("format %r is not an image format: give qcow2, raw, vmdk, iso or another format ZStack knows"
                           % params.get("format"))
    elif media_type == "ISO":
        image_format = "iso"
    else:
        image_format = EXTENSION_FORMATS.get(os.path.splitext(src)[1].lower())
        if image_format is None:
            raise BadInput("format: cannot tell the image format of %s from its extension (known: .qcow2, .raw, .img, "
                           ".vmdk, .iso); give format (qcow2, raw, vmdk, iso, ...)" % src)
    if media_type is None:
        media_type = "ISO" if image_format == "iso" else "RootVolumeTemplate"
    if media_type == "ISO" and image_format != "iso":
        raise BadInput("format %s does not go with media_type ISO: ZStack keeps ISO images in format iso" % image_format)
    return {"name": name, "format": image_format, "media_type": media_type, "platform": params.get("platform") or "Linux"}


def content_mark(image_id, md5, size):
    """The AddImage description of an upload: the image_id and the content it was submitted for."""
    return "%s%s md5=%s size=%d" % (DESCRIPTION_MARK, image_id, md5, size)


def add_image_params(options, storage_uuid, image_id, md5, size):
    """The APIAddImageMsg parameters (the long job's ``jobData``) of an upload."""
    return {"name": options["name"], "url": "upload://%s" % options["name"], "mediaType": options["media_type"],
            "format": options["format"], "platform": options["platform"], "backupStorageUuids": [storage_uuid],
            "description": content_mark(image_id, md5, size)}


# -- what jobs and images say ---------------------------------------------------------------------------
def job_data(job):
    try:
        data = json.loads((job or {}).get("jobData") or "")
    except (TypeError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def job_mark(job):
    """This collection's mark of a long job: {"image_id", "md5" (None in marks of older versions), "size"}, or None."""
    description = job_data(job).get("description") or ""
    words = description[len(DESCRIPTION_MARK):].split() if description.startswith(DESCRIPTION_MARK) else []
    if not words:
        return None
    mark = {"image_id": words[0], "md5": None, "size": None}
    for word in words[1:]:
        key, _sep, value = word.partition("=")
        if key == "md5":
            mark["md5"] = value.lower()
        elif key == "size" and value.isdigit():
            mark["size"] = int(value)
    return mark


def job_image_id(job):
    return (job_mark(job) or {}).get("image_id")


def job_image_uuid(job):
    return (job or {}).get("targetResourceUuid") or job_data(job).get("resourceUuid")


def marks_content(mark, image_id, md5, size):
    """Whether a job's mark shows it was made for this content (a mark without MD5, of an older version, when the
    image_id is the file's MD5, as it is by default)."""
    if mark is None:
        return False
    if mark.get("md5"):
        return mark["md5"] == md5 and mark.get("size") in (None, size)
    return image_id == md5


def parse_offset(value):
    """The details call's ``offset`` (a long; the docs' example writes it as a double) as an int."""
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return 0


def image_sizes(image):
    """The byte counts an image inventory reports (``actualSize``: the file; ``size``: virtual size for qcow2)."""
    sizes = []
    for key in ("actualSize", "size"):
        value = (image or {}).get(key)
        if isinstance(value, (int, float)) and value > 0:
            sizes.append(int(value))
    return sizes


def on_storage(image, storage_uuid):
    return any(ref.get("backupStorageUuid") == storage_uuid for ref in (image or {}).get("backupStorageRefs") or [])


def resume_slice_size(chunk_size, offset, size):
    """The slice size to use for a job whose first ``offset`` bytes are in (the server fixed its size from the first slice).

    The details call does not say the size, but its offset is a whole number of slices: ``chunk_size`` when it
    divides the offset; otherwise the largest power of two that divides it (the console and this collection slice
    in powers of two), or the offset itself when no power of two from 64 KiB does.
    """
    if offset <= 0 or offset >= size or offset % chunk_size == 0:
        return chunk_size
    power = offset & -offset
    if power >= MIN_GRID:
        return power
    return offset


def resolve_backup_storage(api, wanted):
    """The backup storage named ``wanted`` (name or uuid); it must be Connected and Enabled."""
    wanted = (wanted or "").strip()
    if not wanted:
        raise BadInput("backup_storage must be the name or uuid of a ZStack backup storage")
    found = []
    if ZSTACK_UUID_RE.match(wanted.lower()):
        found = [s for s in [api.get_backup_storage(wanted.lower())] if s]
    if not found:
        found = api.find_by_name("backup-storage", wanted)
    if not found:
        names = sorted(set(s.get("name") or s.get("uuid") for s in api.list_backup_storage()))
        raise BadInput("backup_storage %r is not a backup storage of this ZStack: give the name or uuid of one of: %s"
                       % (wanted, ", ".join(names) or "(none; add a backup storage first)"))
    if len(found) > 1:
        raise BadInput("backup_storage %r names %d backup storages (uuids %s): give the uuid of the one to use"
                       % (wanted, len(found), ", ".join(sorted(s.get("uuid") for s in found))))
    storage = found[0]
    if storage.get("status") != "Connected" or storage.get("state", "Enabled") != "Enabled":
        raise ImageStoreError("backup_storage %r (uuid %s) is %s and %s: ZStack adds images only to a Connected, Enabled backup "
                              "storage; reconnect or enable it first" % (wanted, storage.get("uuid"), storage.get("status"), storage.get("state")),
                              code="SYS.1006")
    return storage


class UploadJobs:
    """Finding, judging, submitting and ending the upload jobs of one image_id."""

    def __init__(self, api, deadline, warn, check_mode=False):
        self.api = api
        self.deadline = deadline
        self.warn = warn
        self.check_mode = check_mode

    def of_image_id(self, image_id):
        """Every AddImage long job this collection submitted for ``image_id`` (found by its mark)."""
        jobs = self.api.add_image_jobs(["jobData~=%%%s%s%%" % (DESCRIPTION_MARK, image_id)])
        return [j for j in jobs if job_image_id(j) == image_id]

    def finished_job(self, image_uuid):
        """The Succeeded AddImage job that made ``image_uuid``, or None."""
        found = self.api.add_image_jobs(["targetResourceUuid=%s" % image_uuid, "state=Succeeded"])
        return found[0] if found else None

    # -- the job to resume ------------------------------------------------------------------------
    def existing(self, image_id, name, storage_uuid, md5, size):
        """The details entry of the unfinished job to resume for this file (image ``name`` on the storage), or None.

        A job of this collection for other content is canceled and its image deleted (in check mode only said); a job
        for ``image_id`` that uploads another image, or one without this collection's mark, is an error naming it.
        """
        mine, stale, unmarked, foreign = [], [], [], []
        for detail in self.api.upload_job_details(image_id):
            image = self.api.get_image(detail["imageUuid"]) if detail.get("imageUuid") else None
            if image is None or image.get("name") != name or not on_storage(image, storage_uuid):
                foreign.append((detail, image))
                continue
            mark = job_mark(self.api.get_long_job(detail.get("longJobUuid") or "") or {})
            if mark is None or mark["image_id"] != image_id:
                unmarked.append(detail)
            elif marks_content(mark, image_id, md5, size):
                mine.append(detail)
            else:
                stale.append((detail, mark))
        if not mine and unmarked:
            detail = unmarked[0]
            raise ImageStoreError("upload job %s (%s) for image_id %s was not submitted by imagestore.upload (its description has no "
                                  "'%s' mark), so the bytes it received cannot be checked against src and it is not resumed; "
                                  "remove it with imagestore.upload.upload_session_absent, or give another image_id"
                                  % (detail.get("longJobUuid"), detail.get("longJobState"), image_id, DESCRIPTION_MARK.strip()))
        if not mine and foreign:
            detail, image = foreign[0]
            raise ImageStoreError("image_id %s is in use by upload job %s (%s), which uploads %s; give another image_id, or remove "
                                  "that job with upload_session_absent" % (
                                      image_id, detail.get("longJobUuid"), detail.get("longJobState"),
                                      "image %r to backup storage %s" % (image.get("name"), ", ".join(
                                          r.get("backupStorageUuid") for r in image.get("backupStorageRefs") or []))
                                      if image else "an image that no longer exists"))
        for detail, mark in stale:
            self._discard(detail, mark, image_id, md5)
        if not mine:
            return None
        rank = {"Running": 0, "Suspended": 1}
        mine.sort(key=lambda d: (rank.get(d.get("longJobState"), 2), -parse_offset(d.get("offset"))))
        chosen = mine[0]
        if chosen.get("longJobState") not in rank:
            raise ImageStoreError("upload job %s for image_id %s is %s; run again once ZStack has finished with it"
                                  % (chosen.get("longJobUuid"), image_id, chosen.get("longJobState")), retryable=True)
        if len(mine) > 1:
            self.warn("%d unfinished upload jobs carry image_id %s (%s); resuming %s" % (
                len(mine), image_id, ", ".join(d.get("longJobUuid") for d in mine), chosen.get("longJobUuid")))
        return chosen

    def _discard(self, detail, mark, image_id, md5):
        """A job of this collection for other content under this image_id: its bytes are not this file's."""
        job_uuid, image_uuid = detail.get("longJobUuid"), detail.get("imageUuid")
        what = "upload job %s for image_id %s was submitted for other content (%s; src has MD5 %s) and holds %d bytes of it" % (
            job_uuid, image_id, "MD5 %s" % mark["md5"] if mark.get("md5") else "its MD5 is not recorded", md5,
            parse_offset(detail.get("offset")))
        if self.check_mode:
            self.warn("%s: a real run cancels it, deletes and expunges its image %s and starts a new upload job" % (what, image_uuid))
            return
        self.end(job_uuid, image_uuid)
        self.warn("%s: it was canceled, its image %s deleted and expunged, and a new upload job started" % (what, image_uuid))

    # -- submitting -----------------------------------------------------------------------------------
    def submit(self, image_id, options, storage_uuid, md5, size):
        """Submit the upload job and wait for it to run: (its details entry, True when another run's job was joined).

        Never a second job for one image_id: when the submit's answer is lost the job may exist, and when ZStack refuses
        the submit (SYS.1007) another run may have submitted one since the details call; either way the unfinished job
        this collection submitted for the image_id and this content (same name, same backup storage) is taken over.
        """
        try:
            job = self.api.submit_add_image(image_id, add_image_params(options, storage_uuid, image_id, md5, size))
        except TransportError as exc:
            found = self.submitted_job(image_id, options["name"], storage_uuid, md5, LOST_SUBMIT_WAIT)
            if found is None:
                raise TransportError("%s; no upload job for image_id %s appeared on ZStack within %d seconds: run again (a job that "
                                     "appears later is found and resumed, none is submitted twice)" % (exc.message, image_id, LOST_SUBMIT_WAIT),
                                     status=exc.status, code=exc.code, retryable=True)
            return self.started_detail(image_id, found["uuid"]), False
        except ZStackApiError as exc:
            if exc.code != INVALID_ARGUMENT:
                raise
            found = self.submitted_job(image_id, options["name"], storage_uuid, md5)
            if found is None:
                raise
            self.warn("upload job %s for image_id %s was submitted by another run meanwhile; this run joins it" % (found["uuid"], image_id))
            return self.started_detail(image_id, found["uuid"]), True
        return self.started_detail(image_id, job["uuid"]), False

    def submitted_job(self, image_id, name, storage_uuid, md5, wait=0):
        """The unfinished job this collection submitted for ``image_id`` and this content, uploading ``name`` to the storage,
        or None; ``wait``: seconds to keep looking (ZStack creates a long job after it has answered the submit)."""
        own = Deadline(wait, clock=self.deadline.clock)

        def find():
            for job in self.of_image_id(image_id):
                data, mark = job_data(job), job_mark(job)
                if job.get("state") not in FINAL_STATES and data.get("name") == name and (mark or {}).get("md5") == md5 \
                        and storage_uuid in (data.get("backupStorageUuids") or []):
                    return job
            return None

        return poll_until(find, lambda job: job is not None or not wait or own.expired(), self.deadline,
                          "looking for the upload job of image_id %s" % image_id)

    def started_detail(self, image_id, job_uuid):
        """Wait for a new job to run, then its details entry (the upload URL and offset)."""
        job = self.api.wait_long_job_started(job_uuid)
        detail = self.api.job_detail(image_id, job_uuid)
        if detail is not None:
            return detail
        try:
            image = json.loads(job.get("jobResult") or "").get("inventory") or {}
        except (TypeError, ValueError, AttributeError):
            image = {}
        refs = image.get("backupStorageRefs") or [{}]
        if not image.get("uuid") or not refs[0].get("installPath"):
            raise ImageStoreError("upload job %s is %s but ZStack gives no upload URL for it (GetUploadImageJobDetails does not "
                                  "list it and its jobResult has no image)" % (job_uuid, job.get("state")))
        return {"longJobUuid": job_uuid, "longJobState": job.get("state"), "imageUuid": image["uuid"],
                "imageUploadUrl": refs[0]["installPath"], "offset": 0}

    # -- ending ----------------------------------------------------------------------------------------
    def end(self, job_uuid, image_uuid):
        """Cancel the job (when unfinished), then delete and expunge its image; True when an image was removed."""
        if job_uuid:
            self.api.cancel_long_job(job_uuid)
        return bool(image_uuid) and self.purge_image(image_uuid)

    def purge_image(self, image_uuid):
        """Delete (Permissive) and expunge an image; False when it is gone already."""
        image = self.api.get_image(image_uuid)
        if image is None:
            return False
        storages = [r.get("backupStorageUuid") for r in image.get("backupStorageRefs") or [] if r.get("backupStorageUuid")]
        try:
            if image.get("status") != "Deleted":
                self.api.delete_image(image_uuid)
            self.api.expunge_image(image_uuid, storages)
        except ZStackApiError as exc:
            if exc.code != NOT_FOUND:
                raise
        return True
