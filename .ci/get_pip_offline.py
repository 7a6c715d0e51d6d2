"""Stand-in for ansible-test's pip bootstrap script, for machines that reach PyPI but not ansible's CI file host.

ansible-test runs ``get-pip-<version>.py`` (cached as ~/.ansible/test/cache/get_pip_<version>.py) with
pip-install arguments to put pip into each sanity virtual environment. This does the same with the
standard library's ensurepip, then installs the requested packages from the configured index.
"""
import ensurepip
import os
import subprocess
import sys

ensurepip.bootstrap(upgrade=True)
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
# ansible-test runs this with a reduced environment: give pip the machine's CA bundle explicitly.
bundle = os.environ.get("IMAGESTORE_CI_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
if os.path.exists(bundle):
    args = ["--cert", bundle] + args
subprocess.check_call([sys.executable, "-m", "pip", "install"] + args)
