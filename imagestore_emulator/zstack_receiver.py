"""The image-store slice receiver (``POST /imagestore/upload``): the slice rules, streaming a slice to its
offset, recording it, and the whole-image MD5 advanced while the upload goes on.

The receiver is closed source; its rules are the brief's (see ``_slice_rules``). The data file grows with
the slices written into it; it is never created at the declared size.
"""

import bisect
import hashlib
import os
import re
import threading
import time

from imagestore_emulator.wire import COPY_BLOCK, Response
from imagestore_emulator.zstack_multipart import MultipartError, MultipartReader, SliceSink, multipart_boundary
from imagestore_emulator.storage import is_disk_full
from imagestore_emulator.zstack_wire import (
    BACKUP_STORAGE_NAME, BACKUP_STORAGE_UUID, CONTENT_RANGE_RE, UPLOAD_PATH, SliceRejected, parse_md5, timestamp)


class PrefixDigest:
    """MD5 of the first ``offset`` bytes of one long job's data file, advanced over the received slices 0, 1, 2...
    while the upload goes on, so that ``_finalize`` only digests what is left. In memory only (a restarted emulator
    digests from 0) and tied to one job incarnation: ``job`` is the job dict it was made for."""

    def __init__(self, job):
        self.job = job
        self.md5 = hashlib.md5()
        self.offset = 0
        self.lock = threading.Lock()        # held by the one thread advancing it



