"""Issue 15's figures: an application package of many small files uploaded plain and with ``compress: true``, on
loopback and behind 20 ms of latency, then plain again with 504 FABRIC_E_TIMEOUT answered after processing on 5 %
of all calls (seeded): did it complete, and did the store receive any byte twice.

    python benchmarks/bench_compress.py                 # 2,000 files of 4 KiB in 10 folders, one run each
    python benchmarks/bench_compress.py --files 500 --json compress.json

image_upload is run directly (as AnsiballZ runs it), each time into a freshly reset emulator with a cold digest
cache; the figures are its ``elapsed``, its process's CPU seconds and the requests that carried a body."""

import argparse
import json
import os
import shutil
import sys
import tempfile

import requests

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from bench_lib import Target, run_module, scratch_dir  # noqa: E402
from imagestore_emulator.process import EmulatorProcess  # noqa: E402

APP = ('<?xml version="1.0" encoding="utf-8"?>\n<ApplicationManifest xmlns="http://schemas.microsoft.com/2011/01/fabric" '
       'ApplicationTypeName="BenchType" ApplicationTypeVersion="1.0.0">\n  <ServiceManifestImport><ServiceManifestRef '
       'ServiceManifestName="BenchPkg" ServiceManifestVersion="1.0.0"/></ServiceManifestImport>\n</ApplicationManifest>\n')
SERVICE = ('<?xml version="1.0" encoding="utf-8"?>\n<ServiceManifest xmlns="http://schemas.microsoft.com/2011/01/fabric" '
           'Name="BenchPkg" Version="1.0.0">\n  <CodePackage Name="Code" Version="1.0.0"><EntryPoint><ExeHost><Program>'
           'svc.exe</Program></ExeHost></EntryPoint></CodePackage>\n  <ConfigPackage Name="Config" Version="1.0.0"/>\n'
           '</ServiceManifest>\n')


def make_package(root, files, size):
    """``files`` files of ``size`` bytes in 10 folders of the code package, a config file, the two manifests."""
    code = os.path.join(root, "BenchPkg", "Code")
    os.makedirs(os.path.join(root, "BenchPkg", "Config"))
    with open(os.path.join(root, "ApplicationManifest.xml"), "w") as fh:
        fh.write(APP)
    with open(os.path.join(root, "BenchPkg", "ServiceManifest.xml"), "w") as fh:
        fh.write(SERVICE)
    with open(os.path.join(root, "BenchPkg", "Config", "Settings.xml"), "w") as fh:
        fh.write("<Settings/>\n")
    for i in range(files):
        folder = os.path.join(code, "lib%d" % (i % 10))
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "f%05d.dll" % i), "wb") as fh:
            fh.write(os.urandom(size // 2) + bytes(size - size // 2))      # half random, half zeros: compressible
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, names in os.walk(root) for f in names)


def received(emulator):
    return requests.get(emulator.url + "/_emulator/servicefabric/received", timeout=60).json()["totals"]


def upload(emulator, pkg, workdir, name, **extra):
    emulator.reset()
    cache = os.path.join(workdir, "cache-%s.json" % name)
    args = Target("servicefabric", emulator).module_args(src=pkg, path="bench/" + name, **extra)
    result, cpu, _ = run_module(args, workdir, cache, [emulator])
    got = received(emulator)
    return {"s": result["elapsed"], "cpu_s": cpu.cpu, "bodies": got["file_bodies"] + got["chunk_bodies"],
            "bytes_received": got["file_bytes"] + got["chunk_bytes"], "bytes_sent": result.get("bytes_sent"),
            "files": len(result.get("files") or []), "compressed": len(result.get("compressed") or [])}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--latency-ms", type=int, default=20)
    parser.add_argument("--json", default=None)
    opts = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="bench-compress-", dir=scratch_dir(64 << 20))
    emulators = []
    try:
        pkg = os.path.join(workdir, "pkg", "BenchApp")
        total = make_package(pkg, opts.files, opts.size)
        res = {"files": opts.files + 3, "bytes": total}
        for label, extra in (("loopback", []), ("latency", ["--latency-ms", str(opts.latency_ms)])):
            emulator = EmulatorProcess(os.path.join(workdir, "emu-" + label), extra_args=extra).start()
            emulators.append(emulator)
            for mode, kw in (("plain", {}), ("compress", {"compress": True})):
                res["%s_%s" % (label, mode)] = upload(emulator, pkg, workdir, "%s-%s" % (label, mode), **kw)
        emulator = emulators[0]
        emulator.reset()
        rules = {"seed": 7, "rules": [{"provider": "servicefabric", "operation": "*", "action": "status_after", "status": 504,
                                       "probability": 0.05, "count": 0}]}
        requests.post(emulator.url + "/_emulator/faults", json=rules, timeout=30).raise_for_status()
        try:
            faulted = upload(emulator, pkg, workdir, "faults")
        finally:
            fired = requests.get(emulator.url + "/_emulator/faults", timeout=30).json()
            requests.delete(emulator.url + "/_emulator/faults", timeout=30)
        faulted["timeouts_answered"] = sum(len(r.get("fired") or []) if isinstance(r.get("fired"), list) else (r.get("fired") or 0)
                                           for r in fired.get("rules", []))
        faulted["sent_twice_bytes"] = faulted["bytes_received"] - total
        res["loopback_504s"] = faulted
        print(json.dumps(res, indent=2))
        print()
        print("| %d files, %.1f MB | plain s | compress s | saved | requests with a body: plain / compress |"
              % (res["files"], total / 1e6))
        print("|---|---|---|---|---|")
        for label in ("loopback", "latency"):
            p, c = res[label + "_plain"], res[label + "_compress"]
            print("| %s | %.2f | %.2f | %.0f %% | %d / %d |" % (
                label if label == "loopback" else "%d ms latency" % opts.latency_ms, p["s"], c["s"],
                100.0 * (1 - c["s"] / p["s"]), p["bodies"], c["bodies"]))
        print("| loopback, 504 after processing on 5 %% of calls | %.2f (504s answered: %d; bytes received beyond the "
              "package: %d) | | | %d / |" % (faulted["s"], faulted["timeouts_answered"], faulted["sent_twice_bytes"],
                                             faulted["bodies"]))
        if opts.json:
            with open(opts.json, "w") as fh:
                json.dump(res, fh, indent=2)
    finally:
        for emulator in emulators:
            emulator.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
