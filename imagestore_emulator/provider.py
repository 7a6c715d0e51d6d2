"""The interface every provider API implements (with defaults).

* ``name``                    -- "servicefabric", "vsphere" or "zstack"
* ``matches(path)``           -- True when a request path belongs to this API
* ``handle(request)``         -- answer one request of the real API, returning a ``Response``
* ``control(request, rest)``  -- answer ``/_emulator/<name>/<rest>`` (read-back, inspection)
* ``reset()``                 -- forget every session, file and object (back to the seeded state)
* ``operation(request)``      -- the name fault rules match on
* ``error_response(status, message, code=None)`` -- an error in this API's own format
* ``request_error(status, message)`` -- an error about the request's framing, in this API's format
* ``disk_full(request, exc)`` -- what this API answers when a write meets a full disk
* ``accepts_chunked(request)``-- whether a ``Transfer-Encoding: chunked`` body is taken for this request
"""

import os
import shutil

from imagestore_emulator.wire import Response


class ProviderAPI:
    """Base class of a provider API (documentation of the interface, with defaults)."""

    name = "base"

    def __init__(self, data_dir, config):
        self.data_dir = data_dir
        self.config = config
        os.makedirs(data_dir, exist_ok=True)

    def matches(self, path):
        raise NotImplementedError

    def handle(self, request):
        raise NotImplementedError

    def control(self, request, rest):
        return Response.json({"error": "not found"}, 404)

    def reset(self):
        shutil.rmtree(self.data_dir, ignore_errors=True)
        os.makedirs(self.data_dir, exist_ok=True)

    def describe(self):
        """What the start line and /_emulator/health show about this API."""
        return {}

    def operation(self, request):
        """This API's name for the operation a request performs (fault rules match on it)."""
        return "%s %s" % (request.method, request.path)

    def expire_for(self, request):
        """Expire the session ``request`` names (the ``expire`` fault); False when there is none."""
        return False

    def error_response(self, status, message, code=None):
        """An error answer in this API's own error format (the ``status`` faults, the catch-all)."""
        return Response.json({"error": message}, status)

    def request_error(self, status, message):
        """An error about the request's framing (bad Content-Length, chunked body where a length is needed)."""
        return self.error_response(status, message)

    def disk_full(self, request, exc):
        """The answer when storing what ``request`` carries met a full disk (ENOSPC)."""
        return self.error_response(507, "insufficient storage: %s" % exc)

    def accepts_chunked(self, request):
        return False

    def max_file_size(self):
        return int(self.config.get("max_file_size") or 0)
