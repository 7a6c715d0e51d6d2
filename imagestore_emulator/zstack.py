"""ZStack part of the emulator: REST API v1 and the image-store slice receiver.

Serves ``/zstack/v1/...`` (sessions, the asynchronous api-job envelope, queries, long jobs and the
resumable image upload of ``GetUploadImageJobDetails``) and ``POST /imagestore/upload`` (the receiver
the web console sends slices to). It follows ``shared/protocols/zstack.md`` and the seed
``shared/seeds/003_*.txt``; where the note leaves a question the zstackio/zstack sources decided:

* ``rest/.../RestServer.java``: sync failure = 503 ``{"error": ErrorCode}``; async call = 202
  ``{"location"}``, poll 202 ``{}`` / 200 / 503, 404 "the job has been expired"; transport errors
  (missing Authorization, no API mapping, wrong method, body without the action key, bad query)
  are plain-text 400/404/405. ``doAuth`` accepts any OAuth token and the session is checked by the
  API interceptor, so an unknown or expired session fails an async call through its api-job (503
  ``ID.1001`` on the poll) and a sync call with 503 ``ID.1001``.
* ``longjob/.../LongJobApiInterceptor.java``: cancel refused for Succeeded/Failed, resume only
  Suspended, delete only Succeeded/Canceled/Failed, all as argument errors (``SYS.1007``). The
  sources have no duplicate check for ``uploadImage::<imageId>``; the emulator refuses a second
  non-final job for the same imageId with ``SYS.1007`` too.
* ``image/.../ImageManagerImpl.java`` (GetUploadImageJobDetails): only non-final jobs carrying the
  tag, and only once their image and its backup-storage ref exist (a Waiting job is not listed).
* ``image/.../UploadImageTracker.java``: no byte within the idle limit of tracking start ->
  ``SYS.1006`` "upload session expired" and the image is deleted directly (gone, not ``Deleted``);
  idle after bytes arrived -> ``IMG.1001`` wrapped in ``LONG_JOB.1002``, job Suspended, image kept.
  A resume restarts the timer.
* ``longjob/.../LongJobManagerImpl.java`` and ``LongJobUtils``: ``jobResult`` is the JSON text of the
  AddImage event (``{"inventory": ImageInventory, ...}``) while tracking and on success, the JSON of
  the ErrorCode on failure, suspension or cancel; a resume keeps the suspension error there.
* ``image/.../ImageApiInterceptor.java``: ISO forces format iso; formats qcow2/raw/vmdk/iso; a backup
  storage that is not Connected is an operation error (``SYS.1006``), an unknown uuid ``SYS.1003``.
* ``image/.../ImageBase.java``: expunge needs the image Deleted on the named storage; calculateImageHash
  keeps an md5Sum that is already set (so it only validates and returns the inventory here).

The slice receiver is closed source; its rules are the brief's: see ``_slice_rules``.

Fault injection (``imagestore_emulator/faults.py``) names the operations login, logout, poll, query, submit,
details, action, delete, slice and other (``operation``). ``expire`` on a slice idle-suspends its long job at once
(the slice is then refused with 400 ``SYS.1006`` and the job waits for a resume); on an API call it drops the
caller's OAuth session (``ID.1001`` follows). ``status`` 503 answers ``{"error": ErrorCode}`` with ``SYS.1010``
(management server not ready: the call did not run), as RestServer wraps a failed API; any other status is plain
text, as RestServer's own answers (500 carries the exception's message) and a proxy's are.
"""

import base64
import binascii
import bisect
import copy
import hashlib
import json
import os
import re
import threading
import time
from uuid import uuid4

from imagestore_emulator.core import COPY_BLOCK, ProviderAPI, Response, read_json, write_json_atomic

API_PREFIX = "/zstack/v1"
UPLOAD_PATH = "/imagestore/upload"
BASE_URL_TOKEN = "{zstack-emulator-base-url}"     # stored in place of the base URL, which a restart may change
BACKUP_STORAGE_UUID = "5c0fa9b2e4d14f0c9a1b7e3d2c6f8a90"
MANAGEMENT_NODE_UUID = "e7a1c3f5b9d24e6f8a0c2e4f6a8b0d1c"
BACKUP_STORAGE_CAPACITY = 16 * 1024 ** 4
STAGE_SECONDS = 0.05            # a long job stays Waiting, then Running without jobResult, this long
API_JOB_TTL = 3 * 3600          # RestServer keeps api-job results 3 hours
MAX_PART_HEADERS = 64 * 1024
FINAL_STATES = ("Succeeded", "Failed", "Canceled")
MEDIA_TYPES = ("RootVolumeTemplate", "ISO", "DataVolumeTemplate")
FORMATS = ("qcow2", "raw", "vmdk", "iso")
PLATFORMS = ("Linux", "Windows", "Other", "Paravirtualization", "WindowsVirtio")
ARCHITECTURES = ("x86_64", "aarch64", "mips64el", "loongarch64")
HASH_ALGORITHMS = ("MD5", "SHA1", "SHA256")
UPLOAD_TAG = "uploadImage::"
UUID_RE = re.compile(r"[0-9a-f]{32}")
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
CONTENT_RANGE_RE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# conf/errorCodes/*.xml
DESCRIPTIONS = {
    "SYS.1003": "A resource can not be found",
    "SYS.1006": "An operation failed",
    "SYS.1007": "One or more API argument is invalid",
    "SYS.1010": "Management server is not ready to serve",
    "ID.1000": "Unable to authenticate a user",
    "ID.1001": "The session is invalid, either wrong session id or the session has been expired",
    "LONG_JOB.1000": "long job has been canceled",
    "LONG_JOB.1002": "some error interrupt the job, fix error then resume the job or cancel the job if you dont want to continue.",
    "IMG.1001": "upload image interrupted",
}

