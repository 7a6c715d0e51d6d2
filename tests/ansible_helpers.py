"""Helpers every test may import: reproducible test files, and running the collection through ansible-playbook.

The collection under test is the working tree: a temporary ANSIBLE_COLLECTIONS_PATH holds
``ansible_collections/imagestore/upload`` as a link to the repository root (see tests/conftest.py).
"""

import hashlib
import json
import os
import subprocess
import sys

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
