# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ZStack on the engine (private): the hooks of image_upload for ZStack's resumable upload.

The session is the upload's long job (``session_id`` = its uuid); the unit is a slice of the job's grid (fixed by
the server from the first slice). docs/zstack.md tells the whole flow; what is decided here:

* identity is the file's MD5 (the default image_id, what ``md5Sum`` is checked against) and SHA-256, from one read;
  slices carry no X-SLICE-MD5 (optional for the receiver; the image's md5Sum, checked after Ready, covers every
  byte, and a slice digest would cost a third MD5 pass);
* a Ready image named ``name`` on the backup storage with this MD5 (or, without ``md5Sum``, whose upload job's
  mark names it) is "nothing to do"; otherwise the new image replaces the other Ready images of that name once it
  is Ready and verified (``replace: false`` refuses before anything is sent, naming them);
* a job is resumed only when its mark shows it was made for this content (``_zstack_jobs.py``); a Suspended one
  is resumed before its slices go (and again, at most MAX_RESUMES times, when the idle timer suspends it during
  the upload);
* slice answers: 406 counts as present (as sent when it answers a retry), 409 and 416 re-plan after a wait, a
  slice size the receiver names in a 400 replaces the guessed one, 400 ``SYS.1006`` re-reads the job (resumes it,
  or finds it Succeeded), 404 of an ended job starts a new one (SessionLost);
* the last slice finishes the upload: no commit; then the image must turn Ready with the file's size and MD5; a
  failed verification deletes and expunges the image (``abort``), so no VM can be made from it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import threading

from ansible_collections.imagestore.upload.plugins.module_utils._errors import (
    ApiError, BadInput, Conflict, ImageStoreError, SessionLost, VerificationError,
)
from ansible_collections.imagestore.upload.plugins.module_utils._protocol import (
    ACTIVE, COMPLETE, KEPT, REMOVED, SLICE, SUSPENDED, Protocol, Session, Stored, Verdict,
)
from ansible_collections.imagestore.upload.plugins.module_utils._ranges import complement, normalize
from ansible_collections.imagestore.upload.plugins.module_utils._zstack_client import (
    ZStackClient, SliceConflict, SliceGridError, classify, job_error, parse_error,
)
from ansible_collections.imagestore.upload.plugins.module_utils._zstack_jobs import (
    UploadJobs, check_image_id, check_name, image_options, image_sizes, job_mark, marks_content, on_storage, parse_offset,
    resolve_backup_storage, resume_slice_size,
)
from ansible_collections.imagestore.upload.plugins.module_utils._zstack_multipart import multipart_filename
from ansible_collections.imagestore.upload.plugins.module_utils._zstack_sessions import ZStackSessions

MiB = 1024 * 1024
DEFAULT_SLICE = 16 * MiB
MAX_GRID_CHANGES = 2
MAX_RESUMES = 3
_STR = dict(type="str")


class Dest:
    """An image_upload destination: image ``name`` on one backup storage, and what this run learns about it."""

    def __init__(self, name, storage, options=None, f=None):
        self.name = name
        self.storage = storage
        self.options = options or {}
        self.file = f
        self.images = []        # images of that name on the storage when the run began (not Deleted)
        self.match = None       # the Ready image that holds this file (nothing to do)
        self.match_how = None
        self.replaces = []      # the Ready images of that name this upload replaces
        self.replaced = []      # those removed
        self.session = None
        self.image = None       # the uploaded image, once Ready

    @property
    def ready(self):
        return [i for i in self.images if i.get("status") == "Ready"]


class SliceState:
    """What one run knows of its upload job's slices (beside the Session the engine sees)."""

    def __init__(self, image_id, image_uuid, url, offset, filename, suspended):
        self.image_id = image_id
        self.image_uuid = image_uuid
        self.url = url
        self.fresh = offset         # the offset the job reported last, until the next missing() reads it again
        self.filename = filename
        self.suspended = suspended  # found Suspended: resumed before the first slice goes
        self.known = []             # byte ranges the receiver took (200) or had (406) in this run
        self.present = 0            # slices answered 406
        self.resumes = 0
        self.grid_changes = 0
        self.busy = {}              # slice index -> 409 answers
        self.lock = threading.Lock()


