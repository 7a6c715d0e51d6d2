"""README's Quickstart: bootstrap.py makes its environment on a PEP 668 Python, with or without ensurepip.

The tests run ``bootstrap.py env`` (make the environment, print tox's version) with the distribution's
``/usr/bin/python3`` when that is an externally managed Python (Debian 12, Ubuntu 24.04), and check
the commands README and .ci/run give. The whole ``bootstrap.py test`` is CI itself.
"""

import os
import re
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SYSTEM_PYTHON = "/usr/bin/python3"


def externally_managed(python):
    """The stdlib folder of ``python`` if it carries PEP 668's EXTERNALLY-MANAGED marker, else None."""
    if not os.path.exists(python):
        return None
    out = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('stdlib'))"],
                         stdout=subprocess.PIPE, text=True).stdout.strip()
    return out if os.path.exists(os.path.join(out, "EXTERNALLY-MANAGED")) else None


needs_pep668 = pytest.mark.skipif(externally_managed(SYSTEM_PYTHON) is None,
                                  reason="%s is not an externally managed (PEP 668) Python" % SYSTEM_PYTHON)


def clean_env(**extra):
    env = dict(os.environ)
    for key in ("PIP_BREAK_SYSTEM_PACKAGES", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME",
                "IMAGESTORE_BOOTSTRAP_WITHOUT_PIP", "PIP_REQUIRE_VIRTUALENV", "PIP_USER"):
        env.pop(key, None)
    env.update(extra)
    return env


@pytest.fixture
def clone(tmp_path):
    """A folder with what ``bootstrap.py env`` needs of a clone: the script and tox.ini."""
    for name in ("bootstrap.py", "tox.ini"):
        shutil.copy(os.path.join(ROOT, name), str(tmp_path / name))
    return tmp_path


def bootstrap(clone, *args, python=SYSTEM_PYTHON, prefix=(), **env):
    return subprocess.run(list(prefix) + [python, str(clone / "bootstrap.py")] + list(args), cwd=str(clone),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=clean_env(**env),
                          timeout=600)


def tox_version(output):
    m = re.search(r"^(4\.\d+\.\d+) from (\S+)", output, re.M)
    assert m, output
    return m.group(1), m.group(2)


def pyvenv_home(clone):
    with open(str(clone / ".venv-bootstrap" / "pyvenv.cfg")) as fh:
        return dict(line.split(" = ", 1) for line in fh.read().splitlines() if " = " in line)["home"]


@needs_pep668
def test_the_system_pip_refuses_so_the_old_quickstart_failed():
    proc = subprocess.run([SYSTEM_PYTHON, "-m", "pip", "install", "--dry-run", "tox"], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, env=clean_env(), timeout=120)
    assert proc.returncode != 0 and "externally-managed-environment" in proc.stdout, proc.stdout


@needs_pep668
def test_bootstrap_env_on_the_system_python(clone):
    first = bootstrap(clone, "env")
    assert first.returncode == 0, first.stdout
    assert "bootstrap: making .venv-bootstrap with %s" % SYSTEM_PYTHON in first.stdout
    version, where = tox_version(first.stdout)
    assert where.startswith(str(clone / ".venv-bootstrap") + os.sep)
    assert pyvenv_home(clone) == os.path.dirname(os.path.realpath(SYSTEM_PYTHON))
    again = bootstrap(clone, "env")                     # made once: the second run reuses it
    assert again.returncode == 0 and "making" not in again.stdout and tox_version(again.stdout)[0] == version


@needs_pep668
def test_bootstrap_env_without_ensurepip_route(clone):
    run = bootstrap(clone, "env", IMAGESTORE_BOOTSTRAP_WITHOUT_PIP="1")
    assert run.returncode == 0, run.stdout
    assert "installing tox into it with %s's pip" % SYSTEM_PYTHON in run.stdout
    tox_version(run.stdout)
    assert not os.path.exists(str(clone / ".venv-bootstrap" / "bin" / "pip"))     # made --without-pip


@needs_pep668
def test_bootstrap_env_with_a_pip_older_than_22_3(clone):
    """Such a pip has no --python: tox goes in with --target into the environment's site-packages."""
    code = ("import sys; sys.path.insert(0, %r); import bootstrap; bootstrap.pip_version = lambda: (22, 0); "
            "sys.exit(bootstrap.main(['env']))" % str(clone))
    run = subprocess.run([SYSTEM_PYTHON, "-c", code], cwd=str(clone), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, env=clean_env(IMAGESTORE_BOOTSTRAP_WITHOUT_PIP="1"), timeout=600)
    assert run.returncode == 0, run.stdout
    tox_version(run.stdout)


def hide_ensurepip_prefix(python):
    """``unshare`` and ``mount --bind`` an empty folder over ensurepip: the python3-venv package, uninstalled for
    one process tree. None where that is not possible (not root, no unshare, no mount namespaces)."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return None
    where = subprocess.run([python, "-c", "import ensurepip, os; print(os.path.dirname(ensurepip.__file__))"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout.strip()
    if not where:
        return ()                                       # no ensurepip at all: nothing to hide
    if subprocess.run(["unshare", "-m", "true"], stderr=subprocess.DEVNULL).returncode != 0:
        return None
    return ["unshare", "-m", "sh", "-c", 'mount --bind "$0" %s && exec "$@"' % where]


@needs_pep668
def test_bootstrap_env_where_python3_venv_is_not_installed(clone, tmp_path_factory):
    prefix = hide_ensurepip_prefix(SYSTEM_PYTHON)
    if prefix is None:
        pytest.skip("cannot hide ensurepip here (needs root and unshare)")
    if prefix:
        prefix = prefix + [str(tmp_path_factory.mktemp("empty"))]
        plain = subprocess.run(prefix + [SYSTEM_PYTHON, "-m", "venv", str(clone / "plain")], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env=clean_env())
        assert plain.returncode != 0 and "ensurepip is not" in plain.stdout, plain.stdout      # what users hit
    run = bootstrap(clone, "env", prefix=prefix)
    assert run.returncode == 0, run.stdout
    assert "installing tox into it with %s's pip" % SYSTEM_PYTHON in run.stdout
    tox_version(run.stdout)


def test_usage_and_arguments():
    run = subprocess.run([sys.executable, os.path.join(ROOT, "bootstrap.py")], stdout=subprocess.PIPE, text=True)
    assert run.returncode == 2 and "python3 bootstrap.py demo" in run.stdout
    sys.path.insert(0, ROOT)
    try:
        import bootstrap
    finally:
        sys.path.remove(ROOT)
    assert bootstrap.tox_args("demo", ["-v"]) == ["-e", "demo", "-v"]
    assert bootstrap.tox_args("test", ["-e", "py3", "--", "-k", "zstack"]) == ["-e", "py3", "--", "-k", "zstack"]


def quickstart_commands():
    with open(os.path.join(ROOT, "README.md")) as fh:
        text = fh.read()
    section = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.strip()]


def test_readme_has_two_commands_and_ci_runs_the_test_one():
    commands = quickstart_commands()
    assert commands == ["python3 bootstrap.py demo", "python3 bootstrap.py test"]
    with open(os.path.join(ROOT, ".ci", "run")) as fh:
        lines = [line.strip() for line in fh if line.strip() and not line.lstrip().startswith("#")]
    assert lines[-1] == commands[1]
    assert "export IMAGESTORE_REQUIRE_VCSIM=1" in lines and any("golang-github-vmware-govmomi-dev" in x for x in lines)
