# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""HTTP layer shared by every protocol (private; not a public API).

One requests session per run, bound to one endpoint and one ``Deadline``:

* trust is exactly what the options say: ``validate_certs``/``ca_path``, else the system's CA store;
  ``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE`` and ``.netrc`` change nothing (``trust_env`` off);
  proxies come from the environment only while ``use_proxy`` is true, as for ``ansible.builtin.uri``;
* redirects are never followed: a credential or session header never reaches another address;
* connect and read time-outs, retries and backoff sleeps are cut to what is left of the deadline;
* a refused connection before the server ever answered fails after one retry (a wrong endpoint or a
  stopped service), unless the user asked for ``retries`` explicitly;
* a protocol may classify an answer itself (``classify``): ZStack's 503 that carries an API error is an
  answer, not an outage. The retry *policy* is urllib3's ``Retry`` (backoff, jitter, Retry-After).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import os
import socket
import ssl

try:
    import http.client as http_client
except ImportError:  # pragma: no cover - Python 2 is not supported, but sanity imports on it
    import httplib as http_client

try:
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
    from urllib3.util.retry import Retry
    HAS_REQUESTS = True
    REQUESTS_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - reported by the modules through missing_required_lib
    HAS_REQUESTS = False
    REQUESTS_IMPORT_ERROR = exc

try:
    from urllib.parse import urlsplit
except ImportError:  # pragma: no cover - Python 2 is not supported, but sanity imports on it
    from urlparse import urlsplit

from ansible_collections.imagestore.upload.plugins.module_utils._bodies import Segment
from ansible_collections.imagestore.upload.plugins.module_utils._errors import ApiError, ImageStoreError, StoreFull, TransportError
from ansible_collections.imagestore.upload.plugins.module_utils._wait import Deadline

RETRY_STATUSES = frozenset([429, 500, 502, 503, 504])
REDIRECTS = frozenset([301, 302, 303, 307, 308])
#: classify() answers
OK, RETRY, ERROR = "ok", "retry", "error"
USER_AGENT = "imagestore.upload/0.2"
DEFAULT_RETRIES = 5


def short(text, limit=300):
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "..."


DEFAULT_PORTS = {"http": 80, "https": 443}


def origin(url):
    """scheme://host:port of a URL, without user info, path or query (safe to print); the scheme's default port is left
    out, so ``https://vc:443/x`` and ``https://vc/y`` are the same origin."""
    parts = urlsplit(url)
    scheme = (parts.scheme or "").lower()
    host = parts.hostname or ""
    if ":" in host:
        host = "[%s]" % host
    port = parts.port if parts.port and parts.port != DEFAULT_PORTS.get(scheme) else None
    return "%s://%s%s" % (scheme, host, ":%d" % port if port else "")


def basic_auth(username, password):
    """An Authorization header for HTTP Basic with UTF-8 credentials (requests encodes Latin-1 only)."""
    token = base64.b64encode(("%s:%s" % (username, password)).encode("utf-8")).decode("ascii")
    return "Basic %s" % token


def system_trust():
    """What ``verify`` is when no ca_path is given: the system's CA file or directory (requests' own bundle otherwise).

    OpenSSL's compiled-in locations and the distributions' usual ones; never SSL_CERT_FILE or SSL_CERT_DIR, which
    would let the environment decide whom the module trusts."""
    paths = ssl.get_default_verify_paths()
    for candidate in ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem",
                      paths.openssl_cafile):
        if candidate and os.path.isfile(candidate):
            return candidate
    for candidate in ("/etc/ssl/certs", paths.openssl_capath):
        if candidate and os.path.isdir(candidate):
            return candidate
    return True


