# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ZStack adapter (private).

Protocol facts: shared/protocols/zstack.md. The upload is ZStack's resumable form: an ``APIAddImageMsg``
submitted as a long job tagged ``uploadImage::<imageId>``, found again with GetUploadImageJobDetails,
its bytes sent as fixed-size slices (multipart/form-data) to the image store's ``imageUploadUrl``.
What this adapter survives:

* a failed sync API is a 503 with ``{"error": ErrorCode}``: never retried as a transport failure; a
  503 without that body (a proxy, a node restarting), with Retry-After (a node shedding load), or whose code says
  the call never ran (``SYS.1009``-``SYS.1012``: no route, not ready, undeliverable, node unavailable) is retried
  with the HTTP layer's policy (budget ``retries``, backoff, Retry-After);
* some RestServer answers are plain text (400 missing Authorization, 404 unknown API, 405, 404 expired api-job);
* an expired session fails a sync call with ``ID.1001``, and an async call only on its api-job poll:
  both log in again and repeat the call once (the API never ran);
* GetUploadImageJobDetails is PUT in the docs and GET in the code: the one that did not answer 405 is
  remembered per endpoint; it does not list a job still Waiting, so a new job's long-job record is polled
  until it is Running with its ``jobResult``; after a resume ``jobResult`` holds the suspension error, so
  the upload URL always comes from the details call;
* the slice size is fixed by the server from the first slice; a resumed job's size is taken from the offset
  grid (see ``resume_slice_size``) and corrected when the receiver names its size in a 400;
* 406 = slice already received (counted as done; as sent when it answers a retry: the attempt whose answer was
  lost had landed), 409 = the same slice is being received from another request, 416 = Content-Range disagrees
  (both offset conflicts: re-read the offset and re-plan);
* never two jobs for one imageId: a submit whose answer is lost (the job may exist) or that ZStack refuses because
  a job for the imageId exists (another run was first) takes over the unfinished job found for the imageId
  instead of submitting again; a resume refused because the job runs already is no error;
* Ready comes asynchronously after the last slice: the image and the job are polled until Ready/Succeeded,
  then the size and the server's MD5 are compared with the file's.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import os
import re
import threading
import time
import uuid

try:
    from urllib.parse import quote
except ImportError:  # pragma: no cover - Python 2 is not supported, but sanity imports on it
    from urllib import quote

from ansible_collections.imagestore.upload.plugins.module_utils._base import Provider, session_record
from ansible_collections.imagestore.upload.plugins.module_utils._http import ApiError, ImageStoreError, TransportError
from ansible_collections.imagestore.upload.plugins.module_utils._upload import (
    Conflict, SliceDigests, Transfer, complement, normalize,
)

API = "/zstack/v1"
UPLOAD_TAG = "uploadImage::"
#: written into the AddImage description, so a finished job can be tied to its imageId again (tags are not queryable)
DESCRIPTION_MARK = "imagestore.upload imageId="
FINAL_STATES = ("Succeeded", "Failed", "Canceled")
LOGIN_FAILED = "ID.1000"
SESSION_INVALID = "ID.1001"
NOT_FOUND = "SYS.1003"
INVALID_ARGUMENT = "SYS.1007"
#: SysErrors of a call that never ran (no route, management node not ready, undeliverable, node unavailable): retried
TRANSIENT_CODES = ("SYS.1009", "SYS.1010", "SYS.1011", "SYS.1012")
EXTENSION_FORMATS = {".iso": "iso", ".qcow2": "qcow2", ".raw": "raw", ".img": "raw", ".vmdk": "vmdk"}
POLL_FIRST = 0.05
POLL_FACTOR = 1.25
POLL_MAX = 1.0
MAX_GRID_CHANGES = 2
MAX_RESUMES = 3
LOST_SUBMIT_WAIT = 5.0      # seconds to look for the job of a submit whose answer was lost (ZStack creates it asynchronously)
MIN_GRID = 64 * 1024
IMAGE_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,255}$")
ZSTACK_UUID_RE = re.compile(r"^[0-9a-f]{32}$")
FORMAT_RE = re.compile(r"^[a-z0-9]{1,32}$")
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
QUERY_UNSAFE_RE = re.compile(r"[!<>~?%,]| is null| not null")
SLICE_SIZE_HINT_RE = re.compile(r"slice size (\d+)|slices? but the last must be (\d+) bytes")

_DETAILS_METHOD = {}   # endpoint -> the method GetUploadImageJobDetails answered (GET or PUT), for the rest of the run


def sha512_hex(text):
    """What logInByAccount takes as password: the SHA-512 of the plaintext, in hex."""
    return hashlib.sha512(text.encode("utf-8")).hexdigest()


def error_text(error):
    """The details (or description) of a ZStack ErrorCode, with its cause's."""
    text = (error.get("details") or error.get("description") or "").strip()
    cause = error.get("cause")
    if isinstance(cause, dict) and cause.get("code"):
        text = "%s (cause: %s %s)" % (text, cause["code"], (cause.get("details") or cause.get("description") or "").strip())
    return text.strip()


def describe_error(error):
    """One line from a ZStack ErrorCode: code, details (or description), and the cause's."""
    return ("%s %s" % (error.get("code") or "(no code)", error_text(error))).strip()


def zstack_error(response):
    """The ErrorCode of a ZStack error body ``{"error": {...}}``, or None when the body is something else."""
    try:
        data = response.json()
    except ValueError:
        return None
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict) and error.get("code"):
        return error
    return None


def parse_error(response):
    """(code, message) of any error answer: a ZStack ErrorCode, or RestServer's plain text."""
    error = zstack_error(response)
    if error is not None:
        return error.get("code"), error_text(error)
    return None, " ".join((response.text or "").split())[:300] or response.reason


def job_error(job):
    """The ErrorCode a long job's ``jobResult`` holds (failure, suspension, cancel) as one line, or None."""
    result = (job or {}).get("jobResult")
    if not isinstance(result, dict):
        try:
            result = json.loads(result)
        except (TypeError, ValueError):
            return result or None
    if isinstance(result, dict) and isinstance(result.get("error"), dict):
        result = result["error"]
    if isinstance(result, dict) and result.get("code"):
        return describe_error(result)
    return None


