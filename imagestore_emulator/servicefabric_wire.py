"""Service Fabric wire format: FabricError answers and the parsing of what a request carries.

Status lines follow the runtime's ``HttpUtil::ErrorCodeToHttpStatus``: a 5xx or 413 answer carries the
error code as its reason phrase (so Python's requests reports ``504 Server Error: FABRIC_E_TIMEOUT``);
the other 4xx answers keep the standard phrases the emulator always sent.
"""

import re
import uuid
from datetime import datetime, timezone

from imagestore_emulator.wire import Response

API_VERSION_MIN = (1, 0)
API_VERSION_MAX = (9, 1)
MAX_SEGMENT_BYTES = 255
INT64_MAX = 2 ** 63 - 1
UINT32_MAX = 2 ** 32 - 1
DEFAULT_TIMEOUT_SECONDS = 60

RANGE_NOT_SATISFIABLE = "FABRIC_E_UPLOAD_SESSION_RANGE_NOT_SATISFIABLE"
INVALID_SESSION_ID = "FABRIC_E_INVALID_UPLOAD_SESSION_ID"
ID_CONFLICT = "FABRIC_E_UPLOAD_SESSION_ID_CONFLICT"
INVALID_ARG = "E_INVALIDARG"
FILE_NOT_FOUND = "FABRIC_E_FILE_NOT_FOUND"
TIMEOUT = "FABRIC_E_TIMEOUT"
NOT_READY = "FABRIC_E_NOT_READY"
NOT_PRIMARY = "FABRIC_E_NOT_PRIMARY"
VALUE_TOO_LARGE = "FABRIC_E_VALUE_TOO_LARGE"
E_FAIL = "E_FAIL"
# HRESULT_FROM_WIN32(ERROR_DISK_FULL), printed as the runtime prints an HRESULT it has no name for
DISK_FULL = "0x80070070"
DISK_FULL_MESSAGE = "There is not enough space on the disk."

_API_VERSION = re.compile(r"^(\d+)(?:\.(\d+))?$")
_PREVIEW = re.compile(r"-preview(?:\.\d+)?$", re.IGNORECASE)
_CONTENT_RANGE = re.compile(r"^(?:bytes\s+)?(\d+)-(\d+)/(\d+)$", re.IGNORECASE)
_SEPARATORS = re.compile(r"[/\\]")


def fabric_error(status, code, message):
    """A FabricError answer; 5xx and 413 status lines carry the code, as the runtime's gateway writes them."""
    return Response.json({"Error": {"Code": code, "Message": message}}, status,
                         reason=code if status >= 500 or status == 413 else None)


class Fail(Exception):
    """An error answer (FabricError body) raised from anywhere inside a request."""

    def __init__(self, status, code, message):
        super().__init__(message)
        self.status = status
        self.code = code
        self.response = fabric_error(status, code, message)


def iso(timestamp):
    """ISO 8601 in UTC with milliseconds and a Z, as the runtime writes dates."""
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def display(path):
    """The store path as a Windows cluster returns it (backslash separators)."""
    return path.replace("/", "\\")


def normalise_path(text):
    """Turn a client's image store relative path into the internal ``a/b/c`` form.

    ``/`` and ``\\`` both separate; empty and ``.`` segments are dropped. Raises ``Fail`` (400) for an
    empty, absolute, drive, ``..``, NUL/control-character or over-long path.
    """
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise Fail(400, INVALID_ARG, "the image store path contains a NUL or control character")
    if text[:1] in ("/", "\\"):
        raise Fail(400, INVALID_ARG, "the image store path must be relative: %r" % text)
    if ":" in text:
        raise Fail(400, INVALID_ARG, "the image store path must not name a drive or a stream: %r" % text)
    parts = [p for p in _SEPARATORS.split(text) if p not in ("", ".")]
    if not parts:
        raise Fail(400, INVALID_ARG, "the image store path is empty")
    if ".." in parts:
        raise Fail(400, INVALID_ARG, "the image store path must not contain '..': %r" % text)
    if any(len(p.encode("utf-8", "surrogatepass")) > MAX_SEGMENT_BYTES for p in parts):
        raise Fail(400, "FABRIC_E_PATH_TOO_LONG", "a name in the image store path is longer than %d bytes" % MAX_SEGMENT_BYTES)
    return "/".join(parts)


def check_api_version(request):
    text = request.arg("api-version")
    if text is None:
        raise Fail(400, INVALID_ARG, "api-version is required")
    match = _API_VERSION.match(_PREVIEW.sub("", text.strip()))
    if not match or not API_VERSION_MIN <= (int(match.group(1)), int(match.group(2) or 0)) <= API_VERSION_MAX:
        raise Fail(400, INVALID_ARG, "api-version %r is not supported (1.0 to 9.1)" % text[:40])


def server_timeout(request):
    """The ``timeout`` query argument in seconds, 1 to 4294967295 as documented; anything else is ignored and the
    default (60) applies, as the runtime's gateway does with what it cannot parse (``UpdateRequestTimeout``).
    (The runtime would take 0 as a zero time-out; the emulator ignores it, as the swagger's minimum is 1.)"""
    text = (request.arg("timeout") or "").strip()
    if text.isdigit() and 1 <= int(text) <= UINT32_MAX:
        return int(text)
    return DEFAULT_TIMEOUT_SECONDS


def session_id(request, code):
    """The canonical session id, or ``Fail`` (400, ``code``) when missing, malformed or all zeros."""
    text = request.arg("session-id")
    try:
        value = uuid.UUID(text)
    except (TypeError, ValueError):
        raise Fail(400, code, "session-id must be a GUID, got %r" % (text if text is None else text[:64])) from None
    if value.int == 0:
        raise Fail(400, code, "session-id must not be the empty GUID")
    return str(value)


def content_range(request, max_size):
    """(start, end, total) of a chunk. Numbers beyond a signed 64-bit FileSize or start after end:
    400 RANGE_NOT_SATISFIABLE (an end past the total is checked against the session, as the runtime does).
    A total over ``max_size``: 413 FABRIC_E_VALUE_TOO_LARGE."""
    header = request.header("Content-Range")
    if header is None:
        raise Fail(400, INVALID_ARG, "the Content-Range header is required")
    shown = header[:100]
    match = _CONTENT_RANGE.match(header.strip())
    if not match:
        raise Fail(400, RANGE_NOT_SATISFIABLE, "Content-Range %r is not 'bytes START-END/TOTAL'" % shown)
    start, end, total = (int(g) for g in match.groups())
    if max(start, end, total) > INT64_MAX:
        raise Fail(400, RANGE_NOT_SATISFIABLE, "Content-Range %r: positions and FileSize are 64-bit numbers" % shown)
    if start > end:
        raise Fail(400, RANGE_NOT_SATISFIABLE, "Content-Range %r starts after its end" % shown)
    check_size(total, max_size)
    return start, end, total


def check_size(size, max_size):
    if max_size and size > max_size:
        raise Fail(413, VALUE_TOO_LARGE, "a file of %d bytes is larger than this image store accepts (%d bytes)"
                   % (size, max_size))
