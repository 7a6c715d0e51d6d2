"""The child process of ``imagestore_partial_upload``: one half-finished upload made by the collection's own engine.

Run as ``python -m pytest_imagestore.partial_run ACTION '<json>'``; prints one line of JSON. Actions: ``make`` and
``remove`` (partial uploads), ``vsphere_item``, ``vsphere_session`` and ``vsphere_remove`` (the vSphere fixtures). A child of its own,
so the test process never imports the collection (Ansible's collection loader, installed by pytest-ansible, must be the
first to import it there), and so what it leaves is exactly what an interrupted ``image_upload`` leaves.

``make``: the engine uploads ``src`` to the destination and is stopped once ``fraction`` of the bytes are accepted
by the store (``fraction=1``: every byte is in, stopped before the commit): the protocol's own ``send`` and
``commit`` hooks, wrapped, say when. The session
stays as an interrupted run leaves it. ``remove``: ``upload_session_absent`` by session id (ZStack: with purge).
"""

import hashlib
import json
import sys


class PartialStop(Exception):
    """Raised by the reporter to stop the engine where a test wants the upload left."""


def stop_at(protocol, stop_after, before_commit, units=None):
    """Make the protocol stop the engine once ``stop_after`` bytes (or ``units`` units of transfer) were accepted by the
    store (its ``send`` hook), or (``before_commit``) when every byte is in and the commit would come: where an
    interrupted run stops."""
    sent = [0, 0]           # bytes accepted, units (chunks, slices, files) that carried them
    send, commit = protocol.send, protocol.commit

    def counting_send(session, f, start, end):
        if units == 0 or stop_after == 0:
            raise PartialStop()             # the session opened, nothing sent
        accepted = send(session, f, start, end)
        sent[0] += accepted
        sent[1] += 1 if accepted else 0
        if not before_commit and (sent[1] >= units if units is not None else sent[0] >= stop_after):
            raise PartialStop()
        return accepted

    def stopping_commit(session, dest, files):
        if before_commit:
            raise PartialStop()
        return commit(session, dest, files)

    protocol.send, protocol.commit = counting_send, stopping_commit
    return sent


def _params(spec, values):
    params = dict((k, v.get("default")) for k, v in spec.items())
    params.update((k, v) for k, v in values.items() if v is not None)
    return params


