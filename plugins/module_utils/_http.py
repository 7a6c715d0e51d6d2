# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""HTTP layer shared by the three adapters (private; not a public API).

One requests session per run, TLS verification on by default, optional CA bundle and client
certificate, per-request timeouts, and a bounded retry loop with exponential backoff and jitter on
connection errors, timeouts, 429 and 5xx (Retry-After honoured). The retry *policy* is urllib3's
``Retry`` (backoff, jitter, Retry-After parsing, exhaustion); the loop is ours because request
bodies are streams that have to be re-opened for each attempt.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

try:
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry
    HAS_REQUESTS = True
    REQUESTS_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - reported by the modules through missing_required_lib
    HAS_REQUESTS = False
    REQUESTS_IMPORT_ERROR = exc

RETRY_STATUSES = frozenset([429, 500, 502, 503, 504])


class ImageStoreError(Exception):
    """The one error type of the client: what failed, with HTTP status and provider error code."""

    def __init__(self, message, status=None, code=None, retryable=False, details=None):
        super(ImageStoreError, self).__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.retryable = retryable
        self.details = details or {}

    def to_result(self):
        """The keys a module adds to fail_json besides msg."""
        result = {}
        if self.status is not None:
            result["status"] = self.status
        if self.code is not None:
            result["error_code"] = self.code
        if self.details:
            result.update(self.details)
        return result


class ApiError(ImageStoreError):
    """The server answered with an error status."""


class TransportError(ImageStoreError):
    """No usable answer: connection refused or reset, timeout, TLS failure."""


def describe_transport_error(exc, endpoint):
    """Turn a requests exception into one sentence a user can act on (no secrets, no traceback)."""
    text = str(exc)
    if isinstance(exc, requests.exceptions.SSLError):
        if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
            reason = text.rsplit("certificate verify failed:", 1)[-1].split("(_ssl", 1)[0].strip(" )'\"")
            return ("TLS certificate of %s could not be verified (%s). Set ca_path to the CA bundle that signed it, "
                    "or validate_certs=false for a test system" % (endpoint, reason or "untrusted certificate"))
        return "TLS handshake with %s failed: %s" % (endpoint, _short(text))
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "timed out connecting to %s" % endpoint
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return "timed out waiting for an answer from %s (request_timeout)" % endpoint
    if isinstance(exc, requests.exceptions.ConnectionError):
        if "Connection refused" in text or "NewConnectionError" in text:
            return "cannot connect to %s: connection refused (is the endpoint right and the service running?)" % endpoint
        if "Name or service not known" in text or "nodename nor servname" in text or "getaddrinfo" in text:
            return "cannot resolve the host of %s" % endpoint
        return "connection to %s failed: %s" % (endpoint, _short(text))
    return "request to %s failed: %s" % (endpoint, _short(text))


def _short(text, limit=300):
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "..."


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


