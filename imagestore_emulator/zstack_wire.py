"""ZStack wire format: constants, error codes, the RestServer's errors, query conditions, headers.

Sources (zstackio/zstack): ``conf/errorCodes/*.xml`` (descriptions), ``rest/.../RestServer.java``
(``QUERY_OP_MAPPING``, plain-text transport errors), ``header/.../ErrorCode.java`` (the document shape).
"""

import base64
import binascii
import hashlib
import re
import time
from uuid import uuid4

API_PREFIX = "/zstack/v1"
UPLOAD_PATH = "/imagestore/upload"
BASE_URL_TOKEN = "{zstack-emulator-base-url}"     # stored in place of the base URL, which a restart may change
BACKUP_STORAGE_UUID = "5c0fa9b2e4d14f0c9a1b7e3d2c6f8a90"
BACKUP_STORAGE_NAME = "bs"
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

