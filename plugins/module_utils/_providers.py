# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One registry of providers, the option specs the modules share, and the module runner (private).

The option specs here are documented once in ``plugins/doc_fragments/connection.py`` (connection
options) and ``plugins/doc_fragments/session.py`` (how a session is named per provider).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
import time
import traceback

from ansible.module_utils.basic import env_fallback, missing_required_lib
from ansible.module_utils.common.text.formatters import human_to_bytes

from ansible_collections.imagestore.upload.plugins.module_utils._http import HAS_REQUESTS, REQUESTS_IMPORT_ERROR, ImageStoreError
from ansible_collections.imagestore.upload.plugins.module_utils._servicefabric import ServiceFabric
from ansible_collections.imagestore.upload.plugins.module_utils._upload import DEFAULT_CHUNK_SIZE, MiB, SourceChangedError, TransferError
from ansible_collections.imagestore.upload.plugins.module_utils._zstack import ZStack

PROVIDERS = dict((cls.name, cls) for cls in (ServiceFabric, ZStack))   # vsphere runs on the engine (_registry.py)

MIN_CHUNK = 64 * 1024
MAX_CHUNK = 4096 * MiB
MAX_PARALLEL = 64


def connection_spec():
    """Options every module takes: which store, where, and how to authenticate."""
    return dict(
        provider=dict(type="str", required=True, choices=sorted(PROVIDERS), fallback=(env_fallback, ["IMAGESTORE_PROVIDER"])),
        endpoint=dict(type="str", required=True, fallback=(env_fallback, ["IMAGESTORE_ENDPOINT"])),
        username=dict(type="str", fallback=(env_fallback, ["IMAGESTORE_USERNAME"])),
        password=dict(type="str", no_log=True, fallback=(env_fallback, ["IMAGESTORE_PASSWORD"])),
        client_cert=dict(type="path", fallback=(env_fallback, ["IMAGESTORE_CLIENT_CERT"])),
        client_key=dict(type="path", no_log=False, fallback=(env_fallback, ["IMAGESTORE_CLIENT_KEY"])),
        validate_certs=dict(type="bool", default=True, fallback=(env_fallback, ["IMAGESTORE_VALIDATE_CERTS"])),
        ca_path=dict(type="path", fallback=(env_fallback, ["IMAGESTORE_CA_PATH"])),
        request_timeout=dict(type="float", default=60.0),
        retries=dict(type="int", default=5),
        api_style=dict(type="str", default="auto", choices=["auto", "api", "rest"]),
    )


#: destination / session options and the provider they belong to
PROVIDER_OPTIONS = {
    "path": "servicefabric",
    "library": "vsphere",
    "item": "vsphere",
    "file_name": "vsphere",
    "keep_session_on_failure": "vsphere",
    "name": "zstack",
    "backup_storage": "zstack",
    "format": "zstack",
    "media_type": "zstack",
    "platform": "zstack",
    "image_id": "zstack",
    "purge": "zstack",
}


def upload_spec():
    spec = connection_spec()
    spec.update(
        src=dict(type="path", required=True),
        chunk_size=dict(type="str", default=str(DEFAULT_CHUNK_SIZE)),
        parallel=dict(type="int", default=4),
        force=dict(type="bool", default=False),
        timeout=dict(type="int", default=0),
        digest_cache=dict(type="bool", default=True),
        path=dict(type="str"),
        library=dict(type="str"),
        item=dict(type="str"),
        file_name=dict(type="str"),
        keep_session_on_failure=dict(type="bool", default=False),
        name=dict(type="str"),
        backup_storage=dict(type="str"),
        format=dict(type="str"),
        media_type=dict(type="str", choices=["RootVolumeTemplate", "ISO", "DataVolumeTemplate"]),
        platform=dict(type="str", choices=["Linux", "Windows", "Other", "Paravirtualization", "WindowsVirtio"]),
        image_id=dict(type="str"),
    )
    return spec


UPLOAD_REQUIRED_IF = [
    ("provider", "servicefabric", ["path"]),
    ("provider", "vsphere", ["library", "item"]),
    ("provider", "zstack", ["name", "backup_storage"]),
]


def session_spec(extra=None):
    """Options of the three session modules: the session by id, or by its destination."""
    spec = connection_spec()
    spec.update(
        session_id=dict(type="str"),
        path=dict(type="str"),
        image_id=dict(type="str"),
        library=dict(type="str"),
        item=dict(type="str"),
        timeout=dict(type="int", default=0),
    )
    spec.update(extra or {})
    return spec


