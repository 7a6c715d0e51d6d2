"""Half-finished uploads made through the collection's own client, for resume and cleanup tests.

Each provider has a module ``pytest_imagestore.partial_<provider>`` with a function
``make(target, src, fraction, chunk_size, **destination) -> (Partial, cleanup)``: it sends the
first ``fraction`` of ``src`` into the session that ``image_upload`` would use and leaves it open;
``cleanup()`` removes that session (and whatever it received) again.
"""

from ansible_collections.imagestore.upload.plugins.module_utils._http import HttpClient


class Partial(dict):
    """What a partial upload left: ``provider``, ``session_id``, ``size``, ``bytes_sent``, ... (also as attributes)."""

    __getattr__ = dict.__getitem__


def http_for(target, error_parser=None):
    """An HttpClient with the target's TLS settings (as the modules would make it)."""
    o = target.options
    return HttpClient(target.endpoint, validate_certs=o.get("validate_certs", True), ca_path=o.get("ca_path"),
                      client_cert=o.get("client_cert"), client_key=o.get("client_key"), retries=2,
                      error_parser=error_parser)


class PartialUploads:
    """Callable factory; ``cleanup()`` removes every session it made, whatever happened meanwhile."""

    def __init__(self, targets):
        self.targets = targets
        self._cleanups = []

    def __call__(self, provider, src, fraction=0.5, chunk_size=1024 * 1024, **destination):
        maker = makers().get(provider)
        if maker is None:
            raise NotImplementedError("partial uploads for provider %s are not available yet" % provider)
        partial, cleanup = maker(self.targets[provider], src, fraction, chunk_size, **destination)
        self._cleanups.append(cleanup)
        return partial

    def cleanup(self):
        errors = []
        while self._cleanups:
            fn = self._cleanups.pop()
            try:
                fn()
            except Exception as exc:  # keep cleaning the rest; report the first failure at the end
                errors.append(exc)
        if errors:
            raise errors[0]


def _makers():
    # Imported on first use, not with this module: partial_<provider> imports this module, so
    # importing them from here at import time is a cycle (``import pytest_imagestore.partial_servicefabric``
    # first failed with "partially initialized module").
    from pytest_imagestore import partial_servicefabric
    makers = {"servicefabric": partial_servicefabric.make}
    try:
        from pytest_imagestore import partial_vsphere
        makers["vsphere"] = partial_vsphere.make
    except ImportError:
        pass
    try:
        from pytest_imagestore import partial_zstack
        makers["zstack"] = partial_zstack.make
    except ImportError:
        pass
    return makers


_MAKERS = None


def makers():
    """Provider -> ``make`` function (the provider modules are imported on the first call)."""
    global _MAKERS
    if _MAKERS is None:
        _MAKERS = _makers()
    return _MAKERS


def __getattr__(name):
    # ``MAKERS``, as before, for callers that import it (benchmarks/bench.py)
    if name == "MAKERS":
        return makers()
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
