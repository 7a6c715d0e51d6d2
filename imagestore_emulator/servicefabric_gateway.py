"""What the cluster's HTTP gateway adds around the Image Store: the server-side time-out, the cluster
endpoints ``sfctl cluster select`` calls, and the client-certificate renegotiation of an HTTP.sys gateway.

Sources: microsoft/service-fabric (2018 snapshot) ``src/prod/src/httpgateway``:

* ``RequestHandlerBase::HandlerAsyncOperation::UpdateRequestTimeout``: ``timeout`` is parsed as an
  unsigned 32-bit decimal; anything else is ignored and the default (1 minute) applies. The time-out
  bounds the operation the gateway runs for the request; when it passes, the answer is 504
  ``FABRIC_E_TIMEOUT`` (``HttpUtil::ErrorCodeToHttpStatus``) whether or not the operation completes.
* ``ClusterManagementHandler``: ``GET /`` answers the HTML root page (``html/ServiceFabric.html``),
  ``GET /$/GetClusterVersion`` answers ``{"Version": ...}``; both are what ``sfctl cluster select`` and
  sfctl's version check call.
* ``RequestHandlerBase::HandlerAsyncOperation::OnError(status, description)``: a request refused for its
  client certificate gets 403 with the status line ``Client certificate required`` and an empty body.
  The 48 KiB limit is HTTP.sys/IIS's: at most that much of a body is buffered before a renegotiation.
"""

from imagestore_emulator.servicefabric_wire import INVALID_ARG, TIMEOUT, Fail, check_api_version, fabric_error, server_timeout
from imagestore_emulator.wire import Response

CLUSTER_VERSION = "9.1.0.0"      # within the api-versions this emulator answers (up to 9.1)
ROOT_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Service Fabric</title></head>
<body><p>Service Fabric HTTP gateway (imagestore-emulator). The Image Store REST API is under /ImageStore.</p></body>
</html>
"""
CERT_REQUIRED = "Client certificate required"


class Gateway:
    """The gateway half of ``ServiceFabricAPI`` (mixed into it)."""

    def _cluster_call(self, request):
        """``/`` and ``/$/...``: the cluster endpoints, not the Image Store."""
        if request.path == "/" and request.method in ("GET", "HEAD"):
            return Response.text(ROOT_PAGE, content_type="text/html; charset=utf-8")
        if request.path.lower() == "/$/getclusterversion" and request.method == "GET":
            check_api_version(request)
            return Response.json({"Version": CLUSTER_VERSION})
        raise Fail(400, INVALID_ARG, "unsupported operation: %s %s" % (request.method, request.path[:200]))

    def _timed_out(self, request, response):
        """504 FABRIC_E_TIMEOUT when the operation outlasted the request's ``timeout`` (it completed, or goes on
        completing, behind the answer), else ``response``."""
        limit = server_timeout(request)
        if request.processing_seconds() > limit:
            with self._lock:
                self._gateway_stats["timeouts"] += 1
            return fabric_error(504, TIMEOUT, "the operation did not complete within the timeout of %d seconds" % limit)
        return response

    def connection_gate(self, request, served_before):
        """An HTTP.sys gateway that asks for the client certificate by renegotiating TLS after the request
        arrived cannot do so under a body larger than it buffers: the first request of a fresh connection
        carrying such a body is refused with 403 and the connection closed. A connection that carried a
        small request first has its certificate and passes large bodies."""
        if served_before or not self.config.get("sf_cert_renegotiation") or not request.handler.server.client_certs:
            return None
        limit = int(self.config.get("sf_cert_renegotiation_bytes") or 0)
        size = request.body.length
        if size is not None and size <= limit:
            return None
        with self._lock:
            self._gateway_stats["renegotiation_refusals"] += 1
        response = Response.empty(403)
        response.reason = CERT_REQUIRED
        response.close = True
        return response