def describe_transport_error(exc, endpoint):
    """Turn a requests exception into one sentence a user can act on (no secrets, no traceback)."""
    text = str(exc)
    if isinstance(exc, requests.exceptions.SSLError):
        if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
            reason = text.rsplit("certificate verify failed:", 1)[-1].split("(_ssl", 1)[0].strip(" )'\"")
            return ("TLS certificate of %s could not be verified (%s). Set ca_path to the CA bundle that signed it, "
                    "or validate_certs=false for a test system" % (endpoint, reason or "untrusted certificate"))
        return "TLS handshake with %s failed: %s" % (endpoint, short(text))
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "timed out connecting to %s" % endpoint
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return "timed out waiting for an answer from %s" % endpoint
    if isinstance(exc, requests.exceptions.ConnectionError):
        if refused(exc):
            return "cannot connect to %s: connection refused (is the endpoint right and the service running?)" % endpoint
        if "Name or service not known" in text or "nodename nor servname" in text or "getaddrinfo" in text:
            return "cannot resolve the host of %s" % endpoint
        if "timed out" in text:
            return "timed out talking to %s" % endpoint
        return "connection to %s failed: %s" % (endpoint, short(text))
    return "request to %s failed: %s" % (endpoint, short(text))


def retry_after(response):
    """Seconds of a Retry-After header given as a number (None otherwise)."""
    try:
        return max(0.0, float(response.headers.get("Retry-After")))
    except (TypeError, ValueError):
        return None


def refused(exc):
    return "Connection refused" in str(exc) or "[Errno 111]" in str(exc)


def make_retry_policy(retries, backoff, backoff_max):
    """urllib3's Retry as the policy: ``retries`` tries after the first, exponential backoff with jitter."""
    kwargs = dict(total=max(0, retries), connect=None, read=None, status=None, backoff_factor=backoff,
                  status_forcelist=RETRY_STATUSES, respect_retry_after_header=True,
                  raise_on_status=False, raise_on_redirect=False)
    try:
        return Retry(allowed_methods=None, backoff_max=backoff_max, backoff_jitter=backoff / 2.0, **kwargs)
    except TypeError:  # urllib3 1.26: no jitter, a class-wide maximum
        policy = Retry(method_whitelist=False, **kwargs)
        policy.BACKOFF_MAX = backoff_max
        return policy


def make_adapter(warm_up=None, **kwargs):
    """The HTTPAdapter of a run: its connections send FileRange pieces with sendfile on plain sockets, and, with
    ``warm_up=(path, threshold)``, carry a small ``GET path`` before their first body larger than ``threshold``.

    Warm-up: gateways that ask for the client certificate by renegotiating TLS after a request arrives (HTTP.sys, under
    Service Fabric's HTTP gateway on Windows) fail a large first body on a fresh connection (403, or a hang); a small
    request first lets the renegotiation happen while nothing is in flight. A connection that reconnects is fresh again.
    """

    class Mixin(object):
        _imagestore_warm = False

        def connect(self):
            self._imagestore_warm = False
            return super(Mixin, self).connect()

        def request(self, method, url, body=None, headers=None, **kw):
            if warm_up and not self._imagestore_warm:
                length = 0
                for key, value in (headers or {}).items():
                    if key.lower() == "content-length":
                        length = int(value or 0)
                if length > warm_up[1]:
                    http_client.HTTPConnection.request(self, "GET", warm_up[0], headers={"User-Agent": USER_AGENT})
                    answer = http_client.HTTPConnection.getresponse(self)
                    answer.read()
                    answer.close()
            self._imagestore_warm = True
            return super(Mixin, self).request(method, url, body=body, headers=headers, **kw)

        def send(self, data):
            if isinstance(data, Segment) and isinstance(self.sock, socket.socket) and not isinstance(self.sock, ssl.SSLSocket) \
                    and data.body.sendfile_ok():
                # plain TCP from a regular file: the kernel copies the file's pages to the socket
                sent = self.sock.sendfile(data.body.fileobj(), data.offset, data.count)
                if sent < data.count:
                    raise data.body.shorter()
                return
            return super(Mixin, self).send(data)

    class Connection(Mixin, HTTPConnection):
        pass

    class SecureConnection(Mixin, HTTPSConnection):
        pass

    class Pool(HTTPConnectionPool):
        ConnectionCls = Connection

    class SecurePool(HTTPSConnectionPool):
        ConnectionCls = SecureConnection

    adapter = HTTPAdapter(**kwargs)
    adapter.poolmanager.pool_classes_by_scheme = {"http": Pool, "https": SecurePool}
    return adapter


