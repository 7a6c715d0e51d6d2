"""Shared fixtures: the collection under test, ansible-playbook runs, emulators, vcsim, test images.

The collection under test is the working tree: a temporary ANSIBLE_COLLECTIONS_PATH holds
``ansible_collections/imagestore/upload`` as a link to the repository root, so Ansible loads these
plugins and not an older installed copy. Helpers to import live in ansible_helpers.py.
"""

import os
import subprocess

import pytest

from ansible_helpers import AnsibleRun, AnsibleRunner, make_file, sha256_file  # noqa: F401  (re-exported for the tests)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session", autouse=True)
def collections_path(tmp_path_factory):
    """Every Ansible run of the test session (ours and the examples') loads the working tree."""
    base = tmp_path_factory.mktemp("collections")
    ns = base / "ansible_collections" / "imagestore"
    ns.mkdir(parents=True)
    os.symlink(ROOT, str(ns / "upload"))
    toy = base / "ansible_collections" / "imagestore_test"       # the contract suite's test-only provider
    toy.mkdir()
    os.symlink(os.path.join(ROOT, "tests", "contract", "toystore", "collection", "ansible_collections", "imagestore_test",
                            "toystore"), str(toy / "toystore"))
    saved = {k: os.environ.get(k) for k in ("ANSIBLE_COLLECTIONS_PATH", "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH")}
    os.environ["ANSIBLE_COLLECTIONS_PATH"] = str(base)
    os.environ["ANSIBLE_COLLECTIONS_SCAN_SYS_PATH"] = "false"
    yield str(base)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def ansible(tmp_path, collections_path):
    """Runs the collection's modules through ansible-playbook (see AnsibleRunner)."""
    return AnsibleRunner(tmp_path, collections_path)


@pytest.fixture(scope="session")
def vcsim(request):
    """govmomi's vcsim, built from Debian's sources (tests/vcsim/) and started once per session: its start line
    (url, datastore_id, username, password, ...). Skipped when Go or the govmomi sources are missing, unless
    IMAGESTORE_REQUIRE_VCSIM=1 turns the skip into a failure; IMAGESTORE_VCSIM_DIR caches the binary,
    IMAGESTORE_VCSIM_GOPATH points at other sources."""
    import importlib.util
    import tempfile
    spec = importlib.util.spec_from_file_location("imagestore_vcsim_build", os.path.join(ROOT, "tests", "vcsim", "build.py"))
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    gopath = os.environ.get("IMAGESTORE_VCSIM_GOPATH") or build.DEFAULT_GOPATH
    reason = build.unavailable_reason(gopath)
    if reason is not None:
        if os.environ.get("IMAGESTORE_REQUIRE_VCSIM") == "1":
            pytest.fail("IMAGESTORE_REQUIRE_VCSIM=1 but vcsim cannot be built: " + reason)
        pytest.skip("vcsim cannot be built: " + reason)
    cache = getattr(request.config, "cache", None)       # absent with -p no:cacheprovider
    out_dir = os.environ.get("IMAGESTORE_VCSIM_DIR") or (str(cache.mkdir("vcsim")) if cache else
                                                         os.path.join(tempfile.gettempdir(), "imagestore-vcsim"))
    binary = build.build_vcsim(out_dir, gopath)
    process, info = build.start_vcsim(binary, log_path=os.path.join(out_dir, "vcsim.log"))
    try:
        yield info
    finally:
        build.stop_vcsim(process)


@pytest.fixture
def private_emulator(tmp_path):
    """Factory: ``private_emulator("--latency-ms", "40")`` starts an emulator process of the test's own
    (to kill, restart or slow down), on its own data dir; every one is stopped after the test."""
    from imagestore_emulator.process import EmulatorProcess
    started = []

    def start(*extra_args):
        data = tmp_path / ("emulator-%d" % len(started))
        data.mkdir()
        started.append(EmulatorProcess(data, extra_args=list(extra_args)).start())
        return started[-1]
    yield start
    for emu in started:
        emu.stop()


@pytest.fixture
def image(tmp_path):
    """Factory: ``image(size, seed=0, name="disk.img") -> (path, sha256)``."""
    def make(size, seed=0, name="disk.img"):
        path = str(tmp_path / name)
        return path, make_file(path, size, seed)
    return make


def assert_no_traceback(text):
    assert "Traceback (most recent call last)" not in text, text[-4000:]


@pytest.fixture(scope="session")
def sfctl():
    """Microsoft's sfctl: the path of its executable, from IMAGESTORE_SFCTL (it pins old dependencies, so it lives in a
    virtual environment of its own; see docs/emulator.md). Skipped when unset, unless IMAGESTORE_REQUIRE_SFCTL=1 (CI)."""
    path = os.environ.get("IMAGESTORE_SFCTL")
    if not path:
        if os.environ.get("IMAGESTORE_REQUIRE_SFCTL") == "1":
            pytest.fail("IMAGESTORE_REQUIRE_SFCTL=1 but IMAGESTORE_SFCTL (the path of the sfctl executable) is not set")
        pytest.skip("IMAGESTORE_SFCTL is not set: install sfctl in a venv of its own and point it at its sfctl "
                    "(see docs/emulator.md)")
    if not os.access(path, os.X_OK):
        pytest.fail("IMAGESTORE_SFCTL=%s is not an executable" % path)
    return path


@pytest.fixture
def sfctl_run(sfctl, tmp_path):
    """Run sfctl with a private HOME and configuration, telemetry off; return the CompletedProcess."""
    home = tmp_path / "home"
    (home / ".sfctl").mkdir(parents=True)
    (home / ".sfctl" / "config").write_text("[servicefabric]\nuse_telemetry = false\n")
    env = dict(os.environ, HOME=str(home), SFCTL_CONFIG_DIR=str(home / ".sfctl"), SFCTL_SERVICEFABRIC_USE_TELEMETRY="false")

    def call(*args, timeout=180):
        done = subprocess.run([sfctl] + list(args), env=env, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, cwd=str(tmp_path))
        assert done.returncode == 0, "sfctl %s failed (%d):\n%s\n%s" % (" ".join(args), done.returncode, done.stdout,
                                                                        done.stderr)
        return done
    return call
