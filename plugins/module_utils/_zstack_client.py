# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ZStack wire client (private): one method per call of the REST API v1 and of the image store's slice receiver.

Protocol facts: shared/protocols/zstack.md. What this client decides (and nothing else):

* authentication through the shared TokenSession: ``logInByAccount`` with the SHA-512 of the password,
  ``Authorization: OAuth <session>`` on every call, log in again once when a call says ``ID.1001`` (a sync
  call at once, an async call on its api-job poll: the API never ran, so the whole call is repeated),
  logout at the end; no message ever holds a session uuid;
* one retry loop, the HTTP layer's: ``classify`` tells it that a 503 carrying a ZStack ErrorCode is an
  answer of the API (never repeated) unless its code says the call never ran (``SYS.1009``-``SYS.1012``)
  or it carries Retry-After; a 503 without an ErrorCode (a proxy, a node restarting) is an outage;
* async calls (202 ``{"location"}``) are polled through ``poll_until`` on the endpoint the module talks to;
* RestServer's plain-text answers (400 missing Authorization, 404 unknown API or expired api-job, 405);
* GetUploadImageJobDetails is PUT in the docs and GET in the code: the one that did not answer 405 is
  remembered per endpoint;
* the slice POST goes to the image store's URL (another host in real deployments): no credential is sent
  there, and its answers are sorted into accepted / present / conflict / geometry refused / other.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import re
import uuid

try:
    from urllib.parse import quote
except ImportError:  # pragma: no cover - Python 2 is not supported, but sanity imports on it
    from urllib import quote

from ansible_collections.imagestore.upload.plugins.module_utils._errors import ApiError, Conflict, ImageStoreError
from ansible_collections.imagestore.upload.plugins.module_utils._http import OK, RETRY, HttpClient
from ansible_collections.imagestore.upload.plugins.module_utils._tokens import TokenSession
from ansible_collections.imagestore.upload.plugins.module_utils._wait import poll_until
from ansible_collections.imagestore.upload.plugins.module_utils._zstack_multipart import MultipartSlice

API = "/zstack/v1"
UPLOAD_TAG = "uploadImage::"
FINAL_STATES = ("Succeeded", "Failed", "Canceled")
LOGIN_FAILED = "ID.1000"
SESSION_INVALID = "ID.1001"
NOT_FOUND = "SYS.1003"
OPERATION_ERROR = "SYS.1006"
INVALID_ARGUMENT = "SYS.1007"
#: SysErrors of a call that never ran (no route, management node not ready, undeliverable, node unavailable): retried
TRANSIENT_CODES = ("SYS.1009", "SYS.1010", "SYS.1011", "SYS.1012")
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


def classify(response):
    """The HTTP layer's hook: a 503 with an ErrorCode is the API's answer (OK: the caller reads it), unless the call never
    ran (TRANSIENT_CODES) or the server asks to come back later (Retry-After): RETRY. Anything else: the default rule."""
    if response.status_code != 503:
        return None
    error = zstack_error(response)
    if error is None:
        return None
    if error.get("code") in TRANSIENT_CODES or response.headers.get("Retry-After"):
        return RETRY
    return OK


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


class ZStackApiError(ApiError):
    """A ZStack API answered with an ErrorCode (the 503 of a sync call, or of an async call's api-job)."""

    def __init__(self, what, error, status=503):
        self.error = error
        super(ZStackApiError, self).__init__("%s failed: %s" % (what, describe_error(error)), status=status, code=error.get("code"))


class SliceConflict(Conflict):
    """409 (the slice is being received from another request), 416 (Content-Range disagrees) or 400 ``SYS.1006`` (the job
    takes no bytes now: suspended, or done): re-read and re-plan."""

    def __init__(self, message, status, server_offset=None, retried=False):
        super(SliceConflict, self).__init__(message, status=status)
        self.server_offset = server_offset
        self.retried = retried      # the answer to a repeated attempt: an earlier one may have landed


class SliceGridError(ImageStoreError):
    """The receiver refused a slice's geometry (offset, size): the job's slice size is not the one used."""

    def __init__(self, message, slice_size=None):
        super(SliceGridError, self).__init__(message, status=400)
        self.slice_size = slice_size


