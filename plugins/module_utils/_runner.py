# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The module runner (private): argument spec, checks, one protocol, one engine call, one exit.

Every failure becomes ``fail_json(msg=...)`` outside the except blocks (so -vvv shows no traceback of a
handled error); a bug of ours is one line, with its traceback only in ``exception``. Secrets a user put
where they do not belong (credentials inside ``endpoint``) are hidden from every output.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import signal
import time
import traceback

from ansible.module_utils.basic import AnsibleModule, env_fallback, missing_required_lib

from ansible_collections.imagestore.upload.plugins.module_utils._engine import Engine
from ansible_collections.imagestore.upload.plugins.module_utils._errors import DeadlineExceeded, ImageStoreError
from ansible_collections.imagestore.upload.plugins.module_utils._http import HAS_REQUESTS, REQUESTS_IMPORT_ERROR, HttpClient
from ansible_collections.imagestore.upload.plugins.module_utils._options import (
    endpoint_secrets, session_spec, upload_spec, validate,
)
from ansible_collections.imagestore.upload.plugins.module_utils._protocol import Context
from ansible_collections.imagestore.upload.plugins.module_utils._registry import PROVIDERS
from ansible_collections.imagestore.upload.plugins.module_utils._sessions import SessionOps
from ansible_collections.imagestore.upload.plugins.module_utils._wait import CLEANUP_GRACE, Deadline

#: seconds past ``timeout`` after which the run is interrupted wherever it is (every wait is bounded before that)
WATCHDOG_GRACE = 5


def ansible_spec(spec):
    """The argument spec with our ("env", names) fallbacks turned into Ansible's env_fallback."""
    out = {}
    for option, entry in spec.items():
        entry = dict(entry)
        if isinstance(entry.get("fallback"), tuple) and entry["fallback"][0] == "env":
            entry["fallback"] = (env_fallback, entry["fallback"][1])
        out[option] = entry
    return out


def module_spec(operation, registry=None):
    """(argument spec, option owners) of one of the modules ("upload", "sessions", "commit", "absent")."""
    registry = registry or PROVIDERS
    if operation == "upload":
        spec, owners = upload_spec(registry)
    else:
        spec, owners = session_spec(registry, absent=operation == "absent")
    return ansible_spec(spec), owners


def make_module(operation, registry=None):
    spec, owners = module_spec(operation, registry)
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    return module, owners


def connect(params, cls, check_mode=False, warn=None, operation=None):
    """The protocol object of one run: its deadline, its HTTP client, its context."""
    deadline = Deadline(params.get("timeout") or None)
    parallel = params.get("parallel") or 4
    http = HttpClient(params["endpoint"], validate_certs=params.get("validate_certs", True), ca_path=params.get("ca_path"),
                      client_cert=params.get("client_cert"), client_key=params.get("client_key"),
                      timeout=params.get("request_timeout") or 60, retries=params.get("retries"),
                      pool_size=max(parallel * 2, 8) + 2, error_parser=cls.parse_error, classify=cls.classify,
                      deadline=deadline, use_proxy=params.get("use_proxy", True))
    return cls(Context(params, http, deadline, check_mode=check_mode, warn=warn, operation=operation))


def execute(protocol, operation, reporter=None):
    """Run one operation on a protocol: the result dict (raises ImageStoreError)."""
    if getattr(protocol, "legacy", False):
        return protocol.run_legacy(operation)
    if operation == "upload":
        engine = Engine(protocol, reporter=reporter)
        return engine.absent() if protocol.ctx.params.get("state") == "absent" else engine.upload()
    ops = SessionOps(protocol)
    return {"sessions": ops.info, "commit": ops.commit, "absent": ops.absent}[operation]()


def close(protocol, warn):
    protocol.deadline.grace(CLEANUP_GRACE)
    try:
        protocol.close()
    except ImageStoreError as exc:
        warn("logging out of %s failed: %s" % (protocol.http.origin, exc.message))
    finally:
        protocol.http.close()


class _Watchdog:
    """Interrupts the run ``WATCHDOG_GRACE`` seconds after its deadline, wherever it waits (the last line of defence)."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.armed = bool(seconds) and hasattr(signal, "SIGALRM")

    def _fire(self, signum, frame):
        raise DeadlineExceeded("timeout of %d seconds reached; the run was interrupted %d seconds later while it still "
                               "waited; what the store received is kept where it can be resumed: run again to continue"
                               % (self.seconds, WATCHDOG_GRACE))

    def __enter__(self):
        if self.armed:
            self._previous = signal.signal(signal.SIGALRM, self._fire)
            signal.setitimer(signal.ITIMER_REAL, self.seconds + WATCHDOG_GRACE)
        return self

    def __exit__(self, *exc):
        if self.armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self._previous)


def run_module(operation, registry=None):
    """The whole module: argument spec, checks, the operation, exit_json/fail_json."""
    registry = registry or PROVIDERS
    module, owners = make_module(operation, registry)
    for secret in endpoint_secrets(module.params.get("endpoint")):
        module.no_log_values.add(secret)
    if not HAS_REQUESTS:
        module.fail_json(msg=missing_required_lib("requests"), exception=str(REQUESTS_IMPORT_ERROR))
    started = time.monotonic()
    params = dict(module.params)
    failure = None
    try:
        validate(params, registry, owners, operation)
        protocol = connect(params, registry[params["provider"]], module.check_mode, module.warn, operation)
        with _Watchdog(params.get("timeout")):
            try:
                result = execute(protocol, operation)
            finally:
                close(protocol, module.warn)
    except ImageStoreError as exc:
        failure = dict(msg=exc.message, **exc.to_result())
        if isinstance(exc, DeadlineExceeded) and "session_cleanup" not in exc.details:
            failure["msg"] += "; run again to continue"
    except Exception as exc:  # a bug of ours: a one-line message, and the traceback only with -vvv
        failure = dict(msg="unexpected %s: %s" % (type(exc).__name__, exc), exception=traceback.format_exc())
    if failure is not None:
        # outside the except blocks: fail_json adds the traceback of a handled error at -vvv otherwise
        failure["elapsed"] = round(time.monotonic() - started, 3)
        module.fail_json(**failure)
    result["elapsed"] = round(time.monotonic() - started, 3)
    module.exit_json(**result)