def job_data(job):
    try:
        data = json.loads((job or {}).get("jobData") or "")
    except (TypeError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def job_image_id(job):
    """The imageId this collection wrote into the AddImage description of a long job, or None."""
    description = job_data(job).get("description") or ""
    return description[len(DESCRIPTION_MARK):] if description.startswith(DESCRIPTION_MARK) else None


def job_image_uuid(job):
    return (job or {}).get("targetResourceUuid") or job_data(job).get("resourceUuid")


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


def check_image_id(value, option="image_id"):
    text = str(value)
    if not IMAGE_ID_RE.match(text):
        raise ImageStoreError("%s %r is not usable as a ZStack upload id: give 1 to 255 letters, digits, '.', '_' or '-' "
                              "(the default, the MD5 of the file, is one)" % (option, text))
    return text


def check_job_uuid(value, option="session_id"):
    text = str(value).strip().lower().replace("-", "")
    if not ZSTACK_UUID_RE.match(text):
        raise ImageStoreError("%s %r is not a ZStack long job uuid: give the 32 hexadecimal digits image_upload returned "
                              "as session_id (or look the job up by image_id)" % (option, value))
    return text


def image_options(src, params):
    """name, format, media_type and platform of the image, defaults from the file extension; checked."""
    name = params.get("name")
    if not name or not str(name).strip() or len(name) > 255 or CONTROL_RE.search(name):
        raise ImageStoreError("name %r is not a usable ZStack image name: give 1 to 255 printable characters" % (name,))
    media_type = params.get("media_type")
    image_format = params.get("format")
    if image_format:
        image_format = image_format.strip().lower()
        if not FORMAT_RE.match(image_format):
            raise ImageStoreError("format %r is not an image format: give qcow2, raw, vmdk, iso or another format ZStack knows"
                                  % params.get("format"))
    elif media_type == "ISO":
        image_format = "iso"
    else:
        image_format = EXTENSION_FORMATS.get(os.path.splitext(src)[1].lower())
        if image_format is None:
            raise ImageStoreError("format: cannot tell the image format of %s from its extension (known: .qcow2, .raw, .img, "
                                  ".vmdk, .iso); give format (qcow2, raw, vmdk, iso, ...)" % src)
    if media_type is None:
        media_type = "ISO" if image_format == "iso" else "RootVolumeTemplate"
    if media_type == "ISO" and image_format != "iso":
        raise ImageStoreError("format %s does not go with media_type ISO: ZStack keeps ISO images in format iso" % image_format)
    return {"name": name, "format": image_format, "media_type": media_type, "platform": params.get("platform") or "Linux"}


def add_image_params(options, storage_uuid, image_id):
    """The APIAddImageMsg parameters (the long job's ``jobData``) of an upload."""
    return {"name": options["name"], "url": "upload://%s" % options["name"], "mediaType": options["media_type"],
            "format": options["format"], "platform": options["platform"], "backupStorageUuids": [storage_uuid],
            "description": DESCRIPTION_MARK + image_id}


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


def slice_md5(source, start, end):
    """MD5 of bytes [start, end] of the file, in one pass over that slice (it is not kept in memory)."""
    digest = hashlib.md5()
    for block in source.blocks(start, end):
        digest.update(block)
    return digest.hexdigest()


def multipart_filename(src):
    """A file name for the multipart part that needs no quoting: the basename with other characters replaced."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", os.path.basename(src or ""))[:200] or "image"


class MultipartSlice:
    """A multipart/form-data body with one file part, streamed: preamble, the slice read from the file, epilogue.

    ``len`` (and ``len()``) is the exact body size before anything is read, so the request carries a
    Content-Length; the file is opened on the first ``read()`` and read in blocks, never held whole.
    """

    def __init__(self, source, start, end, filename, boundary):
        self.boundary = boundary
        self._head = ('--%s\r\nContent-Disposition: form-data; name="file"; filename="%s"\r\n'
                      'Content-Type: application/octet-stream\r\n\r\n' % (boundary, filename)).encode("ascii")
        self._tail = ("\r\n--%s--\r\n" % boundary).encode("ascii")
        self._source = source
        self._range = (start, end)
        self._reader = None
        self._parts = None
        self.len = len(self._head) + (end - start + 1) + len(self._tail)
        self._read = 0

    @property
    def content_type(self):
        return "multipart/form-data; boundary=%s" % self.boundary

    def __len__(self):
        return self.len - self._read

    def read(self, size=-1):
        if self._parts is None:
            self._reader = self._source.reader(*self._range)
            self._parts = [self._head, self._reader, self._tail]
        while self._parts:
            part = self._parts[0]
            if isinstance(part, bytes):
                if size is None or size < 0 or size >= len(part):
                    data = self._parts.pop(0)
                else:
                    data, self._parts[0] = part[:size], part[size:]
            else:
                data = part.read(size)
                if not data:
                    self._parts.pop(0)
                    continue
            if data:
                self._read += len(data)
                return data
        return b""

    def close(self):
        if self._reader is not None:
            self._reader.close()


class ZStackApiError(ApiError):
    """A ZStack API answered with an ErrorCode (the 503 of a sync call, or of an async call's api-job)."""

    def __init__(self, what, error, status=503):
        self.error = error
        super(ZStackApiError, self).__init__("%s failed: %s" % (what, describe_error(error)), status=status, code=error.get("code"))


class SliceConflict(Conflict):
    """409 (the slice is being received from another request), 416 (Content-Range disagrees) or 400 ``SYS.1006`` (the job
    takes no bytes now: suspended, or done): re-read and re-plan."""

    def __init__(self, message, status, server_offset=None, retried=False):
        super(SliceConflict, self).__init__(message)
        self.status = status
        self.server_offset = server_offset
        self.retried = retried      # the answer to a repeated attempt: an earlier one may have landed


class SliceGridError(ImageStoreError):
    """The receiver refused a slice's geometry (offset, size): the job's slice size is not the one used."""

    def __init__(self, message, slice_size=None):
        super(SliceGridError, self).__init__(message, status=400)
        self.slice_size = slice_size


class ZStackClient:
    """One method per ZStack call the upload needs, over the shared HttpClient.

    Logs in lazily (SHA-512 of the password), sends ``Authorization: OAuth <session>``, polls the api-job
    of asynchronous calls with backoff until 200/503 within ``deadline``, logs in again once on ``ID.1001``.
    No message it raises contains a session uuid.
    """

    def __init__(self, http, username, password, deadline, sleep=time.sleep):
        self.http = http
        self.username = username
        self.password = password
        self.deadline = deadline
        self._sleep = sleep
        self._session = None
        self._secrets = set()
        self._login_lock = threading.Lock()

    # -- plumbing -----------------------------------------------------------------------------
    def _scrub(self, exc):
        for secret in self._secrets:
            if secret in exc.message:
                exc.message = exc.message.replace(secret, "<session>")
                exc.args = (exc.message,)
        return exc

    def _send(self, method, path, what, expect=(200, 202), body=None, params=None, auth=True):
        """One request; a 503 carrying a ZStack ErrorCode raises ZStackApiError, unless it is transient (see ``_transient``).

        Transient 503s are retried here, with the HTTP layer's retry policy: its budget, backoff and Retry-After (the
        HTTP layer cannot tell an API's 503 answer from an outage; every other status and error is its business).
        """
        headers = {"Accept": "application/json"}
        if auth and self._session:
            headers["Authorization"] = "OAuth %s" % self._session
        kwargs = {"headers": headers, "params": params, "idempotent": method != "POST", "what": what}
        if body is not None:
            kwargs["json"] = body
        policy = self.http.retry_policy
        try:
            while True:
                response = self.http.request(method, path, expect=tuple(expect) + (503,), **kwargs)
                if response.status_code != 503:
                    return response
                error = zstack_error(response)
                if error is not None and not self._transient(error, response):
                    raise ZStackApiError(what, error)
                policy, delay = self._next_try(policy, method, path, response, what)
                self.deadline.check(what)
                remaining = self.deadline.remaining()
                self._sleep(delay if remaining is None else max(0.0, min(delay, remaining)))
        except ImageStoreError as exc:
            raise self._scrub(exc)

    @staticmethod
    def _transient(error, response):
        """A 503 that is no answer of the API: the call never ran (TRANSIENT_CODES), or the server asks to come back later."""
        return error.get("code") in TRANSIENT_CODES or bool(response.headers.get("Retry-After"))

    def _next_try(self, policy, method, path, response, what):
        """(the policy after one more try, the delay before it: Retry-After or backoff); ApiError when the budget is spent."""
        try:
            policy = policy.increment(method=method, url=self.http.url(path), response=getattr(response, "raw", None))
        except Exception:  # urllib3's MaxRetryError: the budget is spent
            code, message = parse_error(response)
            raise ApiError("%s failed after %d attempts: HTTP 503%s%s" % (what, len(policy.history) + 1, " %s" % code if code else "",
                                                                          ": %s" % message if message else ""),
                           status=503, code=code, retryable=True)
        delay = policy.get_backoff_time()
        header = response.headers.get("Retry-After")
        if header:
            try:
                delay = min(max(policy.parse_retry_after(header), 0.0), getattr(policy, "backoff_max", None) or policy.BACKOFF_MAX)
            except Exception:  # an unparsable Retry-After: the backoff
                pass
        return policy, delay

    @staticmethod
    def _json(response, what):
        if not response.content.strip():
            return {}
        try:
            data = response.json()
        except ValueError:
            raise ApiError("%s: the answer is not JSON: %s" % (what, " ".join(response.text.split())[:200]), status=response.status_code)
        if not isinstance(data, dict):
            raise ApiError("%s: the answer is not a JSON object" % what, status=response.status_code)
        return data

    def pause(self, delay, doing):
        """Sleep ``delay`` (never past the deadline, which raises when spent); return the next, longer delay."""
        self.deadline.check(doing)
        remaining = self.deadline.remaining()
        self._sleep(delay if remaining is None else max(0.0, min(delay, remaining)))
        return min(delay * POLL_FACTOR, POLL_MAX)

    def _location(self, response, what):
        location = self._json(response, what).get("location")
        if not location:
            raise ApiError("%s: the server accepted the call (202) but gave no api-job location" % what, status=202)
        at = location.find(API + "/api-jobs/")
        # the api-job lives on the management node we talk to, whatever host name it puts in the location
        return self.http.endpoint + location[at:] if at >= 0 else location

    def _poll(self, location, what):
        delay = POLL_FIRST
        while True:
            response = self._send("GET", location, what, expect=(200, 202, 404))
            if response.status_code == 200:
                return self._json(response, what)
            if response.status_code == 404:
                raise ApiError("%s failed: the server no longer knows the call's api-job (it keeps results 3 hours)" % what, status=404)
            delay = self.pause(delay, what)

    def call(self, method, path, what, body=None, params=None, tolerate=()):
        """A sync or async API call; returns (status, result): 200 and the JSON result, or a ``tolerate``d status and None.

        ``ID.1001`` (session expired or unknown), from the call or from its api-job, logs in again and
        repeats the call once: the API did not run.
        """
        for attempt in (1, 2):
            session = self._ensure_session()
            try:
                response = self._send(method, path, what, expect=(200, 202) + tuple(tolerate), body=body, params=params)
                if response.status_code in tolerate:
                    return response.status_code, None
                if response.status_code == 202:
                    return 200, self._poll(self._location(response, what), what)
                return 200, self._json(response, what)
            except ZStackApiError as exc:
                if exc.code != SESSION_INVALID or attempt == 2:
                    raise
                with self._login_lock:
                    if self._session == session:
                        self._session = None

    def _ensure_session(self):
        with self._login_lock:
            if self._session is None:
                self.login()
            return self._session

    # -- sessions -----------------------------------------------------------------------------
    def login(self):
        what = "login to ZStack at %s as %s" % (self.http.endpoint, self.username)
        body = {"logInByAccount": {"accountName": self.username, "password": sha512_hex(self.password)}}
        try:
            response = self._send("PUT", API + "/accounts/login", what, body=body, auth=False)
            data = self._poll(self._location(response, what), what) if response.status_code == 202 else self._json(response, what)
        except ZStackApiError as exc:
            if exc.code == LOGIN_FAILED:
                raise ImageStoreError("%s failed (%s): check username and password" % (what, describe_error(exc.error)),
                                      status=exc.status, code=exc.code)
            raise
        session = (data.get("inventory") or {}).get("uuid")
        if not session:
            raise ApiError("%s: the answer has no session uuid" % what)
        self._secrets.add(session)
        self._session = session

    @property
    def logged_in(self):
        return self._session is not None

    def logout(self):
        """End the session (an already expired one is not an error)."""
        session, self._session = self._session, None
        if session is None:
            return
        headers = {"Authorization": "OAuth %s" % session}
        try:
            response = self.http.request("DELETE", "%s/accounts/sessions/%s" % (API, session), expect=(200, 202, 204, 404, 503),
                                         headers=headers, retry=False, what="log out of ZStack")
        except ImageStoreError as exc:
            raise self._scrub(exc)
        error = zstack_error(response) if response.status_code == 503 else None
        if response.status_code == 503 and (error is None or error.get("code") != SESSION_INVALID):
            raise self._scrub(ApiError("log out of ZStack failed: %s" % (describe_error(error) if error else "HTTP 503"), status=503))

    # -- queries ------------------------------------------------------------------------------
    def query(self, resource, conditions=(), uuid=None, what=None):
        """``GET /zstack/v1/<resource>[/<uuid>]?q=...``: the inventories."""
        path = "%s/%s" % (API, resource) + ("/%s" % quote(uuid, safe="") if uuid else "")
        params = [("q", c) for c in conditions] or None
        data = self.call("GET", path, what or "query %s" % resource, params=params)[1]
        return [i for i in data.get("inventories") or [] if isinstance(i, dict)]

    def find_by_name(self, resource, name, conditions=()):
        """Inventories named exactly ``name`` (a name the query syntax could misread is filtered here instead)."""
        conditions = list(conditions)
        if not QUERY_UNSAFE_RE.search(name):
            conditions.append("name=%s" % name)
        return [i for i in self.query(resource, conditions, what="look up %s named %r" % (resource, name)) if i.get("name") == name]

    def get_image(self, image_uuid):
        found = self.query("images", uuid=image_uuid, what="get image %s" % image_uuid)
        return found[0] if found else None

    def get_long_job(self, job_uuid):
        found = self.query("longjobs", uuid=job_uuid, what="get long job %s" % job_uuid)
        return found[0] if found else None

    def list_backup_storage(self):
        return self.query("backup-storage", what="list backup storage")

    def get_backup_storage(self, storage_uuid):
        found = self.query("backup-storage", uuid=storage_uuid, what="get backup storage %s" % storage_uuid)
        return found[0] if found else None

    def add_image_jobs(self, conditions=()):
        """APIAddImageMsg long jobs matching ``conditions``."""
        return self.query("longjobs", ["jobName=APIAddImageMsg"] + list(conditions), what="query image upload jobs")

    def jobs_of_image_id(self, image_id):
        """Every AddImage long job this collection submitted for ``image_id`` (found by its description)."""
        jobs = self.add_image_jobs(["jobData~=%%%s%s%%" % (DESCRIPTION_MARK, image_id)])
        return [j for j in jobs if job_image_id(j) == image_id]

    # -- the upload job ----------------------------------------------------------------------------
    def upload_job_details(self, image_id):
        """GetUploadImageJobDetails: the non-final jobs tagged ``uploadImage::<image_id>`` (GET or PUT, whichever is served)."""
        path = "%s/images/upload-job/details/%s" % (API, quote(image_id, safe=""))
        what = "get upload job details of image_id %s" % image_id
        first = _DETAILS_METHOD.get(self.http.endpoint, "GET")
        for method in (first, "PUT" if first == "GET" else "GET"):
            body = {"systemTags": [], "userTags": []} if method == "PUT" else None
            status, data = self.call(method, path, what, body=body, tolerate=(404, 405))
            if status == 405:
                continue
            if status == 404:
                raise ApiError("%s failed: this ZStack has no GetUploadImageJobDetails API (ZStack 4.1.0 added it); "
                               "resumable uploads need it" % what, status=404)
            _DETAILS_METHOD[self.http.endpoint] = method
            return [d for d in data.get("existingJobDetails") or [] if isinstance(d, dict)]
        raise ApiError("%s failed: both GET and PUT were refused with 405" % what, status=405)

    def job_detail(self, image_id, job_uuid):
        """The details entry of one job, or None when it is not listed (Waiting, or in a final state)."""
        return next((d for d in self.upload_job_details(image_id) if d.get("longJobUuid") == job_uuid), None)

    def submit_add_image(self, image_id, params):
        """Submit APIAddImageMsg as a long job tagged ``uploadImage::<image_id>``; the long job inventory (Waiting)."""
        body = {"params": {"jobName": "APIAddImageMsg", "jobData": json.dumps(params)}, "systemTags": [UPLOAD_TAG + image_id]}
        data = self.call("POST", API + "/longjobs", "submit the upload job of image %r" % params["name"], body=body)[1]
        job = data.get("inventory") or {}
        if not job.get("uuid"):
            raise ApiError("submit the upload job of image %r: the answer has no long job" % params["name"])
        return job

    def _long_job_action(self, job_uuid, action, what):
        data = self.call("PUT", "%s/longjobs/%s/actions" % (API, job_uuid), what, body={action: {}})[1]
        return data.get("inventory")

    def resume_long_job(self, job_uuid):
        """Resume a Suspended job; a job that runs already (another run resumed it, or this call's first answer was lost) is fine."""
        try:
            return self._long_job_action(job_uuid, "resumeLongJob", "resume upload job %s" % job_uuid)
        except ZStackApiError as exc:
            if exc.code != INVALID_ARGUMENT:
                raise
            job = self.get_long_job(job_uuid)
            if (job or {}).get("state") != "Running":
                raise
            return job

    def cancel_long_job(self, job_uuid):
        return self._long_job_action(job_uuid, "cancelLongJob", "cancel upload job %s" % job_uuid)

    def delete_long_job(self, job_uuid):
        self.call("DELETE", "%s/longjobs/%s" % (API, job_uuid), "delete long job %s" % job_uuid)

    def delete_image(self, image_uuid):
        self.call("DELETE", "%s/images/%s" % (API, image_uuid), "delete image %s" % image_uuid, params={"deleteMode": "Permissive"})

    def expunge_image(self, image_uuid, storage_uuids):
        body = {"expungeImage": {"backupStorageUuids": list(storage_uuids)}}
        self.call("PUT", "%s/images/%s/actions" % (API, image_uuid), "expunge image %s" % image_uuid, body=body)

    def calculate_image_hash(self, image_uuid, storage_uuid, algorithm="MD5"):
        body = {"calculateImageHash": {"backupStorageUuid": storage_uuid, "algorithm": algorithm}}
        data = self.call("PUT", "%s/images/%s/actions" % (API, image_uuid), "calculate the %s of image %s" % (algorithm, image_uuid), body=body)[1]
        return data.get("inventory")

    def send_slice(self, url, image_uuid, image_size, index, start, end, source, md5, filename):
        """POST one slice to the image store; "accepted" (200) or "present" (406: received before).

        Raises SliceConflict on 409/416, SliceGridError when the receiver refuses the slice geometry.
        """
        boundary = "imagestore-upload-%s" % uuid.uuid4().hex
        size = end - start + 1
        headers = {
            "Content-Type": "multipart/form-data; boundary=%s" % boundary,
            "Content-Length": str(MultipartSlice(source, start, end, filename, boundary).len),
            "X-IMAGE-UUID": image_uuid, "X-IMAGE-SIZE": str(image_size),
            "X-SLICE-OFFSET": str(start), "X-SLICE-SIZE": str(size), "X-SLICE-INDEX": str(index), "X-SLICE-MD5": md5,
            "Content-Range": "bytes %d-%d/%d" % (start, end, image_size),
        }

        attempts = []

        def body():
            attempts.append(len(attempts) + 1)
            return MultipartSlice(source, start, end, filename, boundary)

        what = "send slice %d (bytes %d-%d) of image %s" % (index, start, end, image_uuid)
        response = self.http.request("POST", url, expect=(200, 400, 404, 406, 409, 416), body=body, headers=headers, what=what)
        if response.status_code == 200:
            return "accepted"
        if response.status_code == 406:
            # answering a retry, 406 says the attempt whose answer was lost (reset, timeout) had landed: sent by this run
            return "accepted" if len(attempts) > 1 else "present"
        code, message = parse_error(response)
        detail = "%s%s" % ("%s " % code if code else "", message)
        if response.status_code in (409, 416):
            try:
                server_offset = response.json().get("serverOffset")
            except (ValueError, AttributeError):
                server_offset = None
            raise SliceConflict("%s: HTTP %d %s" % (what, response.status_code, detail), response.status_code, server_offset)
        if response.status_code == 404:
            raise ApiError("%s failed: the image store no longer takes bytes for this image (its upload job was canceled, "
                           "failed or expired): HTTP 404 %s" % (what, detail), status=404, code=code)
        if code == "SYS.1006":          # the job is not Running now (suspended by the idle timer, or done): re-read, resume, re-plan
            raise SliceConflict("%s: HTTP 400 %s" % (what, detail), 400, retried=len(attempts) > 1)
        hint = SLICE_SIZE_HINT_RE.search(message or "")
        if hint or "SLICE-OFFSET" in (message or ""):
            raise SliceGridError("%s failed: HTTP 400 %s" % (what, detail), int(hint.group(1) or hint.group(2)) if hint else None)
        raise ApiError("%s failed: HTTP 400 %s" % (what, detail), status=400, code=code)

    # -- waiting ------------------------------------------------------------------------------
    def wait_long_job_started(self, job_uuid):
        """Poll a new long job until it runs with its ``jobResult`` set (the image exists with its upload URL)."""
        delay = POLL_FIRST
        while True:
            job = self.get_long_job(job_uuid)
            if job is None:
                raise ImageStoreError("upload job %s disappeared right after it was submitted" % job_uuid)
            state = job.get("state")
            if state in ("Failed", "Canceled"):
                raise ImageStoreError("upload job %s %s before it started: %s" % (job_uuid, state.lower(), job_error(job) or "no reason given"))
            if state == "Succeeded" or (state in ("Running", "Suspended") and job.get("jobResult")):
                return job
            delay = self.pause(delay, "waiting for upload job %s to start" % job_uuid)

    def wait_ready(self, image_uuid, job_uuid):
        """Poll until the image is Ready and its long job Succeeded; (image, job). Fails on Failed/Canceled/Suspended."""
        delay = POLL_FIRST
        while True:
            job = self.get_long_job(job_uuid)
            state = (job or {}).get("state")
            if state in ("Failed", "Canceled"):
                raise ImageStoreError("upload job %s %s: %s" % (job_uuid, state.lower(), job_error(job) or "no reason given"),
                                      details={"long_job_uuid": job_uuid, "image_uuid": image_uuid})
            image = self.get_image(image_uuid)
            if image is None:
                raise ImageStoreError("image %s disappeared before it became Ready (deleted, or its upload job was canceled)" % image_uuid)
            if image.get("status") == "Ready" and state in ("Succeeded", None):
                return image, job
            if state == "Suspended":
                raise ImageStoreError("upload job %s was suspended before image %s became Ready (%s); run again to resume it"
                                      % (job_uuid, image_uuid, job_error(job) or "no reason given"))
            delay = self.pause(delay, "waiting for image %s to become Ready" % image_uuid)


def resolve_backup_storage(api, wanted):
    """The backup storage named ``wanted`` (name or uuid); it must be Connected and Enabled."""
    wanted = (wanted or "").strip()
    if not wanted:
        raise ImageStoreError("backup_storage must be the name or uuid of a ZStack backup storage")
    found = []
    if ZSTACK_UUID_RE.match(wanted.lower()):
        found = [s for s in [api.get_backup_storage(wanted.lower())] if s]
    if not found:
        found = api.find_by_name("backup-storage", wanted)
    if not found:
        names = sorted(set(s.get("name") or s.get("uuid") for s in api.list_backup_storage()))
        raise ImageStoreError("backup_storage %r is not a backup storage of this ZStack: give the name or uuid of one of: %s"
                              % (wanted, ", ".join(names) or "(none; add a backup storage first)"))
    if len(found) > 1:
        raise ImageStoreError("backup_storage %r names %d backup storages (uuids %s): give the uuid of the one to use"
                              % (wanted, len(found), ", ".join(sorted(s.get("uuid") for s in found))))
    storage = found[0]
    if storage.get("status") != "Connected" or storage.get("state", "Enabled") != "Enabled":
        raise ImageStoreError("backup_storage %r (uuid %s) is %s and %s: ZStack adds images only to a Connected, Enabled backup "
                              "storage; reconnect or enable it first" % (wanted, storage.get("uuid"), storage.get("status"), storage.get("state")),
                              code="SYS.1006")
    return storage


class _SliceUpload:
    """Sends what a Running upload job is missing, slice by slice, through the engine's Transfer."""

    def __init__(self, provider, source, image_id, job_uuid, image_uuid, url, offset, filename, slice_md5s=None):
        self.provider = provider
        self.slice_md5s = slice_md5s or {}      # (start, end) -> MD5, from the run's one read of the file
        self.api = provider.api
        self.source = source
        self.image_id = image_id
        self.job_uuid = job_uuid
        self.image_uuid = image_uuid
        self.url = url
        self.filename = filename
        self.grid = None
        self.known = []            # byte ranges the server took (200) or had (406) in this run
        self.unconfirmed = []      # slices whose lost first answer may have completed the upload (the retry found it over)
        self.accepted = 0
        self.present_slices = 0
        self.conflicts = 0
        self.grid_changes = 0
        self.resumes = 0
        self._fresh_offset = offset
        self._busy = {}
        self._lock = threading.Lock()

    def missing(self):
        """offset..size-1 from the details call, less what this run already saw land."""
        self.provider.deadline.check("uploading image %s" % self.image_uuid)
        offset, self._fresh_offset = self._fresh_offset, None
        if offset is None:
            detail = self.api.job_detail(self.image_id, self.job_uuid)
            if detail is None:
                job = self.api.get_long_job(self.job_uuid)
                if (job or {}).get("state") == "Succeeded":
                    with self._lock:        # the job could only succeed with them: the unanswered attempts had landed
                        self.accepted += sum(end - start + 1 for start, end in self.unconfirmed)
                        self.unconfirmed = []
                    return []
                raise ImageStoreError("upload job %s ended while its slices were being sent: %s"
                                      % (self.job_uuid, job_error(job) or (job or {}).get("state") or "the job is gone"))
            if detail.get("longJobState") == "Suspended":
                if self.resumes >= MAX_RESUMES:
                    job = self.api.get_long_job(self.job_uuid)
                    raise ImageStoreError("upload job %s was suspended again after %d resumes while its slices were being sent (%s); "
                                          "what it received is kept: run again to resume it" % (
                                              self.job_uuid, self.resumes, job_error(job) or "no reason given"),
                                          details={"long_job_uuid": self.job_uuid, "image_uuid": self.image_uuid})
                self.api.resume_long_job(self.job_uuid)
                self.resumes += 1
            self.url = detail.get("imageUploadUrl") or self.url
            offset = parse_offset(detail.get("offset"))
        with self._lock:
            have = list(self.known)
        if offset > 0:
            have.append((0, min(offset, self.source.size) - 1))
        return complement(normalize(have), self.source.size)

    def send(self, start, end, source):
        self.provider.deadline.check("uploading image %s" % self.image_uuid)
        index = start // self.grid
        md5 = self.slice_md5s.get((start, end)) or slice_md5(source, start, end)
        try:
            outcome = self.api.send_slice(self.url, self.image_uuid, source.size, index, start, end, source, md5, self.filename)
        except SliceConflict as exc:
            if exc.status == 400 and exc.retried:
                with self._lock:
                    self.unconfirmed.append((start, end))
            if exc.status == 409:          # another request is writing this slice now: give it time before re-planning
                with self._lock:
                    tries = self._busy[index] = self._busy.get(index, 0) + 1
                self.api.pause(min(4.0, 0.5 * 2 ** (tries - 1)), "waiting for slice %d" % index)
            raise
        with self._lock:
            self.known.append((start, end))
            if outcome == "accepted":
                self.accepted += end - start + 1
            else:
                self.present_slices += 1

    def run(self, slice_size):
        """Send until nothing is missing; a slice size the receiver names in a 400 replaces a wrong one (twice at most)."""
        self.grid = slice_size
        while True:
            transfer = Transfer(self.source, self.missing, self.send, chunk_size=self.grid, parallel=self.provider.parallel, grid=self.grid)
            try:
                transfer.run()
                self.conflicts += transfer.conflicts
                return
            except SliceGridError as exc:
                self.conflicts += transfer.conflicts
                if not exc.slice_size or exc.slice_size == self.grid or self.grid_changes >= MAX_GRID_CHANGES:
                    raise ImageStoreError("%s. The upload job's slice size is not %d bytes; run again with chunk_size set to the "
                                          "slice size the job was started with, or remove the job with upload_session_absent"
                                          % (exc.message, self.grid), status=400)
                self.grid = exc.slice_size
                self.grid_changes += 1
                self._fresh_offset = None


class ZStack(Provider):
    name = "zstack"
    own_options = ("name", "backup_storage", "format", "media_type", "platform", "image_id", "purge")

    def __init__(self, params, check_mode=False, warn=None):
        super(ZStack, self).__init__(params, check_mode, warn)
        self.api = ZStackClient(self.http, params.get("username"), params.get("password"), self.deadline)

    def parse_error(self, response):
        return parse_error(response)

    def close(self):
        try:
            self.api.logout()
        finally:
            super(ZStack, self).close()

    def _need_credentials(self):
        if not self.params.get("username") or not self.params.get("password"):
            raise ImageStoreError("provider zstack needs username and password (a ZStack account allowed to add images)")

    # -- image_upload -------------------------------------------------------------------------
    def upload(self):
        src = self.params["src"]
        self.check_src_file(src)
        options = image_options(src, self.params)
        if self.params.get("image_id") is not None:
            check_image_id(self.params["image_id"])
        source = self.source(src)
        if source.size == 0:
            raise ImageStoreError("src: %s is empty; ZStack cannot hold an empty image" % src)
        self._need_credentials()
        storage = resolve_backup_storage(self.api, self.params["backup_storage"])
        # One read gives the file's MD5 (the default image_id, and what md5Sum is checked against), its
        # SHA-256 and the MD5 of every slice of a fresh job's grid (the X-SLICE-MD5 header precedes the
        # body), each digest in a thread of its own; a cached MD5 and SHA-256 skip the read (slices of
        # that run are then digested as they go out).
        slices = SliceDigests("md5", self.chunk_size, source.size)
        digests = source.digests(("md5", "sha256"), also=(slices,))
        image_id = self.params.get("image_id") or digests["md5"]
        name = options["name"]
        result = {"changed": False, "session_id": None, "long_job_uuid": None, "image_uuid": None, "status": None,
                  "size": source.size, "bytes_sent": 0, "resumed": False, "sha256": digests["sha256"], "md5": digests["md5"],
                  "image_id": image_id, "format": options["format"], "media_type": options["media_type"],
                  "destination": {"image_uuid": None, "backup_storage_uuid": storage["uuid"], "name": name}}
        same_name = [i for i in self.api.find_by_name("images", name) if on_storage(i, storage["uuid"])]
        before = self._image_state(name, next((i for i in same_name if i.get("status") == "Ready"), None))
        match = None if self.params.get("force") else self._same_content(same_name, source.size, digests["md5"], image_id)
        if match is not None:
            image, job = match
            result.update(self._identify(image["uuid"], job, "Ready"))
            result["destination"]["image_uuid"] = image["uuid"]
            result["diff"] = {"before": before, "after": before}
            result["msg"] = "image %r (%s) on backup storage %s already holds this file (MD5 %s); nothing sent" % (
                name, image["uuid"], storage.get("name"), digests["md5"])
            return result
        detail = self._existing_job(image_id, name, storage["uuid"])
        result["changed"] = True
        if self.check_mode:
            offset = parse_offset(detail.get("offset")) if detail else 0
            result.update(resumed=detail is not None, would_send=source.size - min(offset, source.size), bytes_sent=0)
            if detail is not None:
                result.update(self._identify(detail.get("imageUuid"), detail.get("longJobUuid"), detail.get("longJobState")))
            result["diff"] = {"before": before, "after": dict(before, image_uuid=result["image_uuid"], status="Ready", size=source.size,
                                                              md5=digests["md5"])}
            result["msg"] = "would %s %d of %d bytes of %s as image %r on backup storage %s" % (
                "resume upload job %s and send" % detail.get("longJobUuid") if detail else "send",
                result["would_send"], source.size, src, name, storage.get("name"))
            return result
        if detail is None:
            detail, result["resumed"] = self._submit(image_id, options, storage["uuid"])
            slice_size = self.chunk_size if not result["resumed"] else \
                resume_slice_size(self.chunk_size, parse_offset(detail.get("offset")), source.size)
        else:
            result["resumed"] = True
            if detail.get("longJobState") == "Suspended":
                self.api.resume_long_job(detail["longJobUuid"])
                detail = self.api.job_detail(image_id, detail["longJobUuid"]) or detail
            slice_size = resume_slice_size(self.chunk_size, parse_offset(detail.get("offset")), source.size)
        job_uuid, image_uuid = detail["longJobUuid"], detail["imageUuid"]
        result.update(self._identify(image_uuid, job_uuid, detail.get("longJobState")))
        result["destination"]["image_uuid"] = image_uuid
        sender = _SliceUpload(self, source, image_id, job_uuid, image_uuid, detail.get("imageUploadUrl"),
                              parse_offset(detail.get("offset")), multipart_filename(src), slices.digests)
        sender.run(slice_size)
        source.check_unchanged()
        image = self.api.wait_ready(image_uuid, job_uuid)[0]
        image = self._verify(image, source.size, digests["md5"], storage["uuid"])
        result.update(status=image.get("status"), bytes_sent=sender.accepted, slices_already_present=sender.present_slices,
                      slice_size=sender.grid, chunks_replanned=sender.conflicts + sender.grid_changes)
        result["diff"] = {"before": before, "after": self._image_state(name, image)}
        result["msg"] = "%s %d bytes of %s into image %r (%s) on backup storage %s; the image is Ready, MD5 %s" % (
            "resumed upload job %s and sent the missing" % job_uuid if result["resumed"] else "uploaded",
            sender.accepted, src, name, image_uuid, storage.get("name"), digests["md5"])
        others = sorted(i["uuid"] for i in same_name if i["uuid"] != image_uuid and i.get("status") != "Deleted")
        if others and not result["resumed"]:
            self.warn("backup storage %s holds other images named %r (%s); ZStack allows duplicate names, this run added %s"
                      % (storage.get("name"), name, ", ".join(others), image_uuid))
        return result

    @staticmethod
    def _identify(image_uuid, job, status):
        job_uuid = job.get("uuid") if isinstance(job, dict) else job
        return {"image_uuid": image_uuid, "long_job_uuid": job_uuid, "session_id": job_uuid, "status": status}

    @staticmethod
    def _image_state(name, image):
        image = image or {}
        sizes = image_sizes(image)
        return {"name": name, "image_uuid": image.get("uuid"), "status": image.get("status"), "size": sizes[0] if sizes else None,
                "md5": image.get("md5Sum")}

    def _same_content(self, images, size, md5, image_id):
        """(image, long job or None) of a Ready image holding this file, or None.

        Same MD5; or, where the server has none, same size and the image's ``uploadImage::<image_id>`` job Succeeded.
        """
        for image in images:
            if image.get("status") != "Ready":
                continue
            server_md5 = (image.get("md5Sum") or "").lower()
            if server_md5:
                if server_md5 == md5:
                    return image, self._finished_job(image["uuid"], None)
            elif size in image_sizes(image):
                job = self._finished_job(image["uuid"], image_id)
                if job is not None:
                    return image, job
        return None

    def _finished_job(self, image_uuid, image_id):
        """The Succeeded AddImage job that made ``image_uuid`` (for ``image_id``, when given), or None."""
        for job in self.api.add_image_jobs(["targetResourceUuid=%s" % image_uuid, "state=Succeeded"]):
            if image_id is None or job_image_id(job) == image_id:
                return job
        return None

    def _existing_job(self, image_id, name, storage_uuid):
        """The details entry of an unfinished job for ``image_id`` uploading image ``name`` to the storage, or None."""
        mine, foreign = [], []
        for detail in self.api.upload_job_details(image_id):
            image = self.api.get_image(detail.get("imageUuid") or "") if detail.get("imageUuid") else None
            if image is not None and image.get("name") == name and on_storage(image, storage_uuid):
                mine.append(detail)
            else:
                foreign.append((detail, image))
        if not mine:
            if foreign:
                detail, image = foreign[0]
                raise ImageStoreError("image_id %s is in use by upload job %s (%s), which uploads %s; give another image_id, or remove "
                                      "that job with upload_session_absent" % (
                                          image_id, detail.get("longJobUuid"), detail.get("longJobState"),
                                          "image %r to backup storage %s" % (image.get("name"), ", ".join(
                                              r.get("backupStorageUuid") for r in image.get("backupStorageRefs") or []))
                                          if image else "an image that no longer exists"))
            return None
        rank = {"Running": 0, "Suspended": 1}
        mine.sort(key=lambda d: (rank.get(d.get("longJobState"), 2), -parse_offset(d.get("offset"))))
        chosen = mine[0]
        if chosen.get("longJobState") not in rank:
            raise ImageStoreError("upload job %s for image_id %s is %s; run again once ZStack has finished with it"
                                  % (chosen.get("longJobUuid"), image_id, chosen.get("longJobState")))
        if len(mine) > 1:
            self.warn("%d unfinished upload jobs carry image_id %s (%s); resuming %s" % (
                len(mine), image_id, ", ".join(d.get("longJobUuid") for d in mine), chosen.get("longJobUuid")))
        return chosen

    def _submit(self, image_id, options, storage_uuid):
        """Submit the upload job and wait for it to run; (its details entry, True when another run's job was taken over).

        Never a second job for one image_id: when the submit's answer is lost the job may exist, and when ZStack refuses
        the submit (SYS.1007) another run may have submitted one since the details call; either way the unfinished job
        this collection submitted for the image_id (same name, same backup storage) is taken over if there is one.
        """
        try:
            job = self.api.submit_add_image(image_id, add_image_params(options, storage_uuid, image_id))
        except TransportError as exc:
            found = self._submitted_job(image_id, options["name"], storage_uuid, LOST_SUBMIT_WAIT)
            if found is None:
                raise TransportError("%s; no upload job for image_id %s appeared on ZStack within %d seconds: run again (a job that "
                                     "appears later is found and resumed, none is submitted twice)" % (exc.message, image_id, LOST_SUBMIT_WAIT),
                                     status=exc.status, code=exc.code)
            return self._started_detail(image_id, found["uuid"]), False
        except ZStackApiError as exc:
            if exc.code != INVALID_ARGUMENT:
                raise
            found = self._submitted_job(image_id, options["name"], storage_uuid)
            if found is None:
                raise
            self.warn("upload job %s for image_id %s was submitted by another run meanwhile; this run joins it" % (found["uuid"], image_id))
            return self._started_detail(image_id, found["uuid"]), True
        return self._started_detail(image_id, job["uuid"]), False

    def _submitted_job(self, image_id, name, storage_uuid, wait=0):
        """The unfinished upload job this collection submitted for ``image_id`` uploading ``name`` to the storage, or None.

        ``wait``: seconds to keep looking (ZStack creates a long job after it has answered the submit).
        """
        end = time.monotonic() + wait
        delay = POLL_FIRST
        while True:
            for job in self.api.jobs_of_image_id(image_id):
                data = job_data(job)
                if job.get("state") not in FINAL_STATES and data.get("name") == name and storage_uuid in (data.get("backupStorageUuids") or []):
                    return job
            if time.monotonic() >= end:
                return None
            delay = self.api.pause(delay, "looking for the upload job of image_id %s" % image_id)

    def _started_detail(self, image_id, job_uuid):
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

    def _verify(self, image, size, md5, storage_uuid):
        """The stored size and the server's MD5 must be the file's; an image without MD5 gets one computed."""
        if size not in image_sizes(image):
            raise ImageStoreError("verification failed: image %s is Ready with actualSize %s and size %s, the file has %d bytes"
                                  % (image.get("uuid"), image.get("actualSize"), image.get("size"), size))
        server_md5 = (image.get("md5Sum") or "").lower()
        if not server_md5:
            try:
                image = self.api.calculate_image_hash(image["uuid"], storage_uuid) or image
                server_md5 = (image.get("md5Sum") or "").lower()
            except ApiError as exc:
                self.warn("could not have ZStack compute the MD5 of image %s: %s" % (image.get("uuid"), exc.message))
        if not server_md5:
            self.warn("ZStack reports no MD5 for image %s; only its size was verified" % image.get("uuid"))
        elif server_md5 != md5:
            raise ImageStoreError("verification failed: ZStack computed MD5 %s for image %s, the file's MD5 is %s (an image_id "
                                  "shared by different content?)" % (server_md5, image.get("uuid"), md5))
        return image

    # -- finding upload jobs for the session modules ----------------------------------------
    def _views(self, finished):
        """The upload jobs named by session_id or image_id, as views; ``finished``: also final jobs found by image_id."""
        self._need_credentials()
        if self.params.get("session_id"):
            job_uuid = check_job_uuid(self.params["session_id"])
            job = self.api.get_long_job(job_uuid)
            if job is None:
                return []
            image_id = job_image_id(job)
            detail = None
            if job.get("state") not in FINAL_STATES and image_id:
                detail = self.api.job_detail(image_id, job_uuid)
            return [self._view(job, detail, image_id)]
        if self.params.get("image_id"):
            image_id = check_image_id(self.params["image_id"])
            views = [self._view(None, d, image_id) for d in self.api.upload_job_details(image_id)]
            if finished:
                seen = set(v["uuid"] for v in views)
                views += [self._view(j, None, image_id) for j in self.api.jobs_of_image_id(image_id)
                          if j.get("uuid") not in seen and j.get("state") in FINAL_STATES]
            return views
        raise ImageStoreError("provider zstack finds upload jobs by session_id (the long job uuid image_upload returned) or by "
                              "image_id; give one of them")

    def _view(self, job, detail, image_id):
        job_uuid = (detail or {}).get("longJobUuid") or job["uuid"]
        if job is None:
            job = self.api.get_long_job(job_uuid) or {}
        image_uuid = (detail or {}).get("imageUuid") or job_image_uuid(job)
        image = self.api.get_image(image_uuid) if image_uuid else None
        sizes = image_sizes(image)
        return {"uuid": job_uuid, "state": (detail or {}).get("longJobState") or job.get("state"), "job": job, "detail": detail,
                "image_id": image_id, "image_uuid": image_uuid, "image": image, "size": sizes[0] if sizes else None,
                "offset": parse_offset(detail.get("offset")) if detail else None}

    def _record(self, view):
        state, size, offset = view["state"], view["size"], view["offset"]
        missing = []
        if state in ("Failed", "Canceled"):
            size = None
        elif state != "Succeeded" and size and offset is not None and offset < size:
            missing = [(offset, size - 1)]
        image = view["image"] or {}
        return session_record(self.name, view["uuid"], (state or "unknown").lower(), size, missing, expires=None,
                              raw=view["detail"] if view["detail"] is not None else view["job"],
                              image_id=view["image_id"], image_uuid=view["image_uuid"], offset=offset,
                              upload_url=(view["detail"] or {}).get("imageUploadUrl"), name=image.get("name"),
                              image_status=image.get("status"), error=job_error(view["job"]) if state != "Succeeded" else None)

    # -- upload_session_info ------------------------------------------------------------------
    def sessions(self):
        return [self._record(v) for v in self._views(finished=False)]

    # -- upload_session_commit ----------------------------------------------------------------
    def commit(self):
        views = self._views(finished=True)
        if not views:
            raise ImageStoreError("no upload job for %s on ZStack" % self._named())
        unfinished = [v for v in views if v["state"] not in FINAL_STATES]
        if not unfinished:
            done = next((v for v in views if v["state"] == "Succeeded"), None)
            if done is not None:
                status = (done["image"] or {}).get("status")
                return {"changed": False, "session": self._record(done), "image_uuid": done["image_uuid"], "long_job_uuid": done["uuid"],
                        "status": status, "msg": "upload job %s already succeeded; image %s is %s" % (done["uuid"], done["image_uuid"], status or "gone")}
            view = views[0]
            raise ImageStoreError("upload job %s %s: %s" % (view["uuid"], view["state"].lower(), job_error(view["job"]) or "no reason given"),
                                  details={"session": self._record(view)})
        view = unfinished[0]
        record = self._record(view)
        if view["state"] != "Running" or (view["size"] and view["offset"] is not None and view["offset"] < view["size"]) \
                or (not view["size"] and not view["offset"]):
            raise ImageStoreError("upload job %s is %s and cannot finish: %s; run image_upload again to send the rest" % (
                view["uuid"], view["state"], self._progress_text(view)), details={"missing_ranges": record["missing_ranges"], "session": record})
        if self.check_mode:
            return {"changed": True, "session": record, "image_uuid": view["image_uuid"], "long_job_uuid": view["uuid"], "status": None,
                    "msg": "upload job %s has every byte; would wait for image %s to become Ready" % (view["uuid"], view["image_uuid"])}
        image = self.api.wait_ready(view["image_uuid"], view["uuid"])[0]
        return {"changed": True, "session": record, "image_uuid": view["image_uuid"], "long_job_uuid": view["uuid"], "status": image.get("status"),
                "msg": "upload job %s succeeded; image %s is Ready" % (view["uuid"], view["image_uuid"])}

    def _named(self):
        if self.params.get("session_id"):
            return "session_id %s" % self.params["session_id"]
        return "image_id %s" % self.params.get("image_id")

    @staticmethod
    def _progress_text(view):
        if view["size"] and view["offset"] is not None:
            return "%d of %d bytes received, bytes %d-%d missing" % (view["offset"], view["size"], view["offset"], view["size"] - 1)
        return "nothing received yet" if not view["offset"] else "%d bytes received" % view["offset"]

    # -- upload_session_absent ----------------------------------------------------------------
    def absent(self):
        purge = bool(self.params.get("purge"))
        views = self._views(finished=purge)
        cancel = [v for v in views if v["state"] not in FINAL_STATES]
        canceled, purged = [], []
        for view in cancel:
            if not self.check_mode:
                try:
                    self.api.cancel_long_job(view["uuid"])
                except ZStackApiError as exc:
                    if exc.code not in (INVALID_ARGUMENT, NOT_FOUND):
                        raise
                    job = self.api.get_long_job(view["uuid"])       # it ended meanwhile: keep a Succeeded job's image
                    view["state"] = (job or {}).get("state", "Canceled")
                    if view["state"] == "Succeeded":
                        continue
            canceled.append(view["uuid"])
        if purge:
            for view in views:
                if view["state"] == "Succeeded" or not view["image_uuid"]:
                    continue
                if self._purge_image(view["image_uuid"]):
                    purged.append(view["image_uuid"])
        changed = bool(canceled or purged)
        if changed:
            msg = "%s %d upload job(s)%s" % ("would cancel" if self.check_mode else "canceled", len(canceled),
                                             ", %s %d image(s)" % ("would delete and expunge" if self.check_mode else "deleted and expunged",
                                                                   len(purged)) if purge else "")
        else:
            msg = "no unfinished upload job for %s%s" % (self._named(), " and no half-uploaded image" if purge else "")
        return {"changed": changed, "deleted": canceled, "purged": purged, "msg": msg}

    def _purge_image(self, image_uuid):
        """Delete and expunge an image that is not a finished upload; False when it is gone already."""
        image = self.api.get_image(image_uuid)
        if image is None:
            return False
        if self.check_mode:
            return True
        storages = [r.get("backupStorageUuid") for r in image.get("backupStorageRefs") or [] if r.get("backupStorageUuid")]
        try:
            if image.get("status") != "Deleted":
                self.api.delete_image(image_uuid)
            self.api.expunge_image(image_uuid, storages)
        except ZStackApiError as exc:
            if exc.code != NOT_FOUND:
                raise
        return True
