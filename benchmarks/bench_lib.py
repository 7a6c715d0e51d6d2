"""What every part of the benchmark shares: test files, scratch memory, CPU accounting of child processes, the
module run directly (as AnsiballZ runs it) and through ansible-playbook, curl's plain PUT, the digest floor."""

import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from urllib.parse import quote

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MiB = 1024 * 1024
GiB = 1024 * MiB
TICK = os.sysconf("SC_CLK_TCK")
READ_BLOCK = 4 * MiB

# The digests each provider's protocol needs (what the client cannot avoid computing on a first run).
DIGESTS = {
    "servicefabric": ("sha256",),                  # the content identity (session id, record, result)
    "vsphere": ("sha1", "sha256"),                 # the SHA-1 the file add declares, and the identity
    "vsphere+checksum": ("sha256",),               # checksum: sha256:... given: the identity is known, nothing to declare
    "zstack": ("md5", "sha256"),                   # the md5Sum the server reports, and the identity
}


def warm_memory(folder, size):
    """Write and delete ``size`` bytes in ``folder`` when it is a tmpfs (no-op elsewhere).

    On a virtual machine the first touch of a guest page costs a fault in the host (measured here:
    2.7 s/GiB for the first write to /dev/shm, 0.6 s/GiB once the pages were touched), and freed pages
    drift back to the host. Warming right before each timed step makes every figure pay the same (low)
    price, so that upload and plain PUT are compared on equal terms.
    """
    if folder is None or not folder.startswith("/dev/shm"):
        return
    path = os.path.join(folder, "warm.tmp")
    block = bytes(16 * MiB)
    with open(path, "wb") as fh:
        for _ in range(max(1, size // len(block))):
            fh.write(block)
    os.unlink(path)


def make_file(path, size):
    """``size`` bytes that no two 4 MiB blocks share (so nothing can be deduplicated or compressed)."""
    block = os.urandom(4 * MiB)
    with open(path, "wb") as fh:
        left = size
        i = 0
        while left > 0:
            piece = (i.to_bytes(8, "big") + block[8:])[:min(left, len(block))]
            fh.write(piece)
            left -= len(piece)
            i += 1


def scratch_dir(need):
    """/dev/shm when it can hold ``need`` bytes and some room besides, else the default temporary folder."""
    try:
        st = os.statvfs("/dev/shm")
        if st.f_bavail * st.f_frsize > need + 512 * MiB:
            return "/dev/shm"
    except OSError:
        pass
    return None


def proc_cpu(pid):
    """user + sys CPU seconds of a running process (all its threads), from /proc."""
    try:
        with open("/proc/%d/stat" % pid) as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


class ChildCPU:
    """CPU seconds (user, sys) of the child processes waited for inside the block, with their descendants,
    and the wall time: ``with ChildCPU() as c: subprocess.run(...)``; then ``c.cpu``, ``c.user``, ``c.sys``, ``c.wall``."""

    def __enter__(self):
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        self._u, self._s = r.ru_utime, r.ru_stime
        self._t = time.monotonic()
        return self

    def __exit__(self, *exc):
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.wall = time.monotonic() - self._t
        self.user, self.sys = r.ru_utime - self._u, r.ru_stime - self._s
        self.cpu = self.user + self.sys
        return False


class MachineCPU:
    """How busy the machine's cores were inside the block, every process counted (from /proc/stat): ``busy`` in 0..1."""

    @staticmethod
    def _read():
        try:
            with open("/proc/stat") as fh:
                fields = [int(x) for x in fh.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)          # idle + iowait
        return sum(fields[:8]) - idle, sum(fields[:8])

    def __enter__(self):
        self._start = self._read()
        return self

    def __exit__(self, *exc):
        end = self._read()
        self.busy = None
        if self._start and end and end[1] > self._start[1]:
            self.busy = (end[0] - self._start[0]) / float(end[1] - self._start[1])
        return False


class EmulatorCPU:
    """CPU seconds the emulator processes spent inside the block (from /proc)."""

    def __init__(self, *emulators):
        self.pids = [e.proc.pid for e in emulators]

    def __enter__(self):
        self._c = sum(proc_cpu(p) for p in self.pids)
        return self

    def __exit__(self, *exc):
        self.cpu = sum(proc_cpu(p) for p in self.pids) - self._c
        return False


class Target:
    def __init__(self, provider, emulator):
        self.provider = provider
        self.endpoint = emulator.url
        creds = emulator.credentials.get(provider, {})
        self.options = {"username": creds.get("username"), "password": creds.get("password"), "validate_certs": True}

    def module_args(self, **extra):
        args = {"provider": self.provider, "endpoint": self.endpoint}
        args.update((k, v) for k, v in self.options.items() if v is not None)
        args.update((k, v) for k, v in extra.items() if v is not None)
        return args


def destination(provider, name):
    """Module options naming a fresh destination ``name`` for each provider."""
    if provider == "servicefabric":
        return {"path": "bench/%s" % name}
    if provider == "vsphere":
        return {"library": "images", "item": name.replace("/", "-"), "file_name": "disk.img"}
    if provider == "zstack":
        return {"name": name.replace("/", "-"), "backup_storage": "bs", "format": "raw"}
    raise ValueError(provider)


def module_invocation(args, workdir, cache, module="image_upload"):
    """argv and environment running ``module`` with ``args`` as AnsiballZ runs it, without Ansible."""
    argfile = os.path.join(workdir, "args-%d.json" % os.getpid())
    with open(argfile, "w") as fh:
        json.dump({"ANSIBLE_MODULE_ARGS": args}, fh)
    env = dict(os.environ, IMAGESTORE_DIGEST_CACHE=cache)
    if os.environ.get("BENCH_COLLECTIONS_PATH"):
        env["PYTHONPATH"] = os.pathsep.join(p for p in (os.environ["BENCH_COLLECTIONS_PATH"], env.get("PYTHONPATH")) if p)
    return [sys.executable, "-m", "ansible_collections.imagestore.upload.plugins.modules." + module, argfile], env


def run_module(args, workdir, cache, emulators=()):
    """Run image_upload directly; (result, ChildCPU, emulator CPU seconds). Raises RuntimeError when it failed."""
    argv, env = module_invocation(args, workdir, cache)
    with EmulatorCPU(*emulators) as e, ChildCPU() as c:
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        result = json.loads(proc.stdout.decode())
    except ValueError:
        raise RuntimeError("image_upload said nothing usable (exit %d): %s" % (proc.returncode, proc.stderr.decode()[-2000:]))
    if result.get("failed"):
        raise RuntimeError("image_upload failed: %s" % result.get("msg"))
    return result, c, e.cpu


def peak_rss_mib(args, workdir, cache):
    """Run the module directly (AnsiballZ's payload, without the wrapper) and return its peak RSS."""
    argv, env = module_invocation(args, workdir, cache)
    wrapper = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE); "
               "sys.stderr.write(p.stdout.decode()[-400:] if p.returncode else ''); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", wrapper] + argv, stdout=subprocess.PIPE, env=env, check=True)
    return int(out.stdout.decode().split()[-1]) / 1024.0