PUBLIC, SYNC, ASYNC = "public", "sync", "async"

# path below /zstack/v1 -> {method: (handler, kind, action names the body must carry)}
ROUTES = (
    (r"/accounts/login", {"PUT": ("login", PUBLIC, ("logInByAccount",))}),
    (r"/accounts/sessions/(?P<uuid>[^/]+)", {"DELETE": ("logout", PUBLIC, ())}),
    (r"/api-jobs/(?P<uuid>[^/]+)", {"GET": ("poll", PUBLIC, ())}),
    (r"/images", {"GET": ("query_images", SYNC, ())}),
    (r"/images/upload-job/details/(?P<image_id>[^/]+)", {"GET": ("job_details", SYNC, ()), "PUT": ("job_details", SYNC, ())}),
    (r"/images/(?P<uuid>[^/]+)", {"GET": ("query_images", SYNC, ()), "DELETE": ("delete_image", ASYNC, ())}),
    (r"/images/(?P<uuid>[^/]+)/actions", {"PUT": ("image_action", ASYNC, ("expungeImage", "calculateImageHash"))}),
    (r"/backup-storage", {"GET": ("query_backup_storage", SYNC, ())}),
    (r"/backup-storage/(?P<uuid>[^/]+)", {"GET": ("query_backup_storage", SYNC, ())}),
    (r"/longjobs", {"GET": ("query_longjobs", SYNC, ()), "POST": ("submit_longjob", ASYNC, ())}),
    (r"/longjobs/(?P<uuid>[^/]+)", {"GET": ("query_longjobs", SYNC, ()), "DELETE": ("delete_longjob", ASYNC, ())}),
    (r"/longjobs/(?P<uuid>[^/]+)/actions", {"PUT": ("longjob_action", ASYNC, ("resumeLongJob", "cancelLongJob"))}),
)

# handler of ROUTES -> the operation name fault rules match on (see ZStackAPI.operation)
OPERATION_NAMES = {
    "login": "login", "logout": "logout", "poll": "poll", "query_images": "query", "query_backup_storage": "query",
    "query_longjobs": "query", "submit_longjob": "submit", "job_details": "details", "longjob_action": "action",
    "image_action": "action", "delete_image": "delete", "delete_longjob": "delete",
}

# RestServer.QUERY_OP_MAPPING order: an operator contained in another one comes after it
QUERY_OPS = ("!=", ">=", "<=", "!?=", "!~=", "~=", "?=", "=", ">", "<", " is null", " not null")


def error_code(code, details, cause=None):
    """A ZStack ErrorCode document."""
    return {"code": code, "description": DESCRIPTIONS[code], "details": details, "elaboration": None, "cause": cause, "opaque": None}


class ZStackError(Exception):
    """An API failure carrying a ZStack ErrorCode (503 for sync calls, the api-job's 503 for async ones)."""

    def __init__(self, code, details, cause=None):
        super().__init__(details)
        self.error = error_code(code, details, cause)


class RestError(Exception):
    """A failure RestServer answers itself, as plain text, before any API runs."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class SliceRejected(Exception):
    """A slice the receiver refuses: HTTP status and the JSON body to answer."""

    def __init__(self, status, code, details, server_offset=None):
        super().__init__(details)
        self.status = status
        self.body = {"error": error_code(code, details)}
        if server_offset is not None:
            self.body["serverOffset"] = server_offset


class MultipartError(ValueError):
    """The slice body is not the multipart/form-data document the receiver expects."""


def timestamp(epoch=None):
    """A Timestamp as ZStack's Gson writes it, e.g. ``Nov 14, 2017 10:20:57 PM``."""
    tm = time.localtime(epoch)
    return "%s %d, %d %d:%02d:%02d %s" % (MONTHS[tm.tm_mon - 1], tm.tm_mday, tm.tm_year, tm.tm_hour % 12 or 12,
                                          tm.tm_min, tm.tm_sec, "AM" if tm.tm_hour < 12 else "PM")


def new_uuid():
    """A ZStack uuid: 32 lower-case hex digits."""
    return uuid4().hex


def sha512_hex(text):
    """The password digest ZStack clients send to logInByAccount."""
    return hashlib.sha512(text.encode("utf-8")).hexdigest()


