"""Half-finished uploads made by the collection's own engine, for resume and cleanup tests.

``PartialUploads(targets)("servicefabric", src, path="images/a.bin", fraction=0.5)`` runs the engine in a child
process (``pytest_imagestore.partial_run``) that stops it once that fraction of ``src`` is accepted, and returns a
``Partial`` (``session_id``, ``size``, ``bytes_sent``, ``state``, the destination options). No adapter logic is
copied here: the session left is exactly the one an interrupted ``image_upload`` would leave and resume.
"""

import json
import os
import subprocess
import sys


class Partial(dict):
    """What a partial upload left: ``provider``, ``session_id``, ``size``, ``bytes_sent``, ... (also as attributes)."""

    __getattr__ = dict.__getitem__


def child(action, request):
    env = dict(os.environ)
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
    proc = subprocess.run([sys.executable, "-m", "pytest_imagestore.partial_run", action, json.dumps(request)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=600)
    lines = proc.stdout.decode("utf-8", "replace").strip().splitlines()
    try:
        result = json.loads(lines[-1])
    except (IndexError, ValueError):
        raise RuntimeError("the partial upload helper said nothing usable (exit %d): %s" % (
            proc.returncode, proc.stderr.decode("utf-8", "replace")[-2000:]))
    if result.get("failed"):
        raise RuntimeError("partial upload (%s) failed: %s" % (action, result["msg"]))
    return result


def target_options(target):
    options = dict((k, v) for k, v in target.options.items() if v is not None and k not in ("library", "backup_storage"))
    options["endpoint"] = target.endpoint
    return options


class PartialUploads:
    """Callable factory; ``cleanup()`` removes every session it made, whatever happened meanwhile."""

    def __init__(self, targets):
        self.targets = targets
        self._made = []

    def __call__(self, provider, src, fraction=0.5, chunk_size=None, units=None, **destination):
        """``fraction`` of ``src``'s bytes (of its chunks when ``chunk_size`` is given; 0: the session opened, nothing
        sent; 1: every byte in, not committed), or ``units``: that many units of transfer accepted (chunks, slices,
        or whole files where the protocol sends files whole: an OVF's descriptor, then its disks)."""
        target = self.targets[provider]
        if provider == "vsphere":
            destination.setdefault("library", target.options.get("library") or "images")
        if provider == "zstack":
            destination.setdefault("backup_storage", target.options.get("backup_storage") or "bs")
        request = {"provider": provider, "options": target_options(target), "src": os.path.abspath(src), "fraction": fraction,
                   "chunk_size": chunk_size, "units": units, "destination": destination}
        partial = Partial(child("make", request))
        self._made.append((provider, target, partial["session_id"]))
        return partial

    def cleanup(self):
        errors = []
        while self._made:
            provider, target, session_id = self._made.pop()
            try:
                child("remove", {"provider": provider, "options": target_options(target), "session_id": session_id})
            except Exception as exc:  # keep cleaning the rest; report the first failure at the end
                errors.append(exc)
        if errors:
            raise errors[0]

