"""Where the benchmark finds Microsoft's sfctl, or installs it.

sfctl pins old dependencies, so it lives in a virtual environment of its own, the one CI makes (``.venv-sfctl`` at the
root of the checkout, see .ci/run). Looked for in order: ``IMAGESTORE_SFCTL`` (the tests' variable), ``sfctl`` beside
the running interpreter, ``.venv-sfctl/bin/sfctl``; ``install=True`` creates ``.venv-sfctl`` with sfctl from PyPI
when none was found (about 20 s).
"""

import os
import subprocess
import sys

from bench_lib import ROOT

SFCTL_VERSION = "11.2.1"
VENV = os.path.join(ROOT, ".venv-sfctl")


def find_sfctl(install=False, log=print):
    """(path of the sfctl executable or None, how it was found or why there is none)."""
    named = os.environ.get("IMAGESTORE_SFCTL")
    if named:
        if os.access(named, os.X_OK):
            return named, "IMAGESTORE_SFCTL"
        return None, "IMAGESTORE_SFCTL=%s is not an executable" % named
    for candidate, how in ((os.path.join(os.path.dirname(sys.executable), "sfctl"), "beside %s" % sys.executable),
                           (os.path.join(VENV, "bin", "sfctl"), VENV)):
        if os.access(candidate, os.X_OK):
            return candidate, how
    if not install:
        return None, ("sfctl not found (set IMAGESTORE_SFCTL, or run with --sfctl install, as tox -e bench does, to "
                      "install it into %s)" % VENV)
    log("installing sfctl==%s into %s" % (SFCTL_VERSION, VENV))
    try:
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
        subprocess.run([os.path.join(VENV, "bin", "python"), "-m", "pip", "install", "-q", "sfctl==%s" % SFCTL_VERSION],
                       check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        return None, "installing sfctl failed: %s" % exc
    return os.path.join(VENV, "bin", "sfctl"), "installed into %s" % VENV


def sfctl_env(home):
    """Environment for sfctl with a private HOME and configuration, telemetry off."""
    os.makedirs(os.path.join(home, ".sfctl"), exist_ok=True)
    with open(os.path.join(home, ".sfctl", "config"), "w") as fh:
        fh.write("[servicefabric]\nuse_telemetry = false\n")
    return dict(os.environ, HOME=home, SFCTL_CONFIG_DIR=os.path.join(home, ".sfctl"), SFCTL_SERVICEFABRIC_USE_TELEMETRY="false")