class Ansible:
    """ansible-playbook with the bench_timing callback: task seconds, the module's result, the tree's CPU."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.n = 0

    def env(self, cache, **extra):
        env = dict(os.environ)
        env.update(ANSIBLE_CALLBACK_PLUGINS=os.path.join(HERE, "callback_plugins"), ANSIBLE_CALLBACKS_ENABLED="bench_timing",
                   ANSIBLE_STDOUT_CALLBACK="minimal", ANSIBLE_LOCALHOST_WARNING="false",
                   ANSIBLE_INVENTORY_UNPARSED_WARNING="false", IMAGESTORE_DIGEST_CACHE=cache,
                   ANSIBLE_LOCAL_TEMP=os.path.join(self.workdir, "ansible-tmp"))
        if os.environ.get("BENCH_COLLECTIONS_PATH"):
            env["ANSIBLE_COLLECTIONS_PATH"] = os.environ["BENCH_COLLECTIONS_PATH"]
        env.update(extra)
        return env

    def playbook(self, play, cache, inventory="localhost,", **env):
        """Run ``play``; (ChildCPU of the whole tree, [timing records]). Raises RuntimeError on a failed task."""
        self.n += 1
        out = os.path.join(self.workdir, "timing-%d.jsonl" % self.n)
        path = os.path.join(self.workdir, "play-%d.yml" % self.n)
        with open(path, "w") as fh:
            json.dump(play, fh)
        env = self.env(cache, BENCH_TIMING_OUT=out, **env)
        with ChildCPU() as c:
            proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", inventory, path],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        records = []
        if os.path.exists(out):
            with open(out) as fh:
                records = [json.loads(line) for line in fh]
            os.unlink(out)
        failed = [r for r in records if r.get("failed") or r["result"].get("failed")]
        if failed or not records:
            msg = failed[0]["result"].get("msg") if failed else "no task ran"
            raise RuntimeError("image_upload failed: %s\n%s" % (msg, proc.stdout.decode()[-3000:]))
        return c, records

    def run(self, args, cache):
        """One image_upload task on localhost: (task seconds, module result, ChildCPU of the tree)."""
        play = [{"hosts": "localhost", "gather_facts": False, "connection": "local",
                 "vars": {"ansible_python_interpreter": sys.executable},
                 "tasks": [{"name": "upload", "imagestore.upload.image_upload": args}]}]
        c, records = self.playbook(play, cache)
        return records[0]["seconds"], records[0]["result"], c


def curl_put(emulator, src, name):
    """One whole-file ``PUT /ImageStore/{path}`` of ``src`` by curl (by requests when curl is absent):
    (tool, ChildCPU, emulator CPU seconds)."""
    url = "%s/ImageStore/%s?api-version=6.0" % (emulator.url, quote("bench/put/%s" % name, safe=""))
    if shutil.which("curl"):
        argv = ["curl", "-sS", "-f", "-o", "/dev/null", "-T", src, "-H", "Content-Type: application/octet-stream",
                "-H", "Expect:", url]
        tool = "curl"
    else:
        code = ("import os, sys, requests; f = open(sys.argv[1], 'rb'); requests.put(sys.argv[2], data=f, "
                "headers={'Content-Length': str(os.path.getsize(sys.argv[1]))}).raise_for_status()")
        argv = [sys.executable, "-c", code, src, url]
        tool = "requests"
    with EmulatorCPU(emulator) as e, ChildCPU() as c:
        subprocess.run(argv, check=True)
    return tool, c, e.cpu


def digest_floor(path, algorithms):
    """CPU seconds (this process: user + sys) of one read of ``path`` in 4 MiB blocks feeding every digest in
    ``algorithms``, as hashlib computes them on this machine; and the digests."""
    hashers = [hashlib.new(a) for a in algorithms]
    buf = bytearray(READ_BLOCK)
    view = memoryview(buf)
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    with open(path, "rb", buffering=0) as fh:
        while True:
            n = fh.readinto(buf)
            if not n:
                break
            for h in hashers:
                h.update(view[:n])
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return cpu, dict((a, h.hexdigest()) for a, h in zip(algorithms, hashers))
