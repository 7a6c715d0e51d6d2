"""Half-finished uploads made through the collection's own client, for resume and cleanup tests."""

from ansible_collections.imagestore.upload.plugins.module_utils._http import HttpClient
from ansible_collections.imagestore.upload.plugins.module_utils._servicefabric import (
    ServiceFabricClient, normalize_path, session_id_for,
)
from ansible_collections.imagestore.upload.plugins.module_utils._upload import Source


class Partial(dict):
    """What a partial upload left: ``provider``, ``session_id``, ``size``, ``bytes_sent``, ``sent`` ranges, ..."""

    __getattr__ = dict.__getitem__


def http_for(target, error_parser=None):
    o = target.options
    return HttpClient(target.endpoint, validate_certs=o.get("validate_certs", True), ca_path=o.get("ca_path"),
                      client_cert=o.get("client_cert"), client_key=o.get("client_key"), retries=2,
                      error_parser=error_parser)


class PartialUploads:
    """Callable factory; ``cleanup()`` removes every session it made."""

    def __init__(self, targets):
        self.targets = targets
        self._cleanups = []

    def __call__(self, provider, src, fraction=0.5, chunk_size=1024 * 1024, **destination):
        make = getattr(self, "_%s" % provider, None)
        if make is None:
            raise NotImplementedError("partial uploads for provider %s are not available yet" % provider)
        return make(self.targets[provider], src, fraction, chunk_size, **destination)

    def cleanup(self):
        errors = []
        while self._cleanups:
            fn = self._cleanups.pop()
            try:
                fn()
            except Exception as exc:  # keep cleaning the rest; report at the end
                errors.append(exc)
        if errors:
            raise errors[0]

    # -- Service Fabric: chunks [0, fraction*size) into the session image_upload would use -----
    def _servicefabric(self, target, src, fraction, chunk_size, path):
        path = normalize_path(path)
        source = Source(src)
        api = ServiceFabricClient(http_for(target, ServiceFabricClient.parse_error))
        session_id = session_id_for(path, source.size, source.digest("sha256"))
        upto = int(source.size * fraction)
        sent = []
        pos = 0
        while pos < upto:
            end = min(upto, pos + chunk_size) - 1
            api.upload_chunk(path, session_id, pos, end, source.size, lambda s=pos, e=end: source.reader(s, e))
            sent.append((pos, end))
            pos = end + 1
        self._cleanups.append(lambda: (api.delete_session(session_id), api.http.close()))
        return Partial(provider="servicefabric", session_id=session_id, path=path, size=source.size,
                       bytes_sent=upto, sent=sent)