#: a session is named by its id or by its destination, not both
SESSION_MUTUALLY_EXCLUSIVE = [("session_id", "path"), ("session_id", "image_id"), ("session_id", "item")]


def parse_size(value, option="chunk_size"):
    """Bytes from ``16777216``, ``'16M'``, ``'16MB'`` or ``'16MiB'`` (binary multiples)."""
    text = str(value).strip()
    try:
        if re.match(r"^\d+$", text):
            return int(text)
        return human_to_bytes(re.sub(r"(?i)ib$", "B", text))
    except (ValueError, TypeError):
        raise ImageStoreError("%s %r is not a size: give bytes (16777216) or a size with a unit (16MiB, 512KiB, 1GiB)"
                              % (option, value))


def validate(params):
    """Check what the argument spec cannot express; raise ImageStoreError naming the option."""
    provider = params["provider"]
    for option, owner in sorted(PROVIDER_OPTIONS.items()):
        value = params.get(option)
        if owner != provider and value not in (None, False):
            own = sorted(o for o, p in PROVIDER_OPTIONS.items() if p == provider)
            raise ImageStoreError("option %s belongs to provider %s; provider %s takes %s" % (
                option, owner, provider, ", ".join(own)))
    endpoint = params.get("endpoint") or ""
    if not re.match(r"^https?://[^/\s?#]+", endpoint):
        raise ImageStoreError("endpoint %r is not a URL: give the base URL with its scheme, e.g. https://cluster:19080" % endpoint)
    if params.get("request_timeout") is not None and params["request_timeout"] <= 0:
        raise ImageStoreError("request_timeout must be a positive number of seconds, got %s" % params["request_timeout"])
    if params.get("retries") is not None and not 0 <= params["retries"] <= 20:
        raise ImageStoreError("retries must be between 0 and 20, got %d" % params["retries"])
    if params.get("timeout") is not None and params["timeout"] < 0:
        raise ImageStoreError("timeout must be 0 (no limit) or a positive number of seconds, got %d" % params["timeout"])
    if "chunk_size" in params:
        size = parse_size(params["chunk_size"])
        if not MIN_CHUNK <= size <= MAX_CHUNK:
            raise ImageStoreError("chunk_size %s is out of range: give between 64KiB and 4GiB (default 16MiB)" % params["chunk_size"])
        params["chunk_size"] = size
    if "parallel" in params and not 1 <= params["parallel"] <= MAX_PARALLEL:
        raise ImageStoreError("parallel must be between 1 and %d, got %d" % (MAX_PARALLEL, params["parallel"]))
    if params.get("client_key") and not params.get("client_cert"):
        raise ImageStoreError("client_key needs client_cert (the certificate that goes with the key)")


def run_module(module, operation):
    """Run ``operation`` (upload, sessions, commit, absent) of the chosen provider and exit."""
    if not HAS_REQUESTS:
        module.fail_json(msg=missing_required_lib("requests"), exception=str(REQUESTS_IMPORT_ERROR))
    started = time.monotonic()
    params = dict(module.params)
    if not params.get("timeout"):
        params["timeout"] = None
    failure = None
    try:
        validate(params)
        provider = PROVIDERS[params["provider"]](params, check_mode=module.check_mode, warn=module.warn)
        try:
            result = getattr(provider, operation)()
        finally:
            try:
                provider.close()
            except ImageStoreError as exc:
                module.warn("logging out of %s failed: %s" % (params["endpoint"], exc.message))
    except ImageStoreError as exc:
        failure = dict(msg=exc.message, **exc.to_result())
    except (SourceChangedError, TransferError) as exc:
        failure = dict(msg=str(exc))
    except (IOError, OSError) as exc:
        failure = dict(msg="local file error: %s" % exc)
    except Exception as exc:  # a bug of ours: a one-line message, and the traceback only with -vvv
        failure = dict(msg="unexpected %s: %s" % (type(exc).__name__, exc), exception=traceback.format_exc())
    if failure is not None:
        # outside the except blocks: fail_json adds the traceback of a handled error at -vvv otherwise
        module.fail_json(**failure)
    if operation == "sessions":
        result = {"changed": False, "sessions": result}
    if operation == "upload":
        result["elapsed"] = round(time.monotonic() - started, 3)
    module.exit_json(**result)