class HttpClient:
    """A requests session bound to one endpoint, with the retry loop of the project.

    ``error_parser(response) -> (code, message)`` is supplied by the adapter and turns the
    provider's error body into a code and a message.
    """

    def __init__(self, endpoint, validate_certs=True, ca_path=None, client_cert=None, client_key=None,
                 timeout=60, retries=5, backoff=0.5, backoff_max=30.0, pool_size=8, error_parser=None,
                 sleep=time.sleep):
        if not HAS_REQUESTS:
            raise ImageStoreError("the Python library requests is required: %s" % REQUESTS_IMPORT_ERROR)
        self.endpoint = endpoint.rstrip("/")
        self.timeout = timeout
        self.error_parser = error_parser or (lambda response: (None, response.text[:500]))
        self._sleep = sleep
        self.retry_policy = make_retry_policy(retries, backoff, backoff_max)
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=max(2, pool_size), max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        # Given on every request, not only on the session: requests lets REQUESTS_CA_BUNDLE and
        # CURL_CA_BUNDLE override a session-level verify (so ca_path and validate_certs=false would be ignored).
        self.verify = ca_path if (validate_certs and ca_path) else bool(validate_certs)
        self.session.verify = self.verify
        if client_cert:
            self.session.cert = (client_cert, client_key) if client_key else client_cert
        self.session.headers["User-Agent"] = "imagestore.upload/0.1"
        self.attempts = 0
        self.retried = 0

    def url(self, path):
        if path.startswith("http://") or path.startswith("https://"):
            return path
        return self.endpoint + path

    def close(self):
        self.session.close()

    def request(self, method, path, expect=(200,), body=None, retry=True, idempotent=True, timeout=None,
                what=None, **kwargs):
        """Send one request, retrying what is safe to retry; return the response.

        ``expect``: statuses that count as success (others raise ApiError).
        ``body``: bytes, or a callable returning a fresh file-like/bytes for each attempt.
        ``idempotent=False``: an attempt whose request may have reached the server is not repeated
        (only refusals such as 429/503 and connection failures before sending are retried).
        ``what``: a few words naming the operation, used in error messages.
        """
        url = self.url(path)
        what = what or "%s %s" % (method, path.split("?")[0])
        policy = self.retry_policy if retry else self.retry_policy.new(total=0)
        kwargs.setdefault("timeout", self._timeouts(timeout))
        kwargs.setdefault("verify", self.verify)
        while True:
            data = body() if callable(body) else body
            self.attempts += 1
            try:
                response = self.session.request(method, url, data=data, **kwargs)
            except requests.exceptions.RequestException as exc:
                retryable = self._retryable_error(exc, idempotent)
                if not retryable:
                    raise TransportError("%s: %s" % (what, describe_transport_error(exc, self.endpoint)), retryable=False)
                policy = self._next(policy, method, url, error=exc, what=what,
                                    message=describe_transport_error(exc, self.endpoint))
                self._sleep(policy.get_backoff_time())
                continue
            finally:
                if hasattr(data, "close"):
                    data.close()
            if response.status_code in expect:
                return response
            code, message = self._parse_error(response)
            text = "HTTP %d%s%s" % (response.status_code, " %s" % code if code else "", ": %s" % message if message else "")
            if response.status_code in RETRY_STATUSES and (idempotent or response.status_code in (429, 503)):
                policy = self._next(policy, method, url, response=response, what=what, message=text,
                                    status=response.status_code, code=code)
                self._sleep(self._retry_delay(policy, response))
                continue
            raise ApiError("%s failed: %s" % (what, text), status=response.status_code, code=code,
                           retryable=response.status_code in RETRY_STATUSES)

    def _timeouts(self, timeout):
        read = timeout or self.timeout
        return (min(15.0, read), read)

    @staticmethod
    def _retryable_error(exc, idempotent):
        if isinstance(exc, requests.exceptions.SSLError):
            return False          # a certificate problem does not get better by asking again
        if isinstance(exc, (requests.exceptions.ConnectTimeout,)):
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
            tries = self.attempts_for(policy) + 1
            raise (TransportError if error is not None else ApiError)(
                "%s failed after %d attempts: %s" % (what, tries, message), status=status, code=code, retryable=True)

    @staticmethod
    def attempts_for(policy):
        return len(policy.history)

    def _retry_delay(self, policy, response):
        retry_after = None
        header = response.headers.get("Retry-After")
        if header and response.status_code in (429, 503):
            try:
                retry_after = policy.parse_retry_after(header)
            except Exception:
                retry_after = None
        backoff = policy.get_backoff_time()
        if retry_after is not None:
            return min(max(retry_after, 0.0), getattr(policy, "backoff_max", None) or policy.BACKOFF_MAX)
        return backoff

    def _parse_error(self, response):
        try:
            return self.error_parser(response)
        except Exception:
            return None, _short(response.text or "")


class _PolicyError(Exception):
    """Stands for a transport error in urllib3's Retry bookkeeping (counted against ``total``)."""