def _as_text(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    return None if value is None else str(value)


def _field_values(obj, dotted):
    """Values of a (dotted) field of an inventory, lists flattened; KeyError when the field does not exist."""
    values = [obj]
    for name in dotted.split("."):
        found = []
        for value in values:
            for item in (value if isinstance(value, list) else [value]):
                if not isinstance(item, dict) or name not in item:
                    raise KeyError(dotted)
                found.append(item[name])
        values = found
    flat = []
    for value in values:
        flat.extend(value if isinstance(value, list) else [value])
    return [_as_text(v) for v in flat]


def _compare(op, actual, wanted):
    if op in (" is null", " not null"):
        return (actual is None) == (op == " is null")
    if actual is None:
        return op in ("!=", "!?=", "!~=")
    if op in ("?=", "!?="):
        return (actual in wanted.split(",")) == (op == "?=")
    if op in ("~=", "!~="):
        pattern = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in wanted)
        return bool(re.fullmatch(pattern, actual, re.S)) == (op == "~=")
    if op in ("=", "!="):
        return (actual == wanted) == (op == "=")
    try:
        left, right = float(actual), float(wanted)
    except ValueError:
        left, right = actual, wanted
    return {">": left > right, "<": left < right, ">=": left >= right, "<=": left <= right}[op]


def parse_conditions(raw_conditions):
    """``q=`` query conditions -> [(field, op, value)]; RestError 400 when one has no operator."""
    conditions = []
    for cond in raw_conditions:
        op = next((o for o in QUERY_OPS if o in cond), None)
        if op is None:
            raise RestError(400, "Invalid query parameter. The '%s' in the parameter[q] doesn't contain any query operator." % cond)
        field, _, value = cond.partition(op)
        conditions.append((field.strip(), op, value))
    return conditions


def matches_conditions(inventory, conditions):
    """True when the inventory satisfies every condition (any element of a list field may match)."""
    for field, op, value in conditions:
        actual = _field_values(inventory, field) or [None]
        if op.startswith("!") or op == " is null":
            if not all(_compare(op, a, value) for a in actual):
                return False
        elif not any(_compare(op, a, value) for a in actual):
            return False
    return True