class ZStackClient:
    """The ZStack calls of an upload over the shared HttpClient, within its deadline."""

    def __init__(self, http, username, password, deadline):
        self.http = http
        self.username = username
        self.password = password
        self.deadline = deadline
        self.tokens = TokenSession(self._login, self._logout, lambda exc: exc.code == SESSION_INVALID)

    # -- plumbing ---------------------------------------------------------------------------------
    def _request(self, method, path, what, token, body=None, params=None, expect=(200, 202), **kwargs):
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = "OAuth %s" % token
        if body is not None:
            kwargs["json"] = body
        response = self.http.request(method, path, expect=expect, headers=headers, params=params,
                                     idempotent=method != "POST", what=what, **kwargs)
        if response.status_code == 503:         # classify() let it through: the API's answer
            raise ZStackApiError(what, zstack_error(response))
        return response

    @staticmethod
    def _json(response, what):
        if not response.content.strip():
            return {}
        data = HttpClient.json(response, what)
        if not isinstance(data, dict):
            raise ApiError("%s: the answer is not a JSON object" % what, status=response.status_code)
        return data

    def _location(self, response, what):
        location = self._json(response, what).get("location")
        if not location:
            raise ApiError("%s: the server accepted the call (202) but gave no api-job location" % what, status=202)
        at = location.find(API + "/api-jobs/")
        # the api-job lives on the management node we talk to, whatever host name it puts in the location
        return self.http.endpoint + location[at:] if at >= 0 else location

    def _poll(self, location, what, token):
        """The result of an api-job: 202 while it runs, 200 with the result, 503 with the error, 404 once forgotten."""
        def fetch():
            response = self._request("GET", location, what, token, expect=(200, 202, 404))
            if response.status_code == 404:
                raise ApiError("%s failed: the server no longer knows the call's api-job (it keeps results 3 hours)" % what, status=404)
            return self._json(response, what) if response.status_code == 200 else None

        return poll_until(fetch, lambda data: data is not None, self.deadline, what)

    def call(self, method, path, what, body=None, params=None, tolerate=()):
        """A sync or async API call: (200, the JSON result) or (a ``tolerate``d status, None). ``ID.1001`` from the call or
        its api-job logs in again and repeats the call once (the API did not run)."""
        def once(token):
            response = self._request(method, path, what, token, body=body, params=params, expect=(200, 202) + tuple(tolerate))
            if response.status_code in tolerate:
                return response.status_code, None
            if response.status_code == 202:
                return 200, self._poll(self._location(response, what), what, token)
            return 200, self._json(response, what)

        return self.tokens.call(once)

    # -- sessions ---------------------------------------------------------------------------------
    def _login(self):
        if not self.username or not self.password:
            raise ImageStoreError("provider zstack needs username and password (a ZStack account allowed to add images)")
        what = "login to ZStack at %s as %s" % (self.http.endpoint, self.username)
        body = {"logInByAccount": {"accountName": self.username, "password": sha512_hex(self.password)}}
        try:
            response = self._request("PUT", API + "/accounts/login", what, None, body=body)
            data = self._poll(self._location(response, what), what, None) if response.status_code == 202 else self._json(response, what)
        except ZStackApiError as exc:
            if exc.code == LOGIN_FAILED:        # no HTTP status: the 503 is only RestServer's envelope of the refusal
                raise ImageStoreError("%s failed (%s): check username and password" % (what, describe_error(exc.error)), code=exc.code)
            raise
        session = (data.get("inventory") or {}).get("uuid")
        if not session:
            raise ApiError("%s: the answer has no session uuid" % what)
        return session

    def _logout(self, session):
        """End the session (an already expired one is not an error)."""
        what = "log out of ZStack"
        try:
            self._request("DELETE", "%s/accounts/sessions/%s" % (API, session), what, session, expect=(200, 202, 204, 404), retry=False)
        except ZStackApiError as exc:
            if exc.code != SESSION_INVALID:
                raise

    def logout(self):
        self.tokens.logout()

    # -- queries ----------------------------------------------------------------------------------
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

    # -- the upload job ---------------------------------------------------------------------------
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
        """Cancel an unfinished job; False when it had ended already (Succeeded, Failed: refused) or is gone."""
        try:
            self._long_job_action(job_uuid, "cancelLongJob", "cancel upload job %s" % job_uuid)
        except ZStackApiError as exc:
            if exc.code not in (INVALID_ARGUMENT, NOT_FOUND):
                raise
            return False
        return True

    def delete_image(self, image_uuid):
        self.call("DELETE", "%s/images/%s" % (API, image_uuid), "delete image %s" % image_uuid, params={"deleteMode": "Permissive"})

    def expunge_image(self, image_uuid, storage_uuids):
        body = {"expungeImage": {"backupStorageUuids": list(storage_uuids)}}
        self.call("PUT", "%s/images/%s/actions" % (API, image_uuid), "expunge image %s" % image_uuid, body=body)

    def calculate_image_hash(self, image_uuid, storage_uuid, algorithm="MD5"):
        body = {"calculateImageHash": {"backupStorageUuid": storage_uuid, "algorithm": algorithm}}
        what = "calculate the %s of image %s" % (algorithm, image_uuid)
        data = self.call("PUT", "%s/images/%s/actions" % (API, image_uuid), what, body=body)[1]
        return data.get("inventory")

    # -- long jobs --------------------------------------------------------------------------------
    def wait_long_job_started(self, job_uuid):
        """Poll a new long job until it runs with its ``jobResult`` set (the image exists with its upload URL)."""
        def started(job):
            if job is None:
                raise ImageStoreError("upload job %s disappeared right after it was submitted" % job_uuid)
            state = job.get("state")
            if state in ("Failed", "Canceled"):
                raise ImageStoreError("upload job %s %s before it started: %s" % (job_uuid, state.lower(), job_error(job) or "no reason given"))
            return state == "Succeeded" or (state in ("Running", "Suspended") and bool(job.get("jobResult")))

        return poll_until(lambda: self.get_long_job(job_uuid), started, self.deadline, "waiting for upload job %s to start" % job_uuid)

    def wait_ready(self, image_uuid, job_uuid):
        """Poll until the image is Ready and its long job Succeeded: (image, job). Fails on Failed/Canceled/Suspended (the last
        one retryable: a re-run resumes it)."""
        def fetch():
            return self.get_long_job(job_uuid), self.get_image(image_uuid)

        def ready(pair):
            job, image = pair
            state = (job or {}).get("state")
            if state in ("Failed", "Canceled"):
                raise ImageStoreError("upload job %s %s: %s" % (job_uuid, state.lower(), job_error(job) or "no reason given"),
                                      details={"long_job_uuid": job_uuid, "image_uuid": image_uuid})
            if image is None:
                raise ImageStoreError("image %s disappeared before it became Ready (deleted, or its upload job was canceled)" % image_uuid)
            if image.get("status") == "Ready" and state in ("Succeeded", None):
                return True
            if state == "Suspended":
                raise ImageStoreError("upload job %s was suspended before image %s became Ready (%s); run again to resume it"
                                      % (job_uuid, image_uuid, job_error(job) or "no reason given"), retryable=True)
            return False

        job, image = poll_until(fetch, ready, self.deadline, "waiting for image %s to become Ready" % image_uuid)
        return image, job

    # -- the slice receiver -------------------------------------------------------------------------
    def send_slice(self, url, image_uuid, image_size, index, start, end, source, filename):
        """POST one slice to the image store: "accepted" (200, or 406 answering a retry: the attempt whose answer was lost had
        landed) or "present" (406: received before). Raises SliceConflict on 409/416 and on 400 ``SYS.1006`` (the job takes no
        bytes now), SliceGridError when the receiver refuses the slice geometry, ApiError otherwise (404: the image is gone).

        The receiver is another host than the API in real deployments: no Authorization goes there.
        """
        boundary = "imagestore-upload-%s" % uuid.uuid4().hex
        headers = {
            "Content-Type": "multipart/form-data; boundary=%s" % boundary,
            "Content-Length": str(MultipartSlice(source, start, end, filename, boundary).len),
            "X-IMAGE-UUID": image_uuid, "X-IMAGE-SIZE": str(image_size), "X-SLICE-OFFSET": str(start),
            "X-SLICE-SIZE": str(end - start + 1), "X-SLICE-INDEX": str(index),
            "Content-Range": "bytes %d-%d/%d" % (start, end, image_size),
        }
        attempts = []

        def body():
            attempts.append(len(attempts) + 1)
            return MultipartSlice(source, start, end, filename, boundary)

        what = "send slice %d (bytes %d-%d) of image %s" % (index, start, end, image_uuid)
        response = self.http.request("POST", url, expect=(200, 400, 404, 406, 409, 416), body=body, headers=headers, what=what,
                                     same_origin=False)
        status = response.status_code
        if status == 200:
            return "accepted"
        if status == 406:
            return "accepted" if len(attempts) > 1 else "present"
        code, message = parse_error(response)
        detail = "%s%s" % ("%s " % code if code else "", message)
        if status in (409, 416):
            try:
                server_offset = response.json().get("serverOffset")
            except (ValueError, AttributeError):
                server_offset = None
            raise SliceConflict("%s: HTTP %d %s" % (what, status, detail), status, server_offset)
        if status == 400 and code == OPERATION_ERROR:
            raise SliceConflict("%s: HTTP 400 %s" % (what, detail), 400, retried=len(attempts) > 1)
        if status == 400:
            hint = SLICE_SIZE_HINT_RE.search(message or "")
            if hint or "SLICE-OFFSET" in (message or ""):
                raise SliceGridError("%s failed: HTTP 400 %s" % (what, detail), int(hint.group(1) or hint.group(2)) if hint else None)
        if status == 404:
            raise ApiError("%s failed: the image store no longer takes bytes for this image (its upload job was canceled, failed "
                           "or expired): HTTP 404 %s" % (what, detail), status=404, code=code)
        raise ApiError("%s failed: HTTP %d %s" % (what, status, detail), status=status, code=code)