def make(request):
    from ansible_collections.imagestore.upload.plugins.module_utils._driver import close, connect
    from ansible_collections.imagestore.upload.plugins.module_utils._engine import Engine
    from ansible_collections.imagestore.upload.plugins.module_utils._options import upload_spec, validate
    from ansible_collections.imagestore.upload.plugins.module_utils._registry import PROVIDERS
    from ansible_collections.imagestore.upload.plugins.module_utils._sessions import SessionOps
    from ansible_collections.imagestore.upload.plugins.module_utils._source import Source

    provider, fraction = request["provider"], float(request.get("fraction", 0.5))
    size = Source(request["src"]).size
    target = int(size * fraction) if fraction > 0 else 0
    chunk = request.get("chunk_size") or (target if 0 < fraction < 1 else 1024 * 1024)
    # with a chunk size given, the fraction is of the units of transfer (whole chunks or slices from the start)
    units = int(-(-size // chunk) * fraction) if request.get("chunk_size") and fraction < 1 else None
    if request.get("units") is not None:
        units = int(request["units"])
    spec, owners = upload_spec(PROVIDERS)
    params = _params(spec, dict(request["options"], provider=provider, src=request["src"], parallel=1, digest_cache=False,
                                **request["destination"]))
    validate(params, PROVIDERS, owners, "upload")
    params["chunk_size"] = int(chunk)
    protocol = connect(params, PROVIDERS[provider], warn=lambda message: None, operation="upload")
    sent = stop_at(protocol, target, fraction >= 1 and units is None, units)
    try:
        try:
            result = Engine(protocol).upload()
            raise RuntimeError("the upload finished before it could be stopped at %d of %d bytes: %s"
                               % (target, size, result.get("msg")))
        except PartialStop:
            pass
        selectors = dict((o, params.get(o)) for o in PROVIDERS[provider].selector_group)
        if provider == "zstack" and not selectors.get("image_id"):
            selectors["image_id"] = _md5(request["src"])
        protocol.params.update(selectors)
        sessions = [s for s in SessionOps(protocol).info()["sessions"] if s["state"] in ("active", "suspended", "complete")]
    finally:
        close(protocol, lambda message: None)
    if not sessions:
        raise RuntimeError("no open session was left at %s" % selectors)
    session = sessions[0]
    partial = dict((k, v) for k, v in session.items() if k not in ("id", "raw", "provider"))   # the provider's own keys too
    partial.update(session.get("destination") or {})                # where it lands (item_id, file names...)
    partial.update(request["destination"])
    partial.update(selectors)
    partial.update(provider=provider, session_id=session["id"], size=size, bytes_sent=sent[0], units_sent=sent[1],
                   state=session["state"], destination=session.get("destination") or {}, session=session)
    return partial


def remove(request):
    from ansible_collections.imagestore.upload.plugins.module_utils._driver import close, connect, execute
    from ansible_collections.imagestore.upload.plugins.module_utils._options import session_spec
    from ansible_collections.imagestore.upload.plugins.module_utils._registry import PROVIDERS

    spec, _ = session_spec(PROVIDERS, absent=True)
    params = _params(spec, dict(request["options"], provider=request["provider"], session_id=request["session_id"]))
    if request["provider"] == "zstack":
        params["purge"] = True
    protocol = connect(params, PROVIDERS[request["provider"]], warn=lambda message: None, operation="absent")
    try:
        return execute(protocol, "absent")
    finally:
        close(protocol, lambda message: None)


def _vsphere(request):
    """A connected vSphere protocol object for the request's target (its client logs in on first use)."""
    from ansible_collections.imagestore.upload.plugins.module_utils._driver import connect
    from ansible_collections.imagestore.upload.plugins.module_utils._options import session_spec
    from ansible_collections.imagestore.upload.plugins.module_utils._registry import PROVIDERS

    spec, _ = session_spec(PROVIDERS)
    params = _params(spec, dict(request["options"], provider="vsphere"))
    return connect(params, PROVIDERS["vsphere"], warn=lambda message: None, operation="sessions")


def vsphere_item(request):
    """A new library item (``name``, ``kind``) in ``library``: {"id", "name", "library_id", "library"}."""
    from ansible_collections.imagestore.upload.plugins.module_utils._driver import close
    protocol = _vsphere(request)
    try:
        library_id = protocol.library_id(request["library"])
        item_id = protocol.api.item_create(library_id, request["name"], request.get("kind") or "file")
    finally:
        close(protocol, lambda message: None)
    return {"id": item_id, "name": request["name"], "library_id": library_id, "library": request["library"]}


def vsphere_session(request):
    """A new ACTIVE update session on ``item_id``: {"id", "item_id", "library_id"}."""
    from ansible_collections.imagestore.upload.plugins.module_utils._driver import close
    protocol = _vsphere(request)
    try:
        session_id = protocol.api.session_create(request["item_id"])
        library_id = (protocol.api.item_get(request["item_id"]) or {}).get("library_id")
    finally:
        close(protocol, lambda message: None)
    return {"id": session_id, "item_id": request["item_id"], "library_id": library_id}


def vsphere_remove(request):
    """Remove update sessions (``session_ids``, and every session of ``item_id``), then the item ``item_id``."""
    from ansible_collections.imagestore.upload.plugins.module_utils._driver import close
    from ansible_collections.imagestore.upload.plugins.module_utils._vsphere_sessions import discard, sessions_of_item
    protocol = _vsphere(request)
    try:
        ids = list(request.get("session_ids") or [])
        if request.get("item_id"):
            ids += [m.get("id") for m in sessions_of_item(protocol.api, request["item_id"]) if m.get("id") not in ids]
        for session_id in ids:
            if protocol.api.session_get(session_id) is not None:
                discard(protocol.api, session_id, "removed after the test")
        if request.get("item_id"):
            protocol.api.item_delete(request["item_id"])
    finally:
        close(protocol, lambda message: None)
    return {"removed": True}


def _md5(path):
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(4 * 1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    action, request = argv[0], json.loads(argv[1])
    try:
        result = {"make": make, "remove": remove, "vsphere_item": vsphere_item, "vsphere_session": vsphere_session,
                  "vsphere_remove": vsphere_remove}[action](request)
    except Exception as exc:  # the parent turns this into a test error with the message
        result = {"failed": True, "msg": "%s: %s" % (type(exc).__name__, getattr(exc, "message", None) or exc)}
    sys.stdout.write(json.dumps(result, default=str) + "\n")
    return 1 if result.get("failed") else 0


if __name__ == "__main__":
    sys.exit(main())
