"""Routing of requests to the provider APIs, fault rules around them, and the /_emulator/ control API.

Every provider call runs inside one catch-all: a full disk is answered as the provider's real server
answers it (``provider.disk_full``), any other unexpected error as a 500 in the provider's own error
format, with one line in the log and never a traceback. A broken or stalled connection is not an
error to answer: it propagates to the HTTP handler, which closes the connection.
"""

import time

from imagestore_emulator.faults import FaultError, Faults
from imagestore_emulator.httpd import BROKEN, log_line
from imagestore_emulator.settings import ConfigError
from imagestore_emulator.storage import is_disk_full, simulated_full_disk
from imagestore_emulator.wire import COPY_BLOCK, Response


class App:
    """Routes requests to the provider APIs and answers the /_emulator/ control API."""

    def __init__(self, data_dir, config, providers, faults=None):
        self.data_dir = data_dir
        self.config = config
        self.providers = providers
        self.faults = faults or Faults()
        self.started = time.time()

    def provider_for(self, path):
        if path.startswith("/_emulator/"):
            return None
        return next((p for p in self.providers if p.matches(path)), None)

    # ----------------------------------------------------------------- hooks of the HTTP handler

    def error_for(self, request, status, message):
        """An error about the request itself (bad framing), in the format of the API it was meant for."""
        provider = self.provider_for(request.path)
        if provider is None:
            return Response.json({"error": message}, status)
        return provider.request_error(status, message)

    def accepts_chunked(self, request):
        provider = self.provider_for(request.path)
        return provider is not None and provider.accepts_chunked(request)

    def gate(self, request, served_before):
        """A refusal before the body is read (the Service Fabric renegotiating gateway), or None."""
        provider = self.provider_for(request.path)
        hook = getattr(provider, "connection_gate", None)
        return hook(request, served_before) if hook is not None else None

    # ----------------------------------------------------------------- requests

    def route(self, request):
        """The provider's answer, with any fault rule applied; None: close the connection unanswered."""
        path = request.path
        if path.startswith("/_emulator/"):
            return self._guarded(None, request, lambda: self._control(request, path[len("/_emulator/"):]))
        provider = self.provider_for(path)
        if provider is None:
            return Response.json({"error": "no such API: %s %s" % (request.method, path)}, 404)
        rule = self.faults.match(provider.name, provider.operation(request), path)
        if rule is None:
            return self._guarded(provider, request, lambda: provider.handle(request))
        return self._apply_fault(rule, provider, request)

    def _guarded(self, provider, request, call):
        """Run ``call``; answer a full disk and any unexpected error in the provider's own format."""
        try:
            return call()
        except BROKEN:
            raise
        except Exception as exc:  # the catch-all: one log line, an answer in the API's format, no traceback
            if provider is not None and is_disk_full(exc):
                return provider.disk_full(request, exc)
            log_line("500 for %s %s: %s: %s" % (request.method, request.raw_path, type(exc).__name__, exc))
            message = "emulator internal error: %s" % type(exc).__name__
            if provider is None:
                return Response.json({"error": message}, 500)
            return provider.error_response(500, message)

    def _apply_fault(self, rule, provider, request):
        action = rule["action"]
        if action == "close_after_bytes":
            left = int(rule["bytes"])
            while left > 0 and request.body.remaining:
                left -= len(request.body.read(min(left, COPY_BLOCK)))
            return None
        if action == "status":
            return self._fault_answer(rule, provider, "injected fault: HTTP %d" % rule["status"])
        if action == "delay":
            time.sleep(rule["ms"] / 1000.0)
        elif action == "expire":
            provider.expire_for(request)
        if action == "enospc":
            with simulated_full_disk(int(rule.get("bytes", 0))):
                response = self._guarded(provider, request, lambda: provider.handle(request))
        else:
            response = self._guarded(provider, request, lambda: provider.handle(request))
        if action == "status_after":
            if request.body.remaining:      # the operation did not take the whole body: nothing to answer over
                return response
            return self._fault_answer(rule, provider, "injected fault: HTTP %d after the operation completed" % rule["status"])
        if action == "drop_response":
            response.drop = True
        return response

    @staticmethod
    def _fault_answer(rule, provider, message):
        response = provider.error_response(int(rule["status"]), message, rule.get("code"))
        if "retry_after" in rule:
            response.headers["Retry-After"] = str(rule["retry_after"])
        return response

    # ----------------------------------------------------------------- control API

    def _control(self, request, rest):
        if rest == "health":
            return Response.json({"status": "ok", "uptime": time.time() - self.started,
                                  "providers": {p.name: p.describe() for p in self.providers}})
        if rest == "reset" and request.method == "POST":
            for provider in self.providers:
                provider.reset()
            return Response.json({"status": "reset"})
        if rest == "faults":
            if request.method == "DELETE":
                self.faults.clear()
            elif request.method == "POST":
                try:
                    body = request.json(default={}) or {}
                    if not isinstance(body, dict):
                        raise FaultError("the body must be a JSON object")
                    rules = body.get("rules", [body] if "action" in body else [])
                    self.faults.add(rules, seed=body.get("seed"))
                except (FaultError, ValueError) as exc:
                    return Response.json({"error": str(exc)}, 400)
            return Response.json(self.faults.state())
        if rest == "config":
            if request.method in ("POST", "PUT", "PATCH"):
                try:
                    self.config.update(self.config.check(request.json(default={}) or {}))
                except (ConfigError, ValueError) as exc:
                    return Response.json({"error": str(exc)}, 400)
            return Response.json(dict(self.config))
        name, _, sub = rest.partition("/")
        for provider in self.providers:
            if provider.name == name:
                return provider.control(request, sub)
        return Response.json({"error": "no such control path: /_emulator/%s" % rest}, 404)