def json_object(value, name):
    """A parameter that must be a JSON object (absent = empty); ZStackError SYS.1007 otherwise."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ZStackError("SYS.1007", "%s must be a JSON object" % name)
    return value


def parse_md5(value):
    """X-SLICE-MD5 / Content-MD5 as hex or base64 -> lower-case hex; ValueError when it is neither."""
    value = value.strip()
    if re.fullmatch(r"[0-9a-fA-F]{32}", value):
        return value.lower()
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 16:
        raise ValueError("not an MD5 digest: %r" % value)
    return raw.hex()


def multipart_boundary(content_type):
    """The boundary of a multipart/form-data Content-Type, as bytes."""
    kind, _, params = (content_type or "").partition(";")
    if kind.strip().lower() != "multipart/form-data":
        raise MultipartError("the slice must be sent as multipart/form-data")
    for param in params.split(";"):
        key, _, value = param.strip().partition("=")
        value = value.strip().strip('"')
        if key.strip().lower() == "boundary" and 0 < len(value) <= 200:
            return value.encode("latin-1")
    raise MultipartError("the multipart/form-data Content-Type has no boundary")


class MultipartReader:
    """Streams the first file part of a multipart/form-data body without holding the body in memory."""

    def __init__(self, body, boundary):
        self._body = body
        self._delimiter = b"\r\n--" + boundary
        self._buf = bytearray(b"\r\n")      # so the opening delimiter looks like every other one

    def _fill(self):
        if self._body.remaining <= 0:
            return False
        self._buf += self._body.read(COPY_BLOCK)
        return True

    def _pump(self, sink):
        """Pass the bytes before the next delimiter to ``sink``, consume the delimiter, return the count."""
        keep = len(self._delimiter) - 1
        total = 0
        while True:
            index = self._buf.find(self._delimiter)
            if index >= 0:
                sink(self._buf[:index])
                del self._buf[:index + len(self._delimiter)]
                return total + index
            if len(self._buf) > keep:
                count = len(self._buf) - keep
                sink(self._buf[:count])
                del self._buf[:count]
                total += count
            if not self._fill():
                raise MultipartError("the multipart body ends before its closing boundary")

    def _part_follows(self):
        while len(self._buf) < 2:
            if not self._fill():
                raise MultipartError("the multipart body ends after a boundary")
        if self._buf[:2] == b"--":
            return False
        while self._buf.find(b"\r\n") < 0:
            if len(self._buf) > 1024 or not self._fill():
                raise MultipartError("malformed multipart boundary line")
        del self._buf[:self._buf.find(b"\r\n") + 2]
        return True

    def _headers(self):
        while self._buf.find(b"\r\n\r\n") < 0:
            if len(self._buf) > MAX_PART_HEADERS or not self._fill():
                raise MultipartError("malformed multipart part headers")
        end = self._buf.find(b"\r\n\r\n")
        text = bytes(self._buf[:end]).decode("latin-1")
        del self._buf[:end + 4]
        headers = {}
        for line in text.split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return headers

    def copy_file_part(self, sink):
        """Feed the content of the first part that has a filename to ``sink``; return its length."""
        self._pump(lambda chunk: None)                  # preamble
        while self._part_follows():
            if "filename=" in self._headers().get("content-disposition", ""):
                return self._pump(sink)
            self._pump(lambda chunk: None)              # a form field: not part of the image
        raise MultipartError("the multipart body has no file part")


class SliceSink:
    """Writes at most ``limit`` bytes of a slice to ``fh`` and digests every byte it is given."""

    def __init__(self, fh, limit):
        self.fh = fh
        self.limit = limit
        self.length = 0
        self.md5 = hashlib.md5()

    def __call__(self, chunk):
        room = self.limit - self.length
        if room > 0:
            self.fh.write(chunk if len(chunk) <= room else chunk[:room])
        self.md5.update(chunk)
        self.length += len(chunk)


class PrefixDigest:
    """MD5 of the first ``offset`` bytes of one long job's data file, advanced over the received slices 0, 1, 2...
    while the upload goes on, so that ``_finalize`` only digests what is left. In memory only (a restarted emulator
    digests from 0) and tied to one job incarnation: ``job`` is the job dict it was made for."""

    def __init__(self, job):
        self.job = job
        self.md5 = hashlib.md5()
        self.offset = 0
        self.lock = threading.Lock()        # held by the one thread advancing it


class ZStackAPI(ProviderAPI):
    """The ZStack management API (``/zstack/v1``) and the image-store receiver (``/imagestore/upload``)."""

    name = "zstack"

    def __init__(self, data_dir, config):
        super().__init__(data_dir, config)
        self._lock = threading.RLock()
        self._routes = [(re.compile(re.escape(API_PREFIX) + pattern), methods) for pattern, methods in ROUTES]
        self._state_path = os.path.join(data_dir, "state.json")
        self._inflight = {}             # image uuid -> slice indexes being written now
        self._finalizing = set()        # long job uuids whose image digest is being computed
        self._digests = {}              # long job uuid -> PrefixDigest of its data file (see _hash_prefix)
        self._stats = self._zero_stats()
        self._state = read_json(self._state_path) or self._seed()
        os.makedirs(self._images_dir(), exist_ok=True)
        for job_uuid, job in self._state["jobs"].items():
            upload = job["upload"]
            if not upload["received"]:
                upload["total"] = upload["slice_size"] = None      # fixed by a first slice the last run never finished
            if job["inventory"]["state"] == "Running" and self._complete(upload):
                self._start_finalize(job_uuid, job)

    # ----------------------------------------------------------------- state

    @staticmethod
    def _zero_stats():
        return {"slice_requests": 0, "slice_bytes": 0, "rejected_slices": 0, "logins": 0, "logouts": 0, "polls": 0}

    @staticmethod
    def _seed():
        now = timestamp()
        storage = {
            "uuid": BACKUP_STORAGE_UUID, "name": "bs", "description": "image store of the emulator", "url": "/zstack_bs",
            "hostname": "127.0.0.1", "username": "root", "sshPort": 22, "type": "ImageStoreBackupStorage", "state": "Enabled",
            "status": "Connected", "totalCapacity": BACKUP_STORAGE_CAPACITY, "availableCapacity": BACKUP_STORAGE_CAPACITY,
            "attachedZoneUuids": [], "createDate": now, "lastOpDate": now,
        }
        return {"backup_storage": {BACKUP_STORAGE_UUID: storage}, "sessions": {}, "api_jobs": {}, "images": {}, "jobs": {}, "next_ref_id": 1}

    def _save(self):
        write_json_atomic(self._state_path, self._state)

    def _images_dir(self):
        return os.path.join(self.data_dir, "images")

    def _data_path(self, image_uuid):
        return os.path.join(self._images_dir(), image_uuid + ".img")

    def reset(self):
        """Forget sessions, jobs and images; back to the seeded backup storage."""
        with self._lock:
            super().reset()
            self._state = self._seed()
            self._inflight = {}
            self._finalizing = set()
            self._digests = {}
            self._stats = self._zero_stats()
            os.makedirs(self._images_dir(), exist_ok=True)
            self._save()

    def describe(self):
        """Shown by /_emulator/health: the seeded backup storage and the receiver path."""
        return {"backup_storage_uuid": BACKUP_STORAGE_UUID, "backup_storage_name": "bs", "upload_path": UPLOAD_PATH}

    def matches(self, path):
        return path.startswith("/zstack/") or path.startswith(UPLOAD_PATH)

    # ----------------------------------------------------------- dispatching

    def handle(self, request):
        """Answer one request of the ZStack API or of the slice receiver."""
        if request.path.startswith(UPLOAD_PATH):
            return self._receive_slice(request)
        for pattern, methods in self._routes:
            match = pattern.fullmatch(request.path)
            if match:
                break
        else:
            return Response.text("no api mapping to %s" % request.path, 404)
        if request.method not in methods:
            return Response.text("The method[%s] is not allowed for the path[%s]" % (request.method, request.path), 405)
        handler, kind, actions = methods[request.method]
        groups = match.groupdict()
        try:
            body = request.json(default={}) if request.method in ("PUT", "POST") else {}
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
        except ValueError as exc:
            return Response.text("invalid JSON body: %s" % exc, 400)
        if actions and not any(name in body for name in actions):
            return Response.text("the body doesn't contain action mapping to the URL[%s]" % request.path, 400)
        with self._lock:
            changed = self._tick()
            try:
                response = self._call(request, handler, kind, body, groups)
            finally:
                if changed or kind == ASYNC:
                    self._save()
        # upload URLs are stored with a token: the URL a client used is the one it can reach
        response.body = response.body.replace(BASE_URL_TOKEN.encode(), request.base_url.encode())
        return response

    def _call(self, request, handler, kind, body, groups):
        try:
            session_error = None if kind == PUBLIC else self._check_session(request)
            if kind == ASYNC:
                return self._async(request, session_error, handler, body, groups)
            if session_error is not None:
                raise ZStackError("ID.1001", session_error)
            return getattr(self, "_api_" + handler)(request, body, **groups)
        except ZStackError as exc:
            return Response.json({"error": exc.error}, 503)
        except RestError as exc:
            return Response.text(str(exc), exc.status)

    def _check_session(self, request):
        """RestError for a missing or foreign Authorization; the ID.1001 details for a bad session; None when valid."""
        auth = request.header("Authorization")
        if auth is None:
            raise RestError(400, "missing header 'Authorization'")
        auth = auth.strip()
        if not auth.startswith("OAuth"):
            raise RestError(400, "Authorization type must be 'OAuth'")
        session = self._state["sessions"].get(auth[len("OAuth"):].strip())
        if session is None:
            return "Session expired"
        session["expires"] = time.time() + float(self.config.get("zstack_session_seconds", 7200))
        return None

    def _async(self, request, session_error, handler, body, groups):
        """Run an async API now and keep its outcome for the api-job poll (202 with the location)."""
        try:
            if session_error is not None:
                raise ZStackError("ID.1001", session_error)
            outcome = {"status": 200, "body": copy.deepcopy(getattr(self, "_api_" + handler)(request, body, **groups))}
        except ZStackError as exc:
            outcome = {"status": 503, "body": {"error": exc.error}}
        job_id = new_uuid()
        outcome.update(created=time.time(), polls=0)
        self._state["api_jobs"][job_id] = outcome
        return Response.json({"location": "%s%s/api-jobs/%s" % (request.base_url, API_PREFIX, job_id)}, 202)

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

    # ---------------------------------------------------------------- auth

    def _api_login(self, request, body):
        params = json_object(body["logInByAccount"], "logInByAccount")
        name, password = params.get("accountName"), params.get("password")
        if not isinstance(name, str) or not isinstance(password, str):
            raise ZStackError("SYS.1007", "missing mandatory field[accountName] or field[password]")
        if name != self.config["zstack_username"] or password.lower() != sha512_hex(str(self.config["zstack_password"])):
            raise ZStackError("ID.1000", "wrong account name or password")
        session_uuid = new_uuid()
        expires = time.time() + float(self.config.get("zstack_session_seconds", 7200))
        account = hashlib.md5(name.encode("utf-8")).hexdigest()
        self._state["sessions"][session_uuid] = {"expires": expires, "accountUuid": account}
        self._save()
        self._stats["logins"] += 1
        return Response.json({"inventory": {"uuid": session_uuid, "accountUuid": account, "userUuid": account, "userType": "Account",
                                            "expiredDate": timestamp(expires), "createDate": timestamp(), "noSessionEvaluation": False}})

    def _api_logout(self, request, body, uuid):
        self._stats["logouts"] += 1
        if self._state["sessions"].pop(uuid, None) is not None:
            self._save()
        return Response.json({})

    def _api_poll(self, request, body, uuid):
        self._stats["polls"] += 1
        job = self._state["api_jobs"].get(uuid)
        if job is None:
            return Response.text("the job has been expired", 404)
        job["polls"] += 1
        if job["polls"] == 1:
            return Response.json({}, 202)
        return Response.json(job["body"], job["status"])

    # -------------------------------------------------------------- queries

    def _query(self, request, inventories, uuid=None):
        if uuid is not None:
            conditions = [("uuid", "=", uuid)]     # GET /<resources>/{uuid} ignores other conditions
        else:
            conditions = parse_conditions(request.query.get("q", []))
        try:
            found = [inv for inv in inventories if matches_conditions(inv, conditions)]
        except KeyError as exc:
            raise ZStackError("SYS.1007", "the query has no field[%s]" % exc.args[0])
        return Response.json({"inventories": found})

    def _api_query_images(self, request, body, uuid=None):
        return self._query(request, self._state["images"].values(), uuid)

    def _api_query_backup_storage(self, request, body, uuid=None):
        used = sum(image["actualSize"] for image in self._state["images"].values())
        storages = [dict(bs, availableCapacity=bs["totalCapacity"] - used) for bs in self._state["backup_storage"].values()]
        return self._query(request, storages, uuid)

    def _api_query_longjobs(self, request, body, uuid=None):
        return self._query(request, [job["inventory"] for job in self._state["jobs"].values()], uuid)

    def _api_job_details(self, request, body, image_id):
        if CONTROL_RE.search(image_id):
            return Response.json({"error": error_code("SYS.1007", "imageId must not contain control characters")}, 400)
        details = []
        for job_uuid, job in self._state["jobs"].items():
            image = self._state["images"].get(job["image_uuid"])
            if job["image_id"] != image_id or job["inventory"]["state"] in FINAL_STATES or image is None:
                continue
            details.append({"longJobUuid": job_uuid, "longJobState": job["inventory"]["state"], "imageUuid": image["uuid"],
                            "imageUploadUrl": image["backupStorageRefs"][0]["installPath"], "offset": self._prefix(job["upload"])})
        return Response.json({"existingJobDetails": details})

    # --------------------------------------------------- long-job lifecycle

    def _api_submit_longjob(self, request, body):
        params = json_object(body.get("params"), "params")
        job_name = params.get("jobName")
        if job_name != "APIAddImageMsg":
            raise ZStackError("SYS.1007", "%s is not an API the emulator runs as a long job (only APIAddImageMsg)" % job_name)
        for field, limit in (("name", 255), ("description", 2048)):
            if params.get(field) is not None and (not isinstance(params[field], str) or len(params[field]) > limit):
                raise ZStackError("SYS.1007", "field[%s] must be a string of at most %d characters" % (field, limit))
        try:
            data = json.loads(params.get("jobData") or "")
        except (TypeError, ValueError):
            raise ZStackError("SYS.1007", "field[jobData] must be the JSON text of the APIAddImageMsg parameters")
        add_image = self._validate_add_image(data)
        job_uuid = self._new_resource_uuid(params.get("resourceUuid"), self._state["jobs"])
        image_id = self._upload_tag(body.get("systemTags") or [])
        if image_id is not None:
            for other_uuid, other in self._state["jobs"].items():
                if other["image_id"] == image_id and other["inventory"]["state"] not in FINAL_STATES:
                    raise ZStackError("SYS.1007", "long job[uuid:%s] for imageId[%s] is %s; resume or cancel it instead of submitting"
                                      " another one" % (other_uuid, image_id, other["inventory"]["state"]))
        now = time.time()
        created = timestamp(now)
        inventory = {"uuid": job_uuid, "name": params.get("name") or job_name, "description": params.get("description"),
                     "apiId": new_uuid(), "jobName": job_name, "jobData": json.dumps(add_image), "jobResult": None, "state": "Waiting",
                     "targetResourceUuid": None, "managementNodeUuid": MANAGEMENT_NODE_UUID, "createDate": created, "lastOpDate": created,
                     "executeTime": None}
        self._state["jobs"][job_uuid] = {
            "inventory": inventory, "params": add_image, "image_id": image_id, "image_uuid": add_image["resourceUuid"], "created": now, "stage_at": now,
            "upload": {"total": None, "slice_size": None, "received": [], "last_activity": now},
        }
        return {"inventory": inventory}

    @staticmethod
    def _new_resource_uuid(wanted, table):
        if wanted is None:
            return new_uuid()
        if not isinstance(wanted, str) or not UUID_RE.fullmatch(wanted) or wanted in table:
            raise ZStackError("SYS.1007", "resourceUuid[%s] must be 32 lower-case hex digits and not in use" % wanted)
        return wanted

    @staticmethod
    def _upload_tag(system_tags):
        if not isinstance(system_tags, list) or not all(isinstance(tag, str) for tag in system_tags):
            raise ZStackError("SYS.1007", "systemTags must be a list of strings")
        ids = [tag[len(UPLOAD_TAG):] for tag in system_tags if tag.startswith(UPLOAD_TAG)]
        if len(ids) > 1:
            raise ZStackError("SYS.1007", "only one %s<imageId> tag is allowed" % UPLOAD_TAG)
        if ids and (not ids[0] or CONTROL_RE.search(ids[0]) or len(ids[0]) > 255):
            raise ZStackError("SYS.1007", "the imageId of %s must be 1 to 255 characters without control characters" % UPLOAD_TAG)
        return ids[0] if ids else None

    def _validate_add_image(self, data):
        """APIAddImageMsg parameters -> normalized copy (ImageApiInterceptor rules); ZStackError when invalid."""
        if not isinstance(data, dict):
            raise ZStackError("SYS.1007", "jobData must be a JSON object")
        params = dict(data)
        name = params.get("name")
        if not isinstance(name, str) or not name or len(name) > 255:
            raise ZStackError("SYS.1007", "field[name] is mandatory and at most 255 characters")
        url = params.get("url")
        if not isinstance(url, str) or not url.startswith("upload://"):
            raise ZStackError("SYS.1007", "field[url] must be upload://<name>: the emulator only takes local uploads")
        params["mediaType"] = params.get("mediaType") or "RootVolumeTemplate"
        for field, valid in (("mediaType", MEDIA_TYPES), ("platform", PLATFORMS), ("architecture", ARCHITECTURES)):
            if params.get(field) is not None and params[field] not in valid:
                raise ZStackError("SYS.1007", "valid value for field[%s] are %s, but %s found" % (field, list(valid), params[field]))
        if params["mediaType"] == "ISO":
            params["format"] = "iso"
        if params.get("format") not in FORMATS:
            raise ZStackError("SYS.1007", "unknown format[%s]" % params.get("format"))
        params["platform"] = params.get("platform") or "Linux"
        params["architecture"] = params.get("architecture") or "x86_64"
        storages = params.get("backupStorageUuids")
        if not isinstance(storages, list) or not storages:
            raise ZStackError("SYS.1007", "field[backupStorageUuids] must be a non-empty list")
        for storage_uuid in storages:
            storage = self._state["backup_storage"].get(storage_uuid)
            if storage is None:
                raise ZStackError("SYS.1003", "invalid field[backupStorageUuids], resource[uuid:%s, type:BackupStorageVO] not found" % storage_uuid)
            if storage["status"] != "Connected" or storage["state"] != "Enabled":
                raise ZStackError("SYS.1006", "no backup storage specified in uuids%s is available for adding this image" % storages)
        params["backupStorageUuids"] = list(dict.fromkeys(storages))
        taken = set(self._state["images"]) | {job["image_uuid"] for job in self._state["jobs"].values()}
        params["resourceUuid"] = self._new_resource_uuid(params.get("resourceUuid"), taken)
        return params

    def _lookup_job(self, uuid):
        job = self._state["jobs"].get(uuid)
        if job is None:
            raise ZStackError("SYS.1003", "invalid field[uuid], resource[uuid:%s, type:LongJobVO] not found" % uuid)
        return job

    def _api_longjob_action(self, request, body, uuid):
        job = self._lookup_job(uuid)
        state = job["inventory"]["state"]
        if "resumeLongJob" in body:
            if state != "Suspended":
                raise ZStackError("SYS.1007", "can only resume longjob that is Suspended")
            self._set_job(job, state="Running")
            job["upload"]["last_activity"] = time.time()
            return {"inventory": job["inventory"]}
        if state in ("Succeeded", "Failed"):
            raise ZStackError("SYS.1007", "cannot cancel longjob that is %s" % state.lower())
        if state != "Canceled":
            self._finish(job, "Canceled", error_code("LONG_JOB.1000", "long job[uuid:%s] has been canceled" % uuid))
            if state in ("Running", "Suspended"):
                self._remove_image(job["image_uuid"])
        return {}

    def _api_delete_longjob(self, request, body, uuid):
        if self._lookup_job(uuid)["inventory"]["state"] not in FINAL_STATES:
            raise ZStackError("SYS.1007", "delete longjob only when it's succeeded, canceled, or failed")
        del self._state["jobs"][uuid]
        self._digests.pop(uuid, None)
        return {}

    # --------------------------------------------------------------- images

    def _lookup_image(self, uuid):
        image = self._state["images"].get(uuid)
        if image is None:
            raise ZStackError("SYS.1003", "invalid field[uuid], resource[uuid:%s, type:ImageVO] not found" % uuid)
        return image

    def _api_delete_image(self, request, body, uuid):
        image = self._lookup_image(uuid)
        mode = request.arg("deleteMode", "Permissive")
        if mode not in ("Permissive", "Enforcing"):
            raise ZStackError("SYS.1007", "deleteMode must be Permissive or Enforcing, not %s" % mode)
        job = self._job_of_image(uuid)[1]
        if job is not None and job["inventory"]["state"] not in FINAL_STATES:
            self._finish(job, "Failed", error_code("SYS.1006", "image[uuid:%s] was deleted during the upload" % uuid))
        image["status"] = "Deleted"
        image["lastOpDate"] = timestamp()
        for ref in image["backupStorageRefs"]:
            ref["status"] = "Deleted"
        return {}

    def _api_image_action(self, request, body, uuid):
        image = self._lookup_image(uuid)
        if "calculateImageHash" in body:
            params = json_object(body["calculateImageHash"], "calculateImageHash")
            if params.get("algorithm", "MD5") not in HASH_ALGORITHMS:
                raise ZStackError("SYS.1007", "algorithm must be one of %s" % list(HASH_ALGORITHMS))
            if params.get("backupStorageUuid") not in [ref["backupStorageUuid"] for ref in image["backupStorageRefs"]]:
                raise ZStackError("SYS.1003", "the image[uuid:%s] is not on the backup storage[uuid:%s]" % (uuid, params.get("backupStorageUuid")))
            if image["status"] != "Ready":
                raise ZStackError("SYS.1006", "the image[uuid:%s] is %s, not Ready" % (uuid, image["status"]))
            return {"inventory": image}
        wanted = json_object(body["expungeImage"], "expungeImage").get("backupStorageUuids")
        if wanted:
            for storage_uuid in wanted:
                ref = next((r for r in image["backupStorageRefs"] if r["backupStorageUuid"] == storage_uuid), None)
                if ref is None or ref["status"] != "Deleted":
                    raise ZStackError("SYS.1007", "the image[uuid:%s, name:%s] is not %s the backup storage[uuid:%s]"
                                      % (uuid, image["name"], "on" if ref is None else "deleted on", storage_uuid))
        elif not any(ref["status"] == "Deleted" for ref in image["backupStorageRefs"]):
            raise ZStackError("SYS.1006", "the image[uuid:%s, name:%s] is not deleted on any backup storage" % (uuid, image["name"]))
        self._remove_image(uuid)
        return {}

    # ------------------------------------------------------- slice receiver

    def _receive_slice(self, request):
        if request.path != UPLOAD_PATH:
            return Response.text("no such path: %s" % request.path, 404)
        if request.method != "POST":
            return Response.text("The method[%s] is not allowed for the path[%s]" % (request.method, request.path), 405)
        with self._lock:
            self._stats["slice_requests"] += 1
        try:
            length = self._store_slice(request)
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
            with open(path, "wb") as fh:
                fh.truncate(total)          # sparse: slices land at their offsets
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
        self._save()
        return accepted and index in upload["received"]

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
                sink = SliceSink(fh, size)
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
                with open(self._data_path(job["image_uuid"]), "rb") as fh:
                    fh.seek(digest.offset)
                    while digest.offset < end:
                        block = fh.read(min(COPY_BLOCK, end - digest.offset))
                        if not block:
                            raise OSError("%s ends before byte %d" % (fh.name, end))
                        digest.md5.update(block)
                        digest.offset += len(block)
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

    # ---------------------------------------------------------- fault hooks

    def operation(self, request):
        """The name fault rules match on: login, logout, poll (api-job GET), query (images, backup-storage and longjobs
        GETs), submit (POST longjobs), details (GetUploadImageJobDetails), action (long-job and image actions),
        delete, slice (the receiver), other (anything else, wrong methods included)."""
        if request.path.startswith(UPLOAD_PATH):
            return "slice"
        for pattern, methods in self._routes:
            if pattern.fullmatch(request.path):
                handler = methods.get(request.method)
                return OPERATION_NAMES.get(handler[0], "other") if handler else "other"
        return "other"

    def expire_for(self, request):
        """The ``expire`` fault. A slice: its long job is idle-suspended now, as the receiver's idle timer does (the slice
        itself is then refused and the job must be resumed). An API call: the caller's OAuth session is dropped (the call
        then fails with ID.1001). False when there is nothing to expire."""
        with self._lock:
            if request.path.startswith(UPLOAD_PATH):
                job_uuid, job = self._job_of_image((request.header("X-IMAGE-UUID") or "").strip())
                if job is None or job["inventory"]["state"] != "Running":
                    return False
                self._suspend(job_uuid, job, "uploading has been inactive more than %s sec"
                              % float(self.config.get("zstack_idle_seconds", 30)))
            else:
                auth = (request.header("Authorization") or "").strip()
                if not auth.startswith("OAuth") or self._state["sessions"].pop(auth[len("OAuth"):].strip(), None) is None:
                    return False
            self._save()
            return True

    def error_response(self, status, message):
        """The ``status`` fault. 503 is how RestServer answers a failed API: ``{"error": ErrorCode}``, here ``SYS.1010``
        (the management server is not ready to serve: the call did not run). Every other status is one RestServer (or a
        proxy in front of it) answers itself, as plain text: 500 is its answer to an exception, with the message."""
        if status == 503:
            return Response.json({"error": error_code("SYS.1010", message)}, 503)
        return Response.text(message, status)

    # ------------------------------------------------------------- control

    def control(self, request, rest):
        """``/_emulator/zstack/...``: content read-back, job inspection, forced suspend, session expiry, stats."""
        parts = rest.strip("/").split("/")
        with self._lock:
            if self._tick():
                self._save()
            if request.method == "GET" and len(parts) == 3 and parts[0] == "images" and parts[2] == "content":
                image = self._state["images"].get(parts[1])
                if image is None or image["md5Sum"] is None or not os.path.exists(self._data_path(image["uuid"])):
                    return Response.json({"error": "no uploaded content for image %s" % parts[1]}, 404)
                return Response.file(self._data_path(image["uuid"]))
            if request.method == "GET" and parts == ["jobs"]:
                return Response.json({"jobs": [self._job_view(u, j) for u, j in self._state["jobs"].items()]})
            if request.method == "POST" and len(parts) == 3 and parts[0] == "jobs" and parts[2] == "suspend":
                job = self._state["jobs"].get(parts[1])
                if job is None or job["inventory"]["state"] != "Running":
                    return Response.json({"error": "no Running long job %s" % parts[1]}, 409 if job else 404)
                self._suspend(parts[1], job, "suspended through the emulator control API")
                self._save()
                return Response.json(self._job_view(parts[1], job))
            if request.method == "POST" and parts == ["sessions", "expire"]:
                dropped = len(self._state["sessions"])
                self._state["sessions"] = {}
                self._save()
                return Response.json({"expired": dropped})
            if request.method == "GET" and parts == ["stats"]:
                return Response.json(dict(self._stats))
        return Response.json({"error": "no such control path: %s %s" % (request.method, rest)}, 404)

    def _job_view(self, job_uuid, job):
        upload = job["upload"]
        return {"uuid": job_uuid, "state": job["inventory"]["state"], "imageId": job["image_id"], "imageUuid": job["image_uuid"],
                "size": upload["total"], "sliceSize": upload["slice_size"], "offset": self._prefix(upload),
                "receivedSlices": list(upload["received"]), "inFlightSlices": sorted(self._inflight.get(job["image_uuid"], ())),
                "lastActivity": upload["last_activity"]}
