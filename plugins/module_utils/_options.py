# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Module options composed per provider, and the checks the argument spec cannot express (private).

Shared option groups are declared here once (connection, transfer, session naming), each documented
by one doc fragment (``connection``, ``transfer``, ``session``); every protocol declares its own
options (``Protocol.options``, ``selectors``, ``absent_options``), documented by its own fragment.
The modules' argument specs are the union; ``validate()`` then refuses an option that belongs to
another provider before it asks for the ones this provider requires, so a user who mixed providers
is told which options are wrong, not only which are missing.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

try:
    from urllib.parse import urlsplit
except ImportError:  # pragma: no cover - Python 2 is not supported, but sanity imports on it
    from urlparse import urlsplit

from ansible_collections.imagestore.upload.plugins.module_utils._errors import BadInput
from ansible_collections.imagestore.upload.plugins.module_utils._source import parse_checksum

MiB = 1024 * 1024
DEFAULT_CHUNK_SIZE = 16 * MiB
MIN_CHUNK = 64 * 1024
MAX_CHUNK = 4096 * MiB
MAX_PARALLEL = 64
UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": MiB, "mb": MiB, "mib": MiB,
         "g": 1024 * MiB, "gb": 1024 * MiB, "gib": 1024 * MiB, "t": 1024 * 1024 * MiB, "tb": 1024 * 1024 * MiB,
         "tib": 1024 * 1024 * MiB}


def env(name):
    """An env_fallback entry, without importing Ansible here (the CLI uses these specs too)."""
    return ("env", [name])


def connection_options():
    """Options every module takes: which store, where, how to authenticate, how patient to be."""
    return dict(
        provider=dict(type="str", required=True, fallback=env("IMAGESTORE_PROVIDER")),
        endpoint=dict(type="str", required=True, fallback=env("IMAGESTORE_ENDPOINT")),
        username=dict(type="str", fallback=env("IMAGESTORE_USERNAME")),
        password=dict(type="str", no_log=True, fallback=env("IMAGESTORE_PASSWORD")),
        client_cert=dict(type="path", fallback=env("IMAGESTORE_CLIENT_CERT")),
        client_key=dict(type="path", no_log=False, fallback=env("IMAGESTORE_CLIENT_KEY")),
        validate_certs=dict(type="bool", default=True, fallback=env("IMAGESTORE_VALIDATE_CERTS")),
        ca_path=dict(type="path", fallback=env("IMAGESTORE_CA_PATH")),
        use_proxy=dict(type="bool", default=True),
        request_timeout=dict(type="float", default=60.0),
        retries=dict(type="int"),
        timeout=dict(type="int", default=0),
    )


def transfer_options():
    """Options of image_upload that every provider shares."""
    return dict(
        state=dict(type="str", default="present", choices=["present", "absent"]),
        src=dict(type="path"),
        checksum=dict(type="str"),
        chunk_size=dict(type="str", default=str(DEFAULT_CHUNK_SIZE)),
        parallel=dict(type="int", default=4),
        force=dict(type="bool", default=False),
        digest_cache=dict(type="bool", default=True),
        progress_interval=dict(type="int", default=30),
    )


def _merge(spec, extra, provider, owners):
    for option, entry in extra.items():
        if option in spec and spec[option] != entry:
            raise ValueError("option %s of provider %s differs from another declaration: %r vs %r" % (option, provider, entry, spec[option]))
        spec[option] = dict(entry)
        owners.setdefault(option, set()).add(provider)


def upload_spec(registry):
    """(argument spec of image_upload, option -> providers that take it)."""
    spec = connection_options()
    spec.update(transfer_options())
    spec["provider"]["choices"] = sorted(registry)
    owners = {}
    for name, cls in sorted(registry.items()):
        _merge(spec, cls.options, name, owners)
    return spec, owners


def session_spec(registry, absent=False):
    """(argument spec of the session modules, option -> providers that take it)."""
    spec = connection_options()
    spec["provider"]["choices"] = sorted(registry)
    spec["session_id"] = dict(type="str")
    owners = {}
    for name, cls in sorted(registry.items()):
        _merge(spec, cls.selectors, name, owners)
        if absent:
            _merge(spec, cls.absent_options, name, owners)
    return spec, owners


