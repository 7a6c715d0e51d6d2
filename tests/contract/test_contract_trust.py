"""Secrets and trust, for every provider: credentials never printed nor sent elsewhere, and the trust store is
exactly what the options say."""

import http.server
import threading

import pytest
import trustme

from kit import MiB

SECRET = "Sup3r-Secret-Pw!"


def test_credentials_inside_the_endpoint_are_refused_and_never_printed(contract, store):
    src, _ = contract.image(MiB, seed=41)
    endpoint = store.url.replace("http://", "http://someone:%s@" % SECRET)
    result, run = contract.upload(src, "userinfo", endpoint=endpoint, verbosity=3)
    assert result["failed"] and "contains a user name or password; give them as the username and password options" in result["msg"]
    assert SECRET not in run.output and SECRET not in str(result)
    assert "someone:" not in result["msg"]


class _Recorder(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self):
        self.server.seen.append((self.command, self.path, dict(self.headers)))
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if self.server.redirect_to:
            self.send_response(302)
            self.send_header("Location", self.server.redirect_to + self.path)
        else:
            self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = _answer

    def log_message(self, *args):
        pass


def _server(host, redirect_to=None):
    server = http.server.ThreadingHTTPServer((host, 0), _Recorder)
    server.seen, server.redirect_to = [], redirect_to
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_a_redirect_to_another_host_is_not_followed(contract):
    src, _ = contract.image(MiB, seed=42)
    elsewhere = _server("127.0.0.2")
    redirector = _server("127.0.0.1", redirect_to="http://127.0.0.2:%d" % elsewhere.server_port)
    try:
        result, run = contract.upload(src, "redirect", endpoint="http://127.0.0.1:%d" % redirector.server_port,
                                      username="someone", password=SECRET, verbosity=3)
    finally:
        redirector.shutdown()
        elsewhere.shutdown()
    assert result["failed"] and "redirects it (HTTP 302) to http://127.0.0.2:%d, which is not followed" % elsewhere.server_port \
        in result["msg"], result["msg"]
    assert elsewhere.seen == [], elsewhere.seen
    assert SECRET not in run.output


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory):
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    folder = tmp_path_factory.mktemp("pki")
    paths = {"ca": str(folder / "ca.pem"), "cert": str(folder / "cert.pem"), "key": str(folder / "key.pem")}
    ca.cert_pem.write_to_path(paths["ca"])
    cert.cert_chain_pems[0].write_to_path(paths["cert"])
    cert.private_key_pem.write_to_path(paths["key"])
    return paths


def test_environment_variables_do_not_change_whom_the_module_trusts(contract, profile, tmp_path, self_signed):
    tls = profile.start(tmp_path / "tls", extra_args=["--tls-cert", self_signed["cert"], "--tls-key", self_signed["key"]])
    try:
        src, digest = contract.image(MiB, seed=43)
        args = dict(endpoint=tls.url.replace("http://", "https://"))
        env = {"REQUESTS_CA_BUNDLE": self_signed["ca"], "CURL_CA_BUNDLE": self_signed["ca"], "SSL_CERT_FILE": self_signed["ca"]}
        refused, run = contract.upload(src, "trust", env=env, **args)
        assert refused["failed"] and "TLS certificate of" in refused["msg"] and "could not be verified" in refused["msg"], \
            refused["msg"]
        trusted, run = contract.upload(src, "trust", ca_path=self_signed["ca"], **args)
        assert trusted["changed"] and not trusted.get("failed"), run.output[-2000:]
    finally:
        tls.stop()


class _Html(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = b"<html><body><h1>Sign in to continue</h1></body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = _answer

    def log_message(self, *args):
        pass


def test_an_html_page_instead_of_the_api_is_named_as_such(contract):
    """A proxy's or a portal's login page answering 200 where the API should: the message names the request, the server
    and what came back, never a JSON decoder's words."""
    src, _ = contract.image(MiB, seed=44)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Html)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result, run = contract.upload(src, "html", endpoint="http://127.0.0.1:%d" % server.server_port,
                                      username="someone", password=SECRET)
    finally:
        server.shutdown()
    assert result["failed"], run.output[-2000:]
    assert "http://127.0.0.1:%d answered HTTP 200 with text/html" % server.server_port in result["msg"], result["msg"]
    assert "Expecting value" not in result["msg"] and "Traceback" not in run.output
