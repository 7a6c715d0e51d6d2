# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One run, whoever drives it (the modules, the command line, the pytest plugin): checked options in, a protocol
connected to its store, one operation, the result out (private). Imports nothing from Ansible."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.imagestore.upload.plugins.module_utils._engine import Engine
from ansible_collections.imagestore.upload.plugins.module_utils._errors import ImageStoreError
from ansible_collections.imagestore.upload.plugins.module_utils._http import HttpClient
from ansible_collections.imagestore.upload.plugins.module_utils._protocol import Context
from ansible_collections.imagestore.upload.plugins.module_utils._sessions import SessionOps
from ansible_collections.imagestore.upload.plugins.module_utils._wait import CLEANUP_GRACE, Deadline


def connect(params, cls, check_mode=False, warn=None, operation=None):
    """The protocol object of one run: its deadline, its HTTP client, its context."""
    deadline = Deadline(params.get("timeout") or None)
    parallel = params.get("parallel") or 4
    http = HttpClient(params["endpoint"], validate_certs=params.get("validate_certs", True), ca_path=params.get("ca_path"),
                      client_cert=params.get("client_cert"), client_key=params.get("client_key"),
                      timeout=params.get("request_timeout") or 60, retries=params.get("retries"),
                      pool_size=max(parallel * 2, 8) + 2, error_parser=cls.parse_error, classify=cls.classify,
                      deadline=deadline, use_proxy=params.get("use_proxy", True),
                      warm_up=cls.warm_up if params.get("client_cert") else None, full=cls.store_full)
    return cls(Context(params, http, deadline, check_mode=check_mode, warn=warn, operation=operation))


def execute(protocol, operation, reporter=None):
    """Run one operation on a protocol: the result dict (raises ImageStoreError)."""
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