class ZStack(ZStackSessions, Protocol):
    name = "zstack"
    unit = SLICE
    session_scope = "file"
    multi_file = False
    empty_files = "refuse"
    digests = ("md5", "sha256")
    options = {
        "name": _STR, "backup_storage": _STR, "format": _STR,
        "media_type": dict(type="str", choices=["RootVolumeTemplate", "ISO", "DataVolumeTemplate"]),
        "platform": dict(type="str", choices=["Linux", "Windows", "Other", "Paravirtualization", "WindowsVirtio"]),
        "image_id": _STR,
        "replace": dict(type="bool", default=True),
    }
    required = ("name", "backup_storage")
    selectors = {"image_id": _STR}
    selector_group = ("image_id",)
    absent_options = {"purge": dict(type="bool", default=False)}
    parse_error = staticmethod(parse_error)

    @staticmethod
    def store_full(status, code, message):
        """The backup storage has no room: its capacity check, or a receiver that ran out of space."""
        return "not enough capacity" in message or "No space left on device" in message
    classify = staticmethod(classify)

    def __init__(self, ctx):
        super(ZStack, self).__init__(ctx)
        self.api = ZStackClient(self.http, self.params.get("username"), self.params.get("password"), self.deadline)
        self.jobs = UploadJobs(self.api, self.deadline, self.warn, ctx.check_mode)

    def close(self):
        self.api.logout()

    # -- the destination and what it holds ----------------------------------------------------------
    def destination(self, files):
        name = check_name(self.params.get("name"))
        options = None
        if files:
            options = image_options(files[0].path, self.params)
            if self.params.get("image_id") is not None:
                check_image_id(self.params["image_id"])
        storage = resolve_backup_storage(self.api, self.params.get("backup_storage"))
        return Dest(name, storage, options, files[0] if files else None)

    def where(self, dest):
        text = "image %r%s on backup storage %s" % (dest.name, " (%s)" % dest.match["uuid"] if dest.match else "",
                                                    dest.storage.get("name") or dest.storage["uuid"])
        if dest.match or not dest.replaces:
            return text
        others = [i["uuid"] for i in dest.replaces]
        return text + " in place of image%s %s" % ("" if len(others) == 1 else "s", ", ".join(others))

    def stored(self, dest, files):
        dest.images = [i for i in self.api.find_by_name("images", dest.name)
                       if on_storage(i, dest.storage["uuid"]) and i.get("status") != "Deleted"]
        if not dest.images:
            return {}
        shown = (dest.ready or dest.images)[0]
        sizes = image_sizes(shown)
        md5 = (shown.get("md5Sum") or "").lower()
        return {files[0].name: Stored(files[0].name, sizes[0] if sizes else None, {"md5": md5} if md5 else {}, raw=shown)}

    def holds(self, dest, stored, f):
        """A Ready image of that name with this MD5 (or, without md5Sum, made by a job whose mark names this content) holds
        the file. Otherwise the upload replaces the Ready images of that name, unless replace=false refuses it here."""
        md5, image_id = f.digests["md5"], self._image_id(dest)
        match = how = None
        for image in dest.ready:
            server = (image.get("md5Sum") or "").lower()
            if f.size not in image_sizes(image):
                continue
            if server:
                how = "md5"
                if server == md5:
                    match = image
                    break
            elif marks_content(job_mark(self.jobs.finished_job(image["uuid"])), image_id, md5, f.size):
                match, how = image, "record"
                break
        others = [i for i in dest.ready if i is not match]
        if match is not None and not self.params.get("force"):
            dest.match, dest.match_how = match, how
            note = None
            if how == "record":
                note = "ZStack reports no MD5 for image %s: the MD5 its upload job recorded was compared" % match["uuid"]
            if others:
                dest.replaces = others if self.params.get("replace", True) else []
                note = "; ".join(n for n in (note, "%s image%s of that name: %s" % (
                    ("would remove the other" if self.check_mode else "removed the other") if dest.replaces else
                    "replace=false keeps the other", "" if len(others) == 1 else "s", ", ".join(i["uuid"] for i in others))) if n)
            return Verdict(True, how, note)
        dest.replaces = list(dest.ready)
        if dest.replaces and not self.params.get("replace", True):
            raise BadInput("replace is false and backup storage %s already holds %s named %r: %s; nothing was sent (replace=true, "
                           "the default, replaces %s once the new image is Ready; or give another name)" % (
                               dest.storage.get("name"), "an image" if len(dest.replaces) == 1 else "images", dest.name,
                               ", ".join("%s (%s, MD5 %s)" % (i["uuid"], i.get("status"), i.get("md5Sum") or "unknown")
                                         for i in dest.replaces), "it" if len(dest.replaces) == 1 else "them"))
        return Verdict(match is not None, how or "md5")

    def diff_state(self, dest, stored, files, after=False, todo=()):
        if not after:
            return image_state(dest.name, dest.ready)
        f = files[0]
        return {"name": dest.name, "image_uuid": None, "status": "Ready", "size": f.size, "md5": f.digests.get("md5"), "images": []}

    def result(self, dest, session_id):
        out = {"destination": {"image_uuid": None, "backup_storage_uuid": dest.storage["uuid"], "name": dest.name}}
        if dest.file is None:
            return out
        session, image = dest.session, dest.image or dest.match
        image_uuid = image["uuid"] if image else (session.upload.image_uuid if session else None)
        out["destination"]["image_uuid"] = image_uuid
        out.update(image_uuid=image_uuid, status=image.get("status") if image else (session.raw_state if session else None),
                   long_job_uuid=session.id if session else None, image_id=self._image_id(dest), md5=dest.file.digests.get("md5"),
                   format=dest.options.get("format"), media_type=dest.options.get("media_type"),
                   replaced=[i["uuid"] for i in (dest.replaced if dest.image else dest.replaces)])
        if dest.match is not None and session is None:
            job = self.jobs.finished_job(dest.match["uuid"])
            out["long_job_uuid"] = job.get("uuid") if job else None
        if session is not None:
            out.update(slice_size=session.grid, slices_already_present=session.upload.present)
        return out

    def finish(self, dest, files, changed):
        """The new image is Ready and verified (or the one found holds the file): the other Ready images of that name go.
        The diff shows what the name holds now."""
        kept = dest.image or dest.match
        if self.check_mode or kept is None or not (changed or dest.replaces):
            return {"changed": True} if self.check_mode and dest.replaces else {}
        before = image_state(dest.name, dest.ready)
        for image in dest.replaces:
            if image["uuid"] == kept["uuid"]:
                continue
            try:
                self.jobs.purge_image(image["uuid"])
            except ImageStoreError as exc:
                raise exc.with_message("image %r (%s) on backup storage %s holds the file, but removing image %s of the same name failed "
                                       "(%s); run again to remove it" % (dest.name, kept["uuid"], dest.storage.get("name"), image["uuid"],
                                                                         exc.message))
            dest.replaced.append(image)
        return {"changed": True, "replaced": [i["uuid"] for i in dest.replaced],
                "diff": {"before": before, "after": image_state(dest.name, [kept])}}

    # -- the session: the upload's long job -------------------------------------------------------------
    def _chunk(self):
        return int(self.params.get("chunk_size") or DEFAULT_SLICE)

    def _image_id(self, dest):
        return self.params.get("image_id") or dest.file.digests.get("md5")

    def resume_key(self, dest, files):
        return self._image_id(dest)

    def _session(self, dest, detail, f, found, owned=True):
        offset = parse_offset(detail.get("offset"))
        missing = [(offset, f.size - 1)] if offset < f.size else []
        raw = detail.get("longJobState")
        state = SUSPENDED if raw == "Suspended" else (ACTIVE if missing else COMPLETE)
        session = Session(detail["longJobUuid"], state, raw_state=raw, size=f.size, missing=missing, raw=detail, owned=owned,
                          found=found, grid=resume_slice_size(self._chunk(), offset, f.size) if found else self._chunk(),
                          destination={"image_uuid": detail.get("imageUuid"), "backup_storage_uuid": dest.storage["uuid"],
                                       "name": dest.name})
        session.upload = SliceState(self._image_id(dest), detail.get("imageUuid"), detail.get("imageUploadUrl"), offset, multipart_filename(f.path),
                                    raw == "Suspended")
        dest.session = session
        return session

    def find_session(self, dest, key, files):
        f = files[0]
        detail = self.jobs.existing(key, dest.name, dest.storage["uuid"], f.digests["md5"], f.size)
        return self._session(dest, detail, f, found=True) if detail is not None else None

    def open_session(self, dest, key, files):
        f = files[0]
        detail, joined = self.jobs.submit(key, dest.options, dest.storage["uuid"], f.digests["md5"], f.size)
        return self._session(dest, detail, f, found=joined, owned=not joined)

    def missing(self, session, files):
        """offset..size-1 as the job reports it, less what this run saw land; a Suspended job is resumed first."""
        f, st = files[0], session.upload
        offset, st.fresh = st.fresh, None
        if offset is not None and st.suspended and not self.check_mode:
            self.api.resume_long_job(session.id)
            st.suspended, session.state = False, ACTIVE
        if offset is None:
            offset = self._reread(session, st)
            if offset is None:
                return {f.name: []}
        with st.lock:
            have = list(st.known)
        if offset > 0:
            have.append((0, min(offset, f.size) - 1))
        return {f.name: complement(normalize(have), f.size)}

    def _reread(self, session, st):
        """The job's offset from the details call (None: the job Succeeded); resumes it when the idle timer suspended it."""
        detail = self.api.job_detail(st.image_id, session.id)
        if detail is None:
            job = self.api.get_long_job(session.id)
            if (job or {}).get("state") == "Succeeded":
                return None
            raise SessionLost("upload job %s ended while its slices were being sent: %s"
                              % (session.id, job_error(job) or (job or {}).get("state") or "the job is gone"),
                              reason=(job or {}).get("state") or "gone")
        if detail.get("longJobState") == "Suspended" and not self.check_mode:
            if st.resumes >= MAX_RESUMES:
                job = self.api.get_long_job(session.id)
                raise ImageStoreError("upload job %s was suspended again after %d resumes while its slices were being sent (%s)" % (
                    session.id, st.resumes, job_error(job) or "no reason given"), retryable=True,
                    details={"long_job_uuid": session.id, "image_uuid": st.image_uuid})
            self.api.resume_long_job(session.id)
            st.resumes += 1
        st.url = detail.get("imageUploadUrl") or st.url
        return parse_offset(detail.get("offset"))

    def send(self, session, f, start, end):
        st, grid = session.upload, session.grid
        index = start // grid
        try:
            outcome = self.api.send_slice(st.url, st.image_uuid, f.size, index, start, end, f.source, st.filename)
        except SliceConflict as exc:
            if exc.status == 409:          # another request is writing this slice now: give it time before re-planning
                with st.lock:
                    tries = st.busy[index] = st.busy.get(index, 0) + 1
                exc.wait = min(4.0, 0.5 * 2 ** (tries - 1))
            elif exc.status == 400 and (self.api.get_long_job(session.id) or {}).get("state") == "Succeeded":
                with st.lock:          # the job could only succeed with this slice: a retried attempt whose answer was lost landed
                    st.known.append((start, end))
                return end - start + 1 if exc.retried else 0
            raise
        except SliceGridError as exc:
            with st.lock:
                if exc.slice_size and exc.slice_size != grid and session.grid == grid and st.grid_changes < MAX_GRID_CHANGES:
                    session.grid = exc.slice_size
                    st.grid_changes += 1
                    st.fresh = None
                changed = session.grid != grid
            if changed:
                raise Conflict("%s; the job's slice size is %d bytes: re-planned" % (exc.message, session.grid), status=400)
            raise ImageStoreError("%s. The upload job's slice size is not %d bytes; run again with chunk_size set to the slice size the "
                                  "job was started with, or remove the job with upload_session_absent" % (exc.message, grid),
                                  status=400, code=exc.code, retryable=True)
        except ApiError as exc:
            if exc.status == 404 and (self.api.get_long_job(session.id) or {}).get("state") in (None, "Failed", "Canceled"):
                raise SessionLost(exc.message, reason="the upload job ended", status=404, code=exc.code)
            raise
        with st.lock:
            st.known.append((start, end))
            if outcome == "present":
                st.present += 1
        return end - start + 1 if outcome == "accepted" else 0

    def commit(self, session, dest, files):
        """Nothing to do: the last slice finishes the upload."""

    def wait(self, session, dest, files):
        dest.image = self.api.wait_ready(session.upload.image_uuid, session.id)[0]

    def verify(self, session, dest, files):
        """The image's size and the server's MD5 must be the file's (an image without MD5 gets one computed)."""
        f, image = files[0], dest.image
        if f.size not in image_sizes(image):
            raise VerificationError("verification failed: image %s is Ready with actualSize %s and size %s, the file has %d bytes"
                                    % (image.get("uuid"), image.get("actualSize"), image.get("size"), f.size))
        server = (image.get("md5Sum") or "").lower()
        if not server:
            try:
                image = self.api.calculate_image_hash(image["uuid"], dest.storage["uuid"]) or image
                server = (image.get("md5Sum") or "").lower()
            except ApiError as exc:
                self.warn("could not have ZStack compute the MD5 of image %s: %s" % (image.get("uuid"), exc.message))
        if not server:
            self.warn("ZStack reports no MD5 for image %s; only its size was verified" % image.get("uuid"))
        elif server != f.digests["md5"]:
            raise VerificationError("verification failed: ZStack computed MD5 %s for image %s (%r), the MD5 of %s is %s" % (
                server, image.get("uuid"), dest.name, f.path, f.digests["md5"]), details={"image_uuid": image.get("uuid")})
        dest.image = image

    def abort(self, session, dest, reason, keep):
        """Keep the job for a re-run (a Running one is suspended by ZStack's idle timer, and resumed by the next run), or
        cancel it and delete and expunge its image."""
        if keep:
            return KEPT
        if self.jobs.end(session.id, session.upload.image_uuid):
            return REMOVED, "image %s was deleted and expunged" % session.upload.image_uuid
        return REMOVED

    # -- image_upload state=absent ----------------------------------------------------------------------
    def present(self, dest):
        """The images named ``name`` on the backup storage (those already deleted, not expunged, too)."""
        return sorted(i["uuid"] for i in self.api.find_by_name("images", dest.name) if on_storage(i, dest.storage["uuid"]))

    def remove_content(self, dest, present):
        for image_uuid in present:
            for job in self.api.add_image_jobs(["targetResourceUuid=%s" % image_uuid]):
                if job.get("state") not in ("Succeeded", "Failed", "Canceled"):
                    self.api.cancel_long_job(job["uuid"])
            self.jobs.purge_image(image_uuid)


def image_state(name, images):
    """The diff's view of the Ready images of one name on the backup storage."""
    image = images[0] if images else {}
    sizes = image_sizes(image)
    return {"name": name, "image_uuid": image.get("uuid"), "status": image.get("status"), "size": sizes[0] if sizes else None,
            "md5": image.get("md5Sum"), "images": sorted(i["uuid"] for i in images)}
