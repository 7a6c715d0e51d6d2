# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The interface every provider adapter implements, and the pieces they share (private).

A module calls exactly one of ``upload()``, ``sessions()``, ``commit()`` or ``absent()`` on the
adapter chosen by ``provider``, then ``close()``. Each returns a plain dict that becomes the
module's result; failures raise ``ImageStoreError`` (from ``_http``) with a message for the user.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import time

from ansible_collections.imagestore.upload.plugins.module_utils._http import HttpClient, ImageStoreError
from ansible_collections.imagestore.upload.plugins.module_utils._upload import (
    DEFAULT_CHUNK_SIZE, DEFAULT_PARALLEL, DigestCache, Source, normalize, total,
)


class Deadline:
    """The module's ``timeout``: a wall-clock budget for the whole run (None: no limit)."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.end = time.monotonic() + seconds if seconds else None

    def remaining(self):
        return None if self.end is None else self.end - time.monotonic()

    def check(self, doing):
        if self.end is not None and time.monotonic() > self.end:
            raise ImageStoreError("timeout of %s seconds reached while %s; what was sent is kept on the server, "
                                  "run again to resume" % (self.seconds, doing), retryable=True)


def session_record(provider, session_id, state, size, missing, expires=None, raw=None, **extra):
    """The normalised form of one upload session (``upload_session_info``'s ``sessions`` items)."""
    missing = normalize(missing or [])
    received = max(0, (size or 0) - total(missing)) if size is not None else None
    if size:
        progress = round(100.0 * received / size, 2)
    else:
        progress = 100.0 if state in ("committed", "done") else 0.0
    record = {
        "id": session_id,
        "provider": provider,
        "state": state,
        "size": size,
        "bytes_received": received,
        "missing_ranges": [{"start": s, "end": e} for s, e in missing],
        "progress": progress,
        "expires": expires,
        "raw": raw if raw is not None else {},
    }
    record.update(extra)
    return record


class Provider:
    """Base class of the adapters. Subclasses set ``name`` and implement the four operations."""

    name = None
    #: module options that only make sense for this provider's destinations (used to refuse
    #: options meant for another provider with a clear message)
    own_options = ()

    def __init__(self, params, check_mode=False, warn=None):
        self.params = params
        self.check_mode = check_mode
        self._warn = warn or (lambda msg: None)
        self.warnings = []
        parallel = params.get("parallel") or DEFAULT_PARALLEL
        self.http = HttpClient(
            params["endpoint"],
            validate_certs=params.get("validate_certs", True),
            ca_path=params.get("ca_path"),
            client_cert=params.get("client_cert"),
            client_key=params.get("client_key"),
            timeout=params.get("request_timeout") or 60,
            retries=params.get("retries", 5) if params.get("retries") is not None else 5,
            backoff=params.get("retry_backoff") or 0.5,
            pool_size=parallel + 2,
            error_parser=self.parse_error,
        )
        self.deadline = Deadline(params.get("timeout"))

    # -- to implement -------------------------------------------------------------------------
    def parse_error(self, response):
        """(code, message) from an error response of this provider."""
        return None, (response.text or "")[:500]

    def upload(self):
        raise NotImplementedError

    def sessions(self):
        raise NotImplementedError

    def commit(self):
        raise NotImplementedError

    def absent(self):
        raise NotImplementedError

    def close(self):
        self.http.close()

    # -- shared helpers -----------------------------------------------------------------------
    def warn(self, msg):
        self.warnings.append(msg)
        self._warn(msg)

    @property
    def chunk_size(self):
        return self.params.get("chunk_size") or DEFAULT_CHUNK_SIZE

    @property
    def parallel(self):
        return self.params.get("parallel") or DEFAULT_PARALLEL

    def source(self, path=None):
        """The ``src`` file (or ``path``) as a Source with the digest cache configured."""
        path = path or self.params["src"]
        cache_path = DigestCache.default_path() if self.params.get("digest_cache", True) else None
        return Source(path, DigestCache(cache_path))

    @staticmethod
    def check_src_file(path, option="src"):
        """Fail clearly when a file to upload cannot be read."""
        if not os.path.exists(path):
            raise ImageStoreError("%s: %s does not exist on the host running the module" % (option, path))
        if os.path.isdir(path):
            raise ImageStoreError("%s: %s is a directory; this provider uploads one file" % (option, path))
        if not os.access(path, os.R_OK):
            raise ImageStoreError("%s: %s is not readable by the user running the module" % (option, path))