class HttpClient:
    """A requests session bound to one endpoint and one deadline, with the retry loop of the project.

    ``error_parser(response) -> (code, message)`` turns the provider's error body into a code and a
    message; ``classify(response) -> OK | RETRY | ERROR | None`` (None: the default rule) lets a
    protocol decide whether an answer is worth repeating; ``full(status, code, message)`` whether it says the store has
    no room left (raised as StoreFull, never repeated); ``warm_up=(path, threshold)``: see make_adapter.
    """

    def __init__(self, endpoint, validate_certs=True, ca_path=None, client_cert=None, client_key=None,
                 timeout=60, retries=None, backoff=0.5, backoff_max=30.0, pool_size=8, error_parser=None,
                 classify=None, deadline=None, use_proxy=True, warm_up=None, full=None):
        if not HAS_REQUESTS:
            raise ImageStoreError("the Python library requests is required: %s" % REQUESTS_IMPORT_ERROR)
        self.endpoint = endpoint.rstrip("/")
        self.origin = origin(self.endpoint)
        self.timeout = timeout
        self.deadline = deadline or Deadline()
        self.error_parser = error_parser or (lambda response: (None, short(response.text or "")))
        self.classify = classify or (lambda response: None)
        self.full = full or (lambda status, code, message: False)
        self.explicit_retries = retries is not None
        self.retries = DEFAULT_RETRIES if retries is None else retries
        self.retry_policy = make_retry_policy(self.retries, backoff, backoff_max)
        self.session = requests.Session()
        self.session.trust_env = False      # no CA bundle, .netrc or proxy from the environment behind the options' back
        self.use_proxy = use_proxy
        self._proxy_cache = {}
        adapter = make_adapter(warm_up, pool_connections=2, pool_maxsize=max(2, pool_size), max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        if not validate_certs:
            self.verify = False
        else:
            self.verify = ca_path or system_trust()
        if client_cert:
            self.session.cert = (client_cert, client_key) if client_key else client_cert
        self.session.headers["User-Agent"] = USER_AGENT
        self.attempts = 0
        self.retried = 0
        self.answered = 0          # answers received in this run (a refused connection after one is a restart, not a typo)

    def _proxies(self, url):
        """The environment's proxies for the URL's origin (looked up once per origin: the environment does not change)."""
        key = origin(url)
        if key not in self._proxy_cache:
            self._proxy_cache[key] = requests.utils.get_environ_proxies(url)
        return self._proxy_cache[key]

    def url(self, path):
        if path.startswith("http://") or path.startswith("https://"):
            return path
        return self.endpoint + path

    def close(self):
        self.session.close()

    def request_timeout(self):
        """The read time-out of the next request: ``request_timeout`` cut to what is left of the deadline."""
        return self.deadline.bound(self.timeout)

    def request(self, method, path, expect=(200,), body=None, retry=True, idempotent=True, timeout=None,
                what=None, same_origin=True, **kwargs):
        """Send one request, retrying what is safe to retry; return the response.

        ``expect``: statuses that count as success (others raise ApiError).
        ``body``: bytes, or a callable returning a fresh file-like/bytes for each attempt.
        ``idempotent=False``: an attempt whose request may have reached the server is not repeated
        (only refusals such as 429/503 and connections that never opened are retried).
        ``what``: a few words naming the operation, used in error messages.
        ``same_origin=False``: the URL may be on another host (an upload URL the API gave, such as ZStack's image
        store); the caller then sends no credential with it.
        """
        url = self.url(path)
        if same_origin and origin(url) != self.origin:
            raise ApiError("%s: the server sent this run to %s, another address than the endpoint %s; it is not followed "
                           "(credentials and session tokens are never sent elsewhere)" % (what or method, origin(url), self.origin))
        what = what or "%s %s" % (method, path.split("?")[0])
        policy = self.retry_policy if retry else self.retry_policy.new(total=0)
        kwargs["allow_redirects"] = False
        kwargs.setdefault("verify", self.verify)
        if self.use_proxy and "proxies" not in kwargs:
            kwargs["proxies"] = self._proxies(url)
        fixed_timeout = timeout
        while True:
            self.deadline.check(what)
            read = self.deadline.bound(fixed_timeout or self.timeout)
            kwargs["timeout"] = (min(15.0, read), read)
            data = body() if callable(body) else body
            self.attempts += 1
            try:
                response = self.session.request(method, url, data=data, **kwargs)
            except requests.exceptions.RequestException as exc:
                message = describe_transport_error(exc, self.endpoint)
                if self.deadline.expired():
                    raise self.deadline.error("%s (%s)" % (what, message))
                if not self._retryable_error(exc, idempotent):
                    raise TransportError("%s: %s" % (what, message), retryable=True)
                if refused(exc) and not self.answered and not self.explicit_retries:
                    policy = self._next(policy.new(total=min(1, policy.total)), method, url, error=exc, what=what, message=message)
                else:
                    policy = self._next(policy, method, url, error=exc, what=what, message=message)
                self.deadline.sleep(policy.get_backoff_time(), what)
                continue
            finally:
                if hasattr(data, "close"):
                    data.close()
            self.answered += 1
            verdict = self.classify(response)
            if verdict == OK or (verdict is None and response.status_code in expect):
                return response
            code, message = self._parse_error(response)
            text = "HTTP %d%s%s" % (response.status_code, " %s" % code if code else "", ": %s" % message if message else "")
            if self.full(response.status_code, code, message or ""):
                raise StoreFull("%s failed: %s: the store has no room left (free space in it, then run again: what it "
                                "received is kept)" % (what, text), status=response.status_code, code=code)
            if response.status_code in REDIRECTS:
                target = response.headers.get("Location") or "?"
                raise ApiError("%s failed: the server redirects it (HTTP %d) to %s, which is not followed; give the endpoint "
                               "the server expects" % (what, response.status_code, origin(self.url(target)) if "://" in target else target),
                               status=response.status_code)
            again = verdict == RETRY or (verdict is None and response.status_code in RETRY_STATUSES
                                         and (idempotent or response.status_code in (429, 503)))
            if again:
                policy = self._next(policy, method, url, response=response, what=what, message=text,
                                    status=response.status_code, code=code)
                self.deadline.sleep(self._retry_delay(policy, response), what)
                continue
            raise ApiError("%s failed: %s" % (what, text), status=response.status_code, code=code,
                           retryable=response.status_code in RETRY_STATUSES, retry_after=retry_after(response))

    @staticmethod
    def _retryable_error(exc, idempotent):
        if isinstance(exc, requests.exceptions.SSLError):
            return False          # a certificate problem does not get better by asking again
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            return True
        if isinstance(exc, requests.exceptions.ConnectionError) and "NewConnectionError" in repr(exc):
            return True           # nothing was sent
        if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                            requests.exceptions.ChunkedEncodingError)):
            return idempotent
        return False

    def _next(self, policy, method, url, response=None, error=None, what="", message="", status=None, code=None):
        self.retried += 1
        try:
            return policy.increment(method=method, url=url, response=getattr(response, "raw", None),
                                    error=_PolicyError(message) if error is not None else None)
        except Exception:  # urllib3's MaxRetryError: the budget is spent
            tries = len(policy.history) + 1
            raise (TransportError if error is not None else ApiError)(
                "%s failed after %d attempt%s: %s" % (what, tries, "" if tries == 1 else "s", message),
                status=status, code=code, retryable=True)

    @staticmethod
    def _retry_delay(policy, response):
        header = response.headers.get("Retry-After")
        if header and response.status_code in (429, 503):
            try:
                retry_after = policy.parse_retry_after(header)
                return min(max(retry_after, 0.0), getattr(policy, "backoff_max", None) or policy.BACKOFF_MAX)
            except Exception:
                pass
        return policy.get_backoff_time()

    def _parse_error(self, response):
        try:
            return self.error_parser(response)
        except Exception:
            return None, short(response.text or "")

    @staticmethod
    def json(response, what):
        """The JSON body of an answer; an answer that is not JSON (an HTML error page, a proxy's text) names the request,
        the server and what came back instead of a decoder's message."""
        try:
            return response.json()
        except ValueError:
            kind = response.headers.get("Content-Type") or "no content type"
            text = short((response.content or b"")[:200].decode("utf-8", "replace"), 120)
            raise ApiError("%s: %s answered HTTP %d with %s instead of JSON: %r" % (
                what, origin(response.url or ""), response.status_code, kind, text), status=response.status_code)


class _PolicyError(Exception):
    """Stands for a transport error in urllib3's Retry bookkeeping (counted against ``total``)."""
