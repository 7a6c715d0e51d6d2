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

from ansible_collections.imagestore.upload.plugins.module_utils._driver import close, connect, execute
from ansible_collections.imagestore.upload.plugins.module_utils._errors import DeadlineExceeded, ImageStoreError
from ansible_collections.imagestore.upload.plugins.module_utils._http import HAS_REQUESTS, REQUESTS_IMPORT_ERROR
from ansible_collections.imagestore.upload.plugins.module_utils._options import (
    endpoint_secrets, session_spec, upload_spec, validate,
)
from ansible_collections.imagestore.upload.plugins.module_utils._registry import PROVIDERS

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


def run_module(operation, registry=None, reporter=None):
    """The whole module: argument spec, checks, the operation, exit_json/fail_json.

    ``reporter(params, protocol class)``: the engine's reporter of the run (None: none), built once the options are
    checked; it is told the outcome (``finish``), a failure included.
    """
    registry = registry or PROVIDERS
    module, owners = make_module(operation, registry)
    for secret in endpoint_secrets(module.params.get("endpoint")):
        module.no_log_values.add(secret)
    if not HAS_REQUESTS:
        module.fail_json(msg=missing_required_lib("requests"), exception=str(REQUESTS_IMPORT_ERROR))
    started = time.monotonic()
    params = dict(module.params)
    failure = None
    progress = None
    try:
        validate(params, registry, owners, operation)
        progress = reporter(params, registry[params["provider"]]) if reporter is not None else None
        protocol = connect(params, registry[params["provider"]], module.check_mode, module.warn, operation)
        with _Watchdog(params.get("timeout")):
            try:
                result = execute(protocol, operation, progress)
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
        if progress is not None:
            progress.finish(dict(failure, failed=True))
        module.fail_json(**failure)
    result["elapsed"] = round(time.monotonic() - started, 3)
    if progress is not None:
        progress.finish(result)
    module.exit_json(**result)
