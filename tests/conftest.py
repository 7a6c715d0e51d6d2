"""Shared test helpers: run the collection's modules through ansible-playbook, make test images.

The collection under test is the working tree: a temporary ANSIBLE_COLLECTIONS_PATH holds
``ansible_collections/imagestore/upload`` as a link to the repository root, so Ansible loads these
plugins and not an older installed copy.
"""

import hashlib
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_file(path, size, seed=0):
    """Write ``size`` bytes of reproducible pseudo-random data; return the SHA-256."""
    h = hashlib.sha256()
    block = hashlib.sha512(str(seed).encode()).digest() * 16384  # 1 MiB of seed-dependent bytes
    counter = 0
    with open(path, "wb") as fh:
        left = size
        while left > 0:
            # vary each MiB so that no two chunks are equal (misplaced chunks would go unnoticed otherwise)
            prefix = counter.to_bytes(8, "big")
            piece = (prefix + block[8:])[:min(left, len(block))]
            fh.write(piece)
            h.update(piece)
            left -= len(piece)
            counter += 1
    return h.hexdigest()


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1024 * 1024), b""):
            h.update(block)
    return h.hexdigest()


class AnsibleRun:
    """Results of one ansible-playbook run: ``results`` (one per task), ``output``, ``rc``."""

    def __init__(self, results, output, rc):
        self.results = results
        self.output = output
        self.rc = rc

    def __getitem__(self, i):
        return self.results[i]


class AnsibleRunner:
    """Runs tasks of the collection through ansible-playbook on localhost, in a subprocess."""

    def __init__(self, workdir, collections_path, env=None):
        self.workdir = str(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.collections_path = collections_path
        self.extra_env = dict(env or {})
        self.count = 0

    def env(self):
        env = dict(os.environ)
        env.update({
            "ANSIBLE_COLLECTIONS_PATH": self.collections_path,
            "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "false",
            "ANSIBLE_LOCALHOST_WARNING": "false",
            "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_RETRY_FILES_ENABLED": "false",
            "ANSIBLE_HOME": os.path.join(self.workdir, "ansible-home"),
            "ANSIBLE_LOCAL_TEMP": os.path.join(self.workdir, "ansible-tmp"),
            "IMAGESTORE_DIGEST_CACHE": os.path.join(self.workdir, "digests.json"),
        })
        env.update(self.extra_env)
        return env

    def run(self, tasks, check=False, diff=False, verbosity=0, extra_args=(), env=None, play_vars=None):
        """Run ``tasks`` (list of (module, args) or dicts); return AnsibleRun.

        Each module task gets ``register`` and ``ignore_errors``; its registered result is written
        to a JSON file that is read back here, so failures are results too.
        """
        self.count += 1
        out = os.path.join(self.workdir, "results-%d" % self.count)
        os.makedirs(out, exist_ok=True)
        play_tasks = []
        for i, task in enumerate(tasks):
            if isinstance(task, tuple):
                module, args = task
                task = {"name": "task %d" % i, module: args}
            task = dict(task)
            task.setdefault("name", "task %d" % i)
            task["register"] = "r%d" % i
            task["ignore_errors"] = True
            play_tasks.append(task)
            play_tasks.append({"name": "save %d" % i, "ansible.builtin.copy": {
                "content": "{{ r%d | to_json }}" % i, "dest": os.path.join(out, "%d.json" % i)},
                "check_mode": False, "diff": False})
        play = [{"hosts": "localhost", "gather_facts": False, "connection": "local",
                 "vars": dict({"ansible_python_interpreter": sys.executable}, **(play_vars or {})),
                 "tasks": play_tasks}]
        playbook = os.path.join(out, "play.yml")
        with open(playbook, "w") as fh:
            json.dump(play, fh, indent=1)
        cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,", playbook]
        if check:
            cmd.append("--check")
        if diff:
            cmd.append("--diff")
        if verbosity:
            cmd.append("-" + "v" * verbosity)
        cmd += list(extra_args)
        proc_env = self.env()
        proc_env.update(env or {})
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=proc_env, cwd=self.workdir)
        output = proc.stdout.decode("utf-8", "replace")
        results = []
        for i in range(len(tasks)):
            p = os.path.join(out, "%d.json" % i)
            if not os.path.exists(p):
                raise AssertionError("task %d left no result; ansible-playbook said:\n%s" % (i, output[-6000:]))
            with open(p) as fh:
                results.append(json.load(fh))
        return AnsibleRun(results, output, proc.returncode)

    def module(self, module, args, **kwargs):
        """Run one module; return (result, AnsibleRun)."""
        if "." not in module:
            module = "imagestore.upload." + module
        run = self.run([(module, args)], **kwargs)
        return run.results[0], run


@pytest.fixture(scope="session", autouse=True)
def collections_path(tmp_path_factory):
    """Every Ansible run of the test session (ours and the examples') loads the working tree."""
    base = tmp_path_factory.mktemp("collections")
    ns = base / "ansible_collections" / "imagestore"
    ns.mkdir(parents=True)
    os.symlink(ROOT, str(ns / "upload"))
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


def kill_mid_upload(ansible, emu, module_args, counter, threshold, poll=0.05):
    """Run image_upload with ``module_args`` in the background, SIGKILL the emulator ``emu`` once its byte
    counter ``counter`` (``(provider, stat name)``) reaches ``threshold``, and return the run's (result, run)."""
    provider, stat = counter
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(ansible.module, "image_upload", module_args)
        deadline = time.monotonic() + 60
        while emu.stats(provider)[stat] < threshold:
            assert time.monotonic() < deadline and not running.done(), "the upload did not get going"
            time.sleep(poll)
        emu.kill()
        return running.result(timeout=120)


def assert_no_traceback(text):
    assert "Traceback (most recent call last)" not in text, text[-4000:]
