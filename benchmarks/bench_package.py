"""Many files: an application package (by default 10,000 files of 4 KiB in 10 folders, one of 256 MiB, two
manifests) uploaded by ``sfctl application upload`` and by image_upload through ansible-playbook, against the same
emulator, then image_upload's no-op re-run. Wall time, CPU of the client's process tree, the emulator's CPU."""

import os
import subprocess
import sys

import requests

from bench_lib import Ansible, ChildCPU, EmulatorCPU, Target, warm_memory
from sfctl_env import sfctl_env

NAME = "BenchApp"


def make_package(root, files, small, big):
    """The package folder ``root``: ``files`` files of ``small`` bytes in 10 folders, one of ``big`` bytes; total bytes."""
    code = os.path.join(root, "Svc", "Code")
    os.makedirs(code, exist_ok=True)
    with open(os.path.join(root, "ApplicationManifest.xml"), "w") as fh:
        fh.write('<?xml version="1.0"?><ApplicationManifest ApplicationTypeName="Bench" ApplicationTypeVersion="1.0.0"/>\n')
    with open(os.path.join(root, "Svc", "ServiceManifest.xml"), "w") as fh:
        fh.write('<?xml version="1.0"?><ServiceManifest Name="Svc" Version="1.0.0"/>\n')
    block = os.urandom(4 << 20)
    with open(os.path.join(code, "big.bin"), "wb") as fh:
        for i in range(0, big, len(block)):
            fh.write((i.to_bytes(8, "big") + block[8:])[:min(len(block), big - i)])
    for d in range(10):
        sub = os.path.join(code, "lib%d" % d)
        os.makedirs(sub, exist_ok=True)
        for i in range(files // 10 + (1 if d < files % 10 else 0)):
            with open(os.path.join(sub, "f%05d.dat" % i), "wb") as fh:
                fh.write(os.urandom(small))
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, names in os.walk(root) for f in names)


def received(emulator):
    return requests.get(emulator.url + "/_emulator/servicefabric/received", timeout=60).json()["totals"]


def run_sfctl(sfctl, emulator, pkg, total, workdir, log):
    env = sfctl_env(os.path.join(workdir, "sfctl-home"))

    def call(*args):
        proc = subprocess.run([sfctl] + list(args), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, cwd=workdir)
        if proc.returncode:
            raise RuntimeError("sfctl %s failed (%d): %s" % (" ".join(args), proc.returncode, proc.stderr.decode()[-2000:]))
    call("cluster", "select", "--endpoint", emulator.url)
    emulator.reset()
    warm_memory(workdir, 2 * total)
    with EmulatorCPU(emulator) as e, ChildCPU() as c:
        call("application", "upload", "--path", pkg)
    got = received(emulator)
    if got["file_bytes"] + got["chunk_bytes"] < total:
        raise RuntimeError("sfctl stored %d of %d bytes" % (got["file_bytes"] + got["chunk_bytes"], total))
    log("  sfctl application upload: %.2f s, client %.2f CPU-s, emulator %.2f CPU-s, %d requests with a body"
        % (c.wall, c.cpu, e.cpu, got["file_bodies"] + got["chunk_bodies"]))
    return {"sfctl_s": c.wall, "sfctl_cpu_s": c.cpu, "sfctl_emulator_cpu_s": e.cpu}


def run_module(emulator, pkg, total, workdir, log):
    ansible = Ansible(workdir)
    cache = os.path.join(workdir, "cache-package.json")
    args = Target("servicefabric", emulator).module_args(src=pkg, path=NAME)
    emulator.reset()
    warm_memory(workdir, 2 * total)
    with EmulatorCPU(emulator) as e:
        t, r, c = ansible.run(args, cache)
    if not r["changed"] or r["size"] != total:
        raise RuntimeError("image_upload of the package: %s" % r.get("msg"))
    got = received(emulator)
    log("  image_upload (task): %.2f s (module %.2f s), tree %.2f CPU-s, emulator %.2f CPU-s, %d requests with a body"
        % (t, r["elapsed"], c.cpu, e.cpu, got["file_bodies"] + got["chunk_bodies"]))
    with EmulatorCPU(emulator) as e2:
        t2, r2, c2 = ansible.run(args, cache)
    if r2["changed"]:
        raise RuntimeError("the package's re-run changed something: %s" % r2.get("msg"))
    log("  image_upload no-op re-run: %.2f s (module %.2f s), tree %.2f CPU-s, emulator %.2f CPU-s"
        % (t2, r2["elapsed"], c2.cpu, e2.cpu))
    emulator.reset()
    return {"package_task_s": t, "package_module_s": r["elapsed"], "package_cpu_s": c.cpu, "package_emulator_cpu_s": e.cpu,
            "package_noop_s": t2, "package_noop_module_s": r2["elapsed"], "package_noop_cpu_s": c2.cpu,
            "package_noop_fraction": t2 / t}


def bench_package(emulator, sizes, sfctl, sfctl_note, workdir, log):
    pkg = os.path.join(workdir, "pkg", NAME)
    total = make_package(pkg, sizes["package_files"], sizes["package_small"], sizes["package_big"])
    res = {"package_files": sizes["package_files"] + 3, "package_bytes": total, "sfctl": sfctl_note}
    log("package: %d files, %d bytes" % (res["package_files"], total))
    try:
        if sfctl:
            res.update(run_sfctl(sfctl, emulator, pkg, total, workdir, log))
        else:
            log("  sfctl: skipped: %s" % sfctl_note)
        res.update(run_module(emulator, pkg, total, workdir, log))
        if sfctl:
            res["package_vs_sfctl"] = res["package_task_s"] / res["sfctl_s"]
    finally:
        subprocess.run(["rm", "-rf", os.path.dirname(pkg)], check=False)
    return res


if __name__ == "__main__":
    make_package(sys.argv[1], int(sys.argv[2]), 4096, int(sys.argv[3]))