class SliceReceiver:
    """The slice receiver (mixed into ``ZStackAPI``)."""

    def _receive_slice(self, request):
        if request.path != UPLOAD_PATH:
            return Response.text("no such path: %s" % request.path, 404)
        if request.method != "POST":
            return Response.text("The method[%s] is not allowed for the path[%s]" % (request.method, request.path), 405)
        with self._lock:
            self._stats["slice_requests"] += 1
        try:
            try:
                length = self._store_slice(request)
            except OSError as exc:
                if not is_disk_full(exc):
                    raise
                raise SliceRejected(500, "SYS.1006", "the backup storage[uuid:%s, name:%s] has not enough capacity to store the"
                                    " slice: %s" % (BACKUP_STORAGE_UUID, BACKUP_STORAGE_NAME, exc.strerror or exc)) from None
        except SliceRejected as exc:
            with self._lock:
                self._stats["rejected_slices"] += 1
            return Response.json(exc.body, exc.status)
        with self._lock:
            self._stats["slice_bytes"] += length
        return Response.empty(200)

    @staticmethod
    def _slice_headers(request):
        """(image uuid, total, offset, size, index, md5 or None); a request without X-SLICE-* is one whole-file slice."""
        def number(name, default=None):
            value = request.header(name)
            if value is None and default is not None:
                return default
            if value is None or not re.fullmatch(r"[0-9]+", value.strip()):
                raise SliceRejected(400, "SYS.1007", "header %s must be a non-negative integer, got %r" % (name, value))
            return int(value)

        image_uuid = request.header("X-IMAGE-UUID")
        if not image_uuid:
            raise SliceRejected(400, "SYS.1007", "header X-IMAGE-UUID is missing")
        total = number("X-IMAGE-SIZE")
        present = [request.header(h) is not None for h in ("X-SLICE-OFFSET", "X-SLICE-SIZE", "X-SLICE-INDEX")]
        if any(present) and not all(present):
            raise SliceRejected(400, "SYS.1007", "X-SLICE-OFFSET, X-SLICE-SIZE and X-SLICE-INDEX go together")
        offset, size, index = number("X-SLICE-OFFSET", 0), number("X-SLICE-SIZE", total), number("X-SLICE-INDEX", 0)
        digest = request.header("X-SLICE-MD5") or request.header("Content-MD5")
        try:
            digest = parse_md5(digest) if digest else None
        except ValueError as exc:
            raise SliceRejected(400, "SYS.1007", str(exc))
        return image_uuid.strip(), total, offset, size, index, digest

    def _slice_rules(self, upload, request, total, offset, size, index):
        """Check one slice against its upload: the rules of the brief, since the real receiver is closed source.

        * X-IMAGE-SIZE is fixed by the first slice; the slice size too: by a slice of index 0 its size,
          by any other slice offset / index (so the short last slice may come first); only the last
          slice may be shorter; offset must be index * slice size (all 400).
        * Any slice-aligned offset below the size is accepted, in any order (parallel senders); the
          offset reported by GetUploadImageJobDetails is the contiguous prefix.
        * Content-Range (optional) must say the same as X-SLICE-OFFSET/SIZE/X-IMAGE-SIZE: 416 with serverOffset.
        * A slice already received: 406; the same slice being written by another request now: 409.
        Returns the upload's slice size (derived from this slice when it is the first).
        """
        content_range = request.header("Content-Range")
        if content_range is not None:
            match = CONTENT_RANGE_RE.fullmatch(content_range.strip())
            if not match or (int(match.group(1)), int(match.group(2)) + 1) != (offset, offset + size) \
                    or match.group(3) not in ("*", str(total)):
                raise SliceRejected(416, "SYS.1007", "Content-Range %r disagrees with the slice [offset %d, size %d] of %d bytes"
                                    % (content_range, offset, size, total), server_offset=self._prefix(upload))
        limit = self.max_file_size()
        if limit and total > limit:
            raise SliceRejected(400, "SYS.1006", "cannot reserve %d on the backup storage[uuid:%s], it only has %d available"
                                % (total, BACKUP_STORAGE_UUID, limit))
        if total <= 0 or size <= 0 or offset + size > total:
            raise SliceRejected(400, "SYS.1007", "slice [offset %d, size %d] does not fit an image of %d bytes" % (offset, size, total))
        if upload["total"] is not None and total != upload["total"]:
            raise SliceRejected(400, "SYS.1007", "X-IMAGE-SIZE %d differs from the %d bytes the first slice declared" % (total, upload["total"]))
        slice_size = upload["slice_size"]
        if slice_size is None:
            slice_size = size if index == 0 else offset // index
        if slice_size <= 0 or offset != index * slice_size:
            raise SliceRejected(400, "SYS.1007", "X-SLICE-OFFSET %d is not X-SLICE-INDEX %d times the slice size %d" % (offset, index, slice_size))
        if size != slice_size and not (offset + size == total and size < slice_size):
            raise SliceRejected(400, "SYS.1007", "every slice but the last must be %d bytes, got %d" % (slice_size, size))
        if index in upload["received"]:
            raise SliceRejected(406, "SYS.1006", "slice %d is already present" % index)
        return slice_size

    def _reserve_slice(self, request, image_uuid, total, offset, size, index):
        """Under the lock: validate the slice, fix the upload geometry, mark the slice in flight; return the open data file."""
        self._tick()
        image = self._state["images"].get(image_uuid)
        if image is None:
            raise SliceRejected(404, "SYS.1003", "image[uuid:%s] not found" % image_uuid)
        job_uuid, job = self._job_of_image(image_uuid)
        if job is None or job["inventory"]["state"] != "Running" or image["status"] != "Downloading":
            state = job["inventory"]["state"] if job else "none"
            raise SliceRejected(400, "SYS.1006", "image[uuid:%s] is %s and its upload job is %s: nothing is being uploaded"
                                % (image_uuid, image["status"], state))
        upload = job["upload"]
        slice_size = self._slice_rules(upload, request, total, offset, size, index)
        inflight = self._inflight.setdefault(image_uuid, set())
        if index in inflight:
            raise SliceRejected(409, "SYS.1006", "slice %d is being received by another request" % index, server_offset=self._prefix(upload))
        path = self._data_path(image_uuid)
        if upload["total"] is None or not os.path.exists(path):
            open(path, "wb").close()        # grows with the slices written at their offsets, never to a declared size
            self._digests.pop(job_uuid, None)       # a new file: nothing of it is digested yet
        fh = open(path, "r+b")
        fixed = upload["total"] is None
        upload["total"], upload["slice_size"] = total, slice_size
        upload["last_activity"] = time.time()
        inflight.add(index)
        if fixed:
            self._save()        # the first slice fixes the geometry; later ones are saved once, when recorded
        return fh, job_uuid, job

    def _release_slice(self, image_uuid, job_uuid, job, index, accepted):
        """Under the lock: end the slice's flight; record it when accepted and the job still wants it."""
        inflight = self._inflight.get(image_uuid, set())
        inflight.discard(index)
        if not inflight:
            self._inflight.pop(image_uuid, None)
        if self._state["jobs"].get(job_uuid) is not job:
            return False
        upload = job["upload"]
        upload["last_activity"] = time.time()
        if accepted and job["inventory"]["state"] == "Running" and index not in upload["received"]:
            bisect.insort(upload["received"], index)
            self._state["images"][image_uuid]["actualSize"] = upload["total"]
            if self._complete(upload):
                self._start_finalize(job_uuid, job)
            else:
                self._start_hashing(job_uuid, job)
        elif not upload["received"] and not inflight:
            upload["total"] = upload["slice_size"] = None      # a failed first slice fixes nothing
        if not accepted:
            self._trim(image_uuid, upload, inflight)
        self._save()
        return accepted and index in upload["received"]

    def _trim(self, image_uuid, upload, inflight):
        """A slice that failed gives its bytes back: the data file is cut to the slices received or in flight."""
        size = upload["slice_size"] or 0
        ends = [(index + 1) * size for index in list(upload["received"]) + list(inflight)]
        keep = min(max(ends, default=0), upload["total"] or 0)
        try:
            if os.path.getsize(self._data_path(image_uuid)) > keep:
                os.truncate(self._data_path(image_uuid), keep)
        except OSError:
            pass

    def _store_slice(self, request):
        """Validate, stream the file part to its offset, fsync, then record the slice; return its size."""
        image_uuid, total, offset, size, index, digest = self._slice_headers(request)
        try:
            boundary = multipart_boundary(request.header("Content-Type"))
        except MultipartError as exc:
            raise SliceRejected(400, "SYS.1007", str(exc))
        with self._lock:
            fh, job_uuid, job = self._reserve_slice(request, image_uuid, total, offset, size, index)
        accepted = False
        try:
            with fh:
                fh.seek(offset)
                sink = SliceSink(fh, size, digest=digest is not None)
                try:
                    MultipartReader(request.body, boundary).copy_file_part(sink)
                except MultipartError as exc:
                    raise SliceRejected(400, "SYS.1007", str(exc))
                fh.flush()
                os.fsync(fh.fileno())
            if sink.length != size:
                raise SliceRejected(400, "SYS.1007", "the file part has %d bytes, X-SLICE-SIZE says %d" % (sink.length, size))
            if digest is not None and sink.md5.hexdigest() != digest:
                raise SliceRejected(400, "SYS.1007", "MD5 of slice %d is %s, the request said %s" % (index, sink.md5.hexdigest(), digest))
            accepted = True
        finally:
            with self._lock:
                recorded = self._release_slice(image_uuid, job_uuid, job, index, accepted)
        if not recorded:
            raise SliceRejected(400, "SYS.1006", "the upload of image[uuid:%s] ended while slice %d was received" % (image_uuid, index))
        return size

    def _digest_of(self, job_uuid, job):
        """Under the lock: the PrefixDigest of this incarnation of the job (never one left by an earlier job of that
        uuid); None when the job is gone."""
        if self._state["jobs"].get(job_uuid) is not job:
            return None
        digest = self._digests.get(job_uuid)
        if digest is None or digest.job is not job:
            digest = self._digests[job_uuid] = PrefixDigest(job)
        return digest

    def _start_hashing(self, job_uuid, job):
        """Under the lock, a slice just recorded: a background thread digests the prefix it extended, unless one is at it
        (that one sees the new slice: it checks the prefix under the lock before it lets go of the digest)."""
        digest = self._digest_of(job_uuid, job)
        if not digest.lock.locked() and self._prefix(job["upload"]) > digest.offset:
            threading.Thread(target=self._hash_in_background, args=(job_uuid, job, digest), name="zstack-digest-" + job_uuid,
                             daemon=True).start()

    def _hash_in_background(self, job_uuid, job, digest):
        try:
            self._hash_prefix(job_uuid, job, digest)
        except OSError:
            pass            # the data file went away with its job, or _finalize meets the error again

    def _hash_prefix(self, job_uuid, job, digest, final=False):
        """Advance ``digest`` over the job's received prefix (slices 0, 1, 2... as far as they go), reading the data file
        outside the lock, until no newly recorded slice extends it. Returns the digest; None when the job ended or,
        unless ``final`` (``_finalize``, which waits), when another thread holds the digest."""
        if not digest.lock.acquire(blocking=final):
            return None
        try:
            while True:
                with self._lock:
                    current = self._digests.get(job_uuid) is digest and self._state["jobs"].get(job_uuid) is job
                    end = self._prefix(job["upload"]) if current else 0
                    if digest.offset >= end:
                        digest.lock.release()       # under the lock: a slice recorded after this check starts a new thread
                        return digest if current else None
                buf = memoryview(bytearray(COPY_BLOCK))
                with open(self._data_path(job["image_uuid"]), "rb", buffering=0) as fh:
                    fh.seek(digest.offset)
                    while digest.offset < end:
                        n = fh.readinto(buf[:min(COPY_BLOCK, end - digest.offset)])
                        if not n:
                            raise OSError("%s ends before byte %d" % (fh.name, end))
                        digest.md5.update(buf[:n])
                        digest.offset += n
        except BaseException:
            digest.lock.release()
            raise

    def _start_finalize(self, job_uuid, job):
        if job_uuid not in self._finalizing:
            self._finalizing.add(job_uuid)
            threading.Thread(target=self._finalize, args=(job_uuid, job), name="zstack-finalize-" + job_uuid, daemon=True).start()

    def _finalize(self, job_uuid, job):
        """All bytes are in: digest the rest of the file outside the lock, then the image goes Ready and the job Succeeded."""
        image_uuid = job["image_uuid"]
        with self._lock:
            digest = self._digest_of(job_uuid, job)
        try:
            digest = digest and self._hash_prefix(job_uuid, job, digest, final=True)
        except OSError:
            digest = None
        with self._lock:
            self._finalizing.discard(job_uuid)
            image = self._state["images"].get(image_uuid)
            if digest is None or self._state["jobs"].get(job_uuid) is not job or job["inventory"]["state"] != "Running" or image is None:
                return
            size = job["upload"]["total"]
            image.update(status="Ready", size=size, actualSize=size, md5Sum=digest.md5.hexdigest(), lastOpDate=timestamp())
            for ref in image["backupStorageRefs"]:
                ref["status"] = "Ready"
            self._finish(job, "Succeeded")
            self._set_job(job, jobResult=self._event_json(image))
            self._save()
