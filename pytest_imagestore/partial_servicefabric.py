"""Service Fabric: chunks [0, fraction*size) into the session image_upload would use for that file."""

from ansible_collections.imagestore.upload.plugins.module_utils._servicefabric import (
    ServiceFabricClient, normalize_path, session_id_for,
)
from ansible_collections.imagestore.upload.plugins.module_utils._upload import Source
from pytest_imagestore.partial import Partial, http_for


def make(target, src, fraction, chunk_size, path):
    path = normalize_path(path)
    source = Source(src)
    api = ServiceFabricClient(http_for(target, ServiceFabricClient.parse_error))
    session_id = session_id_for(path, source)
    upto = int(source.size * fraction)
    sent = []
    pos = 0
    while pos < upto:
        end = min(upto, pos + chunk_size) - 1
        api.upload_chunk(path, session_id, pos, end, source.size, lambda s=pos, e=end: source.reader(s, e))
        sent.append((pos, end))
        pos = end + 1

    def cleanup():
        api.delete_session(session_id)
        api.http.close()

    return Partial(provider="servicefabric", session_id=session_id, path=path, size=source.size,
                   bytes_sent=upto, sent=sent), cleanup
