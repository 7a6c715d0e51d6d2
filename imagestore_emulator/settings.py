"""Emulator settings: defaults, the command line's sizes, and the checks of ``POST /_emulator/config``."""

import re

GiB = 1024 ** 3
_SIZE = re.compile(r"^\s*(\d+)\s*([kmgtp]?)(i?b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3, "t": 1024 ** 4, "p": 1024 ** 5}


def parse_size(text):
    """``65536``, ``64G``, ``64GiB``, ``512m`` -> bytes (binary units); ValueError otherwise."""
    match = _SIZE.match(str(text))
    if not match:
        raise ValueError("not a size: %r (use bytes or a K, M, G, T suffix)" % (text,))
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


class ConfigError(ValueError):
    pass


class Config(dict):
    """Emulator settings, readable by every provider and changeable through POST /_emulator/config."""

    DEFAULTS = {
        "latency_ms": 0,
        "body_timeout_seconds": 60,
        "max_file_size": 64 * GiB,
        "sf_session_expiry_seconds": 1800,
        "sf_commit_seconds": 0,
        "sf_cert_renegotiation": False,
        "sf_cert_renegotiation_bytes": 48 * 1024,
        "vsphere_session_expiry_seconds": 300,
        "vsphere_username": "administrator@vsphere.local",
        "vsphere_password": "Emulator-Passw0rd!",
        "zstack_username": "admin",
        "zstack_password": "Emulator-ZStack-Pw1!",
        "zstack_idle_seconds": 30,
        "zstack_session_seconds": 7200,
    }
    # settings that must be numbers >= 0 (the rest: booleans and text)
    NUMBERS = ("latency_ms", "body_timeout_seconds", "max_file_size", "sf_session_expiry_seconds", "sf_commit_seconds",
               "sf_cert_renegotiation_bytes", "vsphere_session_expiry_seconds", "zstack_idle_seconds",
               "zstack_session_seconds")
    BOOLEANS = ("sf_cert_renegotiation",)

    def __init__(self, **overrides):
        super().__init__(self.DEFAULTS)
        for key, value in overrides.items():
            if value is not None:
                self[key] = value

    @classmethod
    def check(cls, changes):
        """The changes of a POST /_emulator/config, checked; ConfigError names the first bad one."""
        if not isinstance(changes, dict):
            raise ConfigError("the body must be a JSON object of settings")
        unknown = sorted(set(changes) - set(cls.DEFAULTS))
        if unknown:
            raise ConfigError("unknown settings: %s" % ", ".join(unknown))
        checked = {}
        for key, value in changes.items():
            if key in cls.NUMBERS:
                if key == "max_file_size" and isinstance(value, str):
                    try:
                        value = parse_size(value)
                    except ValueError as exc:
                        raise ConfigError("%s: %s" % (key, exc)) from None
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
                    raise ConfigError("%s must be a number >= 0, not %r" % (key, value))
            elif key in cls.BOOLEANS:
                if not isinstance(value, bool):
                    raise ConfigError("%s must be true or false, not %r" % (key, value))
            elif not isinstance(value, str):
                raise ConfigError("%s must be a string" % key)
            checked[key] = value
        return checked