def parse_size(value, option="chunk_size"):
    """Bytes from ``16777216``, ``'16M'``, ``'16MB'`` or ``'16MiB'`` (binary multiples)."""
    match = re.match(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$", str(value))
    unit = match.group(2).lower() if match else None
    if not match or unit not in UNITS:
        raise BadInput("%s %r is not a size: give bytes (16777216) or a size with a unit (16MiB, 512KiB, 1GiB)" % (option, value))
    return int(float(match.group(1)) * UNITS[unit])


def check_endpoint(endpoint):
    """The endpoint must be a base URL with scheme and host, and carry no credentials (they would be printed)."""
    text = endpoint or ""
    parts = urlsplit(text) if re.match(r"^https?://", text) else None
    if parts is None or not parts.netloc or parts.netloc.startswith("@"):
        raise BadInput("endpoint %r is not a URL: give the base URL with its scheme, e.g. https://cluster.example.com:19080"
                       % redact_endpoint(text))
    if "@" in parts.netloc:
        raise BadInput("endpoint %s contains a user name or password; give them as the username and password options (or "
                       "IMAGESTORE_USERNAME and IMAGESTORE_PASSWORD), never inside the URL" % redact_endpoint(text))
    try:
        parts.port
    except ValueError:
        raise BadInput("endpoint %r has an invalid port: give a number from 1 to 65535" % text)


def redact_endpoint(text):
    """The endpoint with any user info replaced by '***' (safe to print)."""
    return re.sub(r"^(https?://)[^/@]*@", r"\1***@", str(text or ""))


def endpoint_secrets(text):
    """The user info of an endpoint and its parts, to hide from every output."""
    match = re.match(r"^https?://([^/@]*)@", str(text or ""))
    if not match:
        return []
    userinfo = match.group(1)
    return [s for s in set([userinfo] + userinfo.split(":", 1)) if s]


def _default(registry, option):
    for cls in registry.values():
        for group in (cls.options, cls.selectors, cls.absent_options):
            if option in group:
                return group[option].get("default")
    return None


def validate(params, registry, owners, operation):
    """Check what the argument spec cannot express; raise BadInput naming the option."""
    provider = params["provider"]
    cls = registry[provider]
    foreign = sorted(o for o, who in owners.items() if provider not in who and params.get(o) not in (None, "", _default(registry, o)))
    if foreign:
        mine = sorted(o for o, who in owners.items() if provider in who)
        raise BadInput("%s %s: %s; provider %s takes %s" % (
            "option" if len(foreign) == 1 else "options", ", ".join(foreign),
            "; ".join("%s belongs to provider %s" % (o, " and ".join(sorted(owners[o]))) for o in foreign),
            provider, ", ".join(mine) or "none of them"))
    check_endpoint(params.get("endpoint"))
    if params.get("request_timeout") is not None and params["request_timeout"] <= 0:
        raise BadInput("request_timeout must be a positive number of seconds, got %s" % params["request_timeout"])
    if params.get("retries") is not None and not 0 <= params["retries"] <= 20:
        raise BadInput("retries must be between 0 and 20, got %d" % params["retries"])
    if params.get("timeout") is not None and params["timeout"] < 0:
        raise BadInput("timeout must be 0 (no limit) or a positive number of seconds, got %d" % params["timeout"])
    if params.get("client_key") and not params.get("client_cert"):
        raise BadInput("client_key needs client_cert (the certificate that goes with the key)")
    if operation == "upload":
        _validate_upload(params, cls, provider)


def _validate_upload(params, cls, provider):
    state = params.get("state") or "present"
    required = list(cls.required if state == "present" or cls.required_absent is None else cls.required_absent)
    if state == "present":
        required.insert(0, "src")
    missing = [o for o in required if params.get(o) in (None, "")]
    if missing:
        raise BadInput("provider %s %s %s: %s %s missing" % (
            provider, "removes content with" if state == "absent" else "uploads with", ", ".join(required),
            ", ".join(missing), "is" if len(missing) == 1 else "are"))
    if state == "absent":
        return
    size = parse_size(params.get("chunk_size") or DEFAULT_CHUNK_SIZE)
    if not MIN_CHUNK <= size <= MAX_CHUNK:
        raise BadInput("chunk_size %s is out of range: give between 64KiB and 4GiB (default 16MiB)" % params["chunk_size"])
    params["chunk_size"] = size
    if not 1 <= (4 if params.get("parallel") is None else params["parallel"]) <= MAX_PARALLEL:
        raise BadInput("parallel must be between 1 and %d, got %d" % (MAX_PARALLEL, params["parallel"]))
    if params.get("checksum"):
        parse_checksum(params["checksum"])
    if (params.get("progress_interval") or 0) < 0:
        raise BadInput("progress_interval must be 0 (no progress lines) or a positive number of seconds, got %d"
                       % params["progress_interval"])
