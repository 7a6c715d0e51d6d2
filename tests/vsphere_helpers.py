"""Test helpers for vSphere (not part of the pytest plugin): an ACTIVE update session on the item, holding the file added but not received (a broken PUT).

``make(target, src, fraction, chunk_size, library, item, file_name=None)`` finds or creates the item,
reuses its ACTIVE update session or opens one, adds the file with its size and SHA-1 (as
``image_upload`` does), then sends the first ``fraction`` of the bytes in a PUT whose connection is
cut before the end: the server holds the file in ERROR (or still waiting, for ``fraction=0``), so
``image_upload`` must resume that session and send the file again. ``fraction=1`` sends the whole file
(READY, the session not completed: a run stopped between its last byte and ``complete``).
``chunk_size`` is the size of the socket writes of that PUT.
"""

import http.client
import os
import ssl
import time
from urllib.parse import urlsplit

from ansible_collections.imagestore.upload.plugins.module_utils._http import ApiError
from ansible_collections.imagestore.upload.plugins.module_utils._source import Source
from ansible_collections.imagestore.upload.plugins.module_utils._vsphere_client import (
    SESSION_HEADER, ContentLibraryClient, parse_error,
)
from ansible_collections.imagestore.upload.plugins.module_utils._vsphere_formats import check_file_name, item_type
from pytest_imagestore.partial import Partial


def http_for(target, error_parser=None):
    """An HttpClient with the target's TLS settings (as the modules would make it)."""
    from ansible_collections.imagestore.upload.plugins.module_utils._http import HttpClient
    o = target.options
    return HttpClient(target.endpoint, validate_certs=o.get("validate_certs", True), ca_path=o.get("ca_path"),
                      client_cert=o.get("client_cert"), client_key=o.get("client_key"), retries=2,
                      error_parser=error_parser)


def client_for(target):
    """A logged-in ContentLibraryClient for ``target`` (its TLS settings, user and password)."""
    api = ContentLibraryClient(http_for(target, parse_error), target.options.get("username"),
                               target.options.get("password"), target.options.get("api_style") or "auto")
    api.login()
    return api


def library_id_for(api, library):
    """The id of ``library`` (a name or an id)."""
    ids = api.library_find(library)
    if ids:
        return ids[0]
    if api.library_get(library) is not None:
        return library
    raise LookupError("no content library %r on %s" % (library, api.http.endpoint))


def active_session(api, item_id):
    """The item's ACTIVE update session model, or None (filtered here: vcsim ignores the item filter)."""
    for session_id in api.session_list(item_id):
        model = api.session_get(session_id)
        if model and model.get("library_item_id") == item_id and model.get("state") == "ACTIVE":
            model.setdefault("id", session_id)
            return model
    return None


def discard_session(api, session_id):
    """Cancel (when ACTIVE) and delete an update session; a session already gone is fine."""
    model = api.session_get(session_id)
    if model is None:
        return False
    if model.get("state") == "ACTIVE":
        try:
            api.session_cancel(session_id)
        except ApiError as exc:
            if exc.status != 404 and exc.code != "not_allowed_in_current_state":
                raise
    return api.session_delete(session_id)


def broken_put(api, uri, source, upto, chunk_size, verify):
    """PUT announcing the whole file but sending only ``upto`` bytes, then cutting the connection."""
    parts = urlsplit(uri)
    if parts.scheme == "https":
        context = ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)
        if verify is False:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection(parts.hostname, parts.port, context=context, timeout=60)
    else:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.putrequest("PUT", parts.path + ("?" + parts.query if parts.query else ""), skip_accept_encoding=True)
        conn.putheader(SESSION_HEADER, api.tokens.current())      # the test's own login
        conn.putheader("Content-Type", "application/octet-stream")
        conn.putheader("Content-Length", str(source.size))
        conn.endheaders()
        pos = 0
        while pos < upto:
            end = min(upto, pos + chunk_size) - 1
            conn.send(source.read(pos, end))
            pos = end + 1
    finally:
        conn.close()


def wait_not_transferring(api, session_id, name, timeout=30):
    """The server notices a cut connection a moment later; wait until the file is no longer TRANSFERRING."""
    deadline = time.monotonic() + timeout
    while True:
        info = api.file_get(session_id, name) or {}
        if info.get("status") != "TRANSFERRING" or time.monotonic() > deadline:
            return info
        time.sleep(0.05)


def make(target, src, fraction, chunk_size, library, item, file_name=None):
    api = client_for(target)
    name = check_file_name(file_name or os.path.basename(src))
    source = Source(src)
    sha1 = source.digest("sha1")
    library_id = library_id_for(api, library)
    found = api.item_find(library_id, item)
    item_id = found[0] if found else api.item_create(library_id, item, item_type(src))
    session = active_session(api, item_id)
    session_id = session["id"] if session else api.session_create(item_id)
    checksum = None if src.lower().endswith(".ova") else {"algorithm": "SHA1", "checksum": sha1}
    info = api.file_add(session_id, name, source.size, checksum)
    upto = int(source.size * fraction)
    if upto >= source.size:
        api.put(info["upload_endpoint"]["uri"], name, lambda: source.reader(0, source.size - 1) if source.size else b"", source.size)
    elif upto > 0:
        broken_put(api, info["upload_endpoint"]["uri"], source, upto, chunk_size, api.http.verify)
    status = wait_not_transferring(api, session_id, name).get("status")

    def cleanup():
        try:
            discard_session(api, session_id)
        finally:
            api.logout()
            api.http.close()

    return Partial(provider="vsphere", session_id=session_id, library_id=library_id, item_id=item_id, file_name=name,
                   size=source.size, bytes_sent=upto, sha1=sha1, status=status, api_style=api.style), cleanup
