"""Run this project's tox environments on a fresh clone, with any Python 3.9+ and its pip.

    python3 bootstrap.py demo [ARGS]   tox -e demo [ARGS]: the emulator and the demo playbook
    python3 bootstrap.py test [ARGS]   tox [ARGS]: every test environment (py3, sanity, docs);
                                       a subset: python3 bootstrap.py test -e py3 -- -k zstack
    python3 bootstrap.py tox ARGS      tox ARGS, any tox command (-e bench, -e docs, -l, ...)
    python3 bootstrap.py env           only make the environment below, and print tox's version

Nothing is installed into the Python that runs this script: it makes a virtual environment,
``.venv-bootstrap`` beside this file, installs tox there and runs tox from it. So it works on a
Python whose pip refuses to install (PEP 668 "externally-managed-environment": Debian 12,
Ubuntu 24.04) as on one from pyenv or python.org. Where ``python3 -m venv`` cannot install pip
(Debian and Ubuntu without the python3-venv package have no ensurepip), the environment is made
with ``venv --without-pip`` and tox is installed into it by this Python's own pip (``--python``,
or ``--target`` for a pip older than 22.3). The environment is made again when the Python that
runs this script changes. Standard library only.
"""

import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
VENV = os.path.join(HERE, ".venv-bootstrap")
TOX = "tox>=4,<5"
#: set to 1 to take the route of a Python without ensurepip even where it has one (tests use it)
WITHOUT_PIP_ENV = "IMAGESTORE_BOOTSTRAP_WITHOUT_PIP"
COMMANDS = ("demo", "test", "tox", "env")


class BootstrapError(Exception):
    pass


def say(text):
    print("bootstrap: %s" % text, flush=True)


def run(cmd, quiet=False):
    """Run ``cmd``; with ``quiet``, keep its output and return it with the exit code."""
    if quiet:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
        return proc.returncode, proc.stdout.decode("utf-8", "replace")
    return subprocess.call(cmd), ""


def venv_python(venv):
    if os.name == "nt":
        return os.path.join(venv, "Scripts", "python.exe")
    return os.path.join(venv, "bin", "python")


def identity():
    """What the environment is made from: this interpreter and the tox requirement."""
    return {"python": os.path.realpath(sys.executable), "version": sys.version.split()[0], "tox": TOX}


def ready(venv):
    stamp = os.path.join(venv, "bootstrap.json")
    try:
        with open(stamp) as fh:
            if json.load(fh) != identity():
                return False
    except (OSError, ValueError):
        return False
    return run([venv_python(venv), "-c", "import tox"], quiet=True)[0] == 0


def pip_version():
    code, out = run([sys.executable, "-m", "pip", "--version"], quiet=True)
    if code != 0:
        raise BootstrapError(
            "%s has neither ensurepip nor pip. Install one of them (Debian/Ubuntu: apt install python3-venv, "
            "or python3-pip) and run this again." % sys.executable)
    parts = out.split()[1].split(".")
    return tuple(int(p) for p in parts[:2] if p.isdigit())


def make_with_pip(venv):
    """``python -m venv`` with pip (needs ensurepip); False when that is not possible here."""
    if os.environ.get(WITHOUT_PIP_ENV) == "1":
        return False
    code, out = run([sys.executable, "-m", "venv", venv], quiet=True)
    if code == 0 and os.path.exists(venv_python(venv)):
        code, out = run([venv_python(venv), "-m", "pip", "--version"], quiet=True)
        if code == 0:
            return True
    shutil.rmtree(venv, ignore_errors=True)
    return False


def make_without_pip(venv):
    """``venv --without-pip``, then tox put in by this Python's own pip, which needs no ensurepip."""
    code, out = run([sys.executable, "-m", "venv", "--without-pip", venv], quiet=True)
    if code != 0:
        raise BootstrapError("could not make a virtual environment with %s -m venv --without-pip:\n%s"
                             % (sys.executable, out.strip()))
    base = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    if pip_version() >= (22, 3):
        cmd = base + ["--python", venv_python(venv), "install", TOX]
    else:
        code, site = run([venv_python(venv), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], quiet=True)
        cmd = base + ["install", "--target", site.strip(), TOX]
    say("installing tox into it with %s's pip" % sys.executable)
    code, out = run(cmd, quiet=True)
    if code != 0:
        raise BootstrapError("installing %s failed:\n%s" % (TOX, out.strip()))


def prepare(venv=VENV):
    """Make ``venv`` with tox in it unless it is there already for this Python; return its python."""
    if ready(venv):
        return venv_python(venv)
    shutil.rmtree(venv, ignore_errors=True)
    say("making %s with %s (Python %s)" % (os.path.relpath(venv), sys.executable, sys.version.split()[0]))
    if make_with_pip(venv):
        say("installing tox into it")
        code, out = run([venv_python(venv), "-m", "pip", "--disable-pip-version-check", "-q", "install", TOX],
                        quiet=True)
        if code != 0:
            raise BootstrapError("installing %s failed:\n%s" % (TOX, out.strip()))
    else:
        make_without_pip(venv)
    with open(os.path.join(venv, "bootstrap.json"), "w") as fh:
        json.dump(identity(), fh)
    return venv_python(venv)


def tox_args(command, rest):
    if command == "demo":
        return ["-e", "demo"] + rest
    return rest


def main(argv):
    if not argv or argv[0] not in COMMANDS:
        print(__doc__.strip())
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    command, rest = argv[0], argv[1:]
    try:
        python = prepare()
    except BootstrapError as exc:
        print("bootstrap: %s" % exc, file=sys.stderr)
        return 1
    os.chdir(HERE)
    if command == "env":
        return run([python, "-m", "tox", "--version"])[0]
    return run([python, "-m", "tox"] + tox_args(command, rest))[0]


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
