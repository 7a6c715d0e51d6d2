"""Benchmark of imagestore.upload against the emulator: one run, one table, figures and ratios.

    python benchmarks/bench.py                 # 1 GiB upload, 256 MiB / 2 GiB memory runs, 3 runs each
    python benchmarks/bench.py --quick         # sizes divided by 8, for a quick look
    tox -e bench [-- --quick]

For each provider it prints (and writes to --json):
  upload_mbps      image_upload run through ansible-playbook (the task's wall time, hashing included)
  module_mbps      the same upload over the module's own time (its `elapsed`: without Ansible's start-up)
  put_mbps         one plain HTTP PUT of the same file to the same emulator (Service Fabric whole-file PUT,
                   streamed by curl, or by requests when curl is absent), and the ratio upload/put
  p1_mbps, p4_mbps image_upload with 20 ms injected before every response, parallel 1 and 4, and the speedup
                   (task wall time; speedup_module: over the module's own time)
  rss_small_mib, rss_large_mib  peak resident memory of the module process for the small and the large file
  noop_s / upload_s  wall time of the no-op re-run as a fraction of the upload's (and the same over the module's time)
  resume_missing, resume_sent   bytes missing in a half-uploaded session and bytes the resuming run sent
Medians of --runs runs. Nothing here asserts: the figures are for reading.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import requests

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from imagestore_emulator.process import EmulatorProcess  # noqa: E402
from pytest_imagestore.partial import MAKERS  # noqa: E402

MiB = 1024 * 1024


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
    block = os.urandom(4 * MiB)
    with open(path, "wb") as fh:
        left = size
        i = 0
        while left > 0:
            piece = (i.to_bytes(8, "big") + block[8:])[:min(left, len(block))]
            fh.write(piece)
            left -= len(piece)
            i += 1


class Target:
    def __init__(self, provider, emulator):
        self.provider = provider
        self.endpoint = emulator.url
        creds = emulator.credentials.get(provider, {})
        self.options = {"username": creds.get("username"), "password": creds.get("password"), "validate_certs": True}

    def module_args(self, **extra):
        args = {"provider": self.provider, "endpoint": self.endpoint}
        args.update((k, v) for k, v in self.options.items() if v is not None)
        args.update(extra)
        return args


def destination(provider, name):
    """Module options naming a fresh destination ``name`` for each provider."""
    if provider == "servicefabric":
        return {"path": "bench/%s" % name}
    if provider == "vsphere":
        return {"library": "images", "item": name.replace("/", "-"), "file_name": "disk.img"}
    if provider == "zstack":
        return {"name": name.replace("/", "-"), "backup_storage": "bs", "format": "raw", "image_id": None}
    raise ValueError(provider)


class Ansible:
    """ansible-playbook with the bench_timing callback: returns (task seconds, module result)."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.n = 0                  # one timing file per run (a provider's runs start again at 1)

    def env(self, cache):
        env = dict(os.environ)
        env.update(ANSIBLE_CALLBACK_PLUGINS=os.path.join(HERE, "callback_plugins"), ANSIBLE_CALLBACKS_ENABLED="bench_timing",
                   ANSIBLE_STDOUT_CALLBACK="minimal", ANSIBLE_LOCALHOST_WARNING="false",
                   ANSIBLE_INVENTORY_UNPARSED_WARNING="false", IMAGESTORE_DIGEST_CACHE=cache,
                   ANSIBLE_LOCAL_TEMP=os.path.join(self.workdir, "ansible-tmp"))
        if os.environ.get("BENCH_COLLECTIONS_PATH"):
            env["ANSIBLE_COLLECTIONS_PATH"] = os.environ["BENCH_COLLECTIONS_PATH"]
        return env

    def run(self, args, cache):
        self.n += 1
        out = os.path.join(self.workdir, "timing-%d.jsonl" % self.n)
        if os.path.exists(out):
            os.unlink(out)
        play = [{"hosts": "localhost", "gather_facts": False, "connection": "local",
                 "vars": {"ansible_python_interpreter": sys.executable},
                 "tasks": [{"name": "upload", "imagestore.upload.image_upload": args}]}]
        playbook = os.path.join(self.workdir, "play-%d.yml" % self.n)
        with open(playbook, "w") as fh:
            json.dump(play, fh)
        env = self.env(cache)
        env["BENCH_TIMING_OUT"] = out
        proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,", playbook],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        with open(out) as fh:
            rec = json.loads(fh.readline())
        if rec["result"].get("failed"):
            raise RuntimeError("image_upload failed: %s\n%s" % (rec["result"].get("msg"), proc.stdout.decode()[-3000:]))
        return rec["seconds"], rec["result"]


def plain_put(emulator, src, name):
    """One whole-file PUT of src to the Service Fabric endpoint; seconds."""
    url = "%s/ImageStore/%s?api-version=6.0" % (emulator.url, requests.utils.quote("bench/put/%s" % name, safe=""))
    start = time.monotonic()
    if shutil.which("curl"):
        subprocess.run(["curl", "-sS", "-f", "-o", "/dev/null", "-T", src, "-H", "Content-Type: application/octet-stream",
                        "-H", "Expect:", url], check=True)
    else:
        with open(src, "rb") as fh:
            requests.put(url, data=fh, headers={"Content-Length": str(os.path.getsize(src))}).raise_for_status()
    return time.monotonic() - start


def module_invocation(args, workdir, cache):
    """argv and environment running image_upload with ``args`` as AnsiballZ runs it, without Ansible."""
    argfile = os.path.join(workdir, "args.json")
    with open(argfile, "w") as fh:
        json.dump({"ANSIBLE_MODULE_ARGS": args}, fh)
    env = dict(os.environ, IMAGESTORE_DIGEST_CACHE=cache)
    if os.environ.get("BENCH_COLLECTIONS_PATH"):
        env["PYTHONPATH"] = os.environ["BENCH_COLLECTIONS_PATH"]
    return [sys.executable, "-m", "ansible_collections.imagestore.upload.plugins.modules.image_upload", argfile], env


def peak_rss_mib(args, workdir, cache):
    """Run the module directly (AnsiballZ's payload, without the wrapper) and return its peak RSS."""
    argv, env = module_invocation(args, workdir, cache)
    wrapper = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE); "
               "sys.stderr.write(p.stdout.decode()[-400:] if p.returncode else ''); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", wrapper] + argv, stdout=subprocess.PIPE, env=env, check=True)
    return int(out.stdout.decode().split()[-1]) / 1024.0


def bench_provider(provider, emulator, slow_emulator, sizes, runs, workdir, log):
    ansible = Ansible(workdir)

    def warm():
        warm_memory(workdir, sizes["upload"] * 2)
    target = Target(provider, emulator)
    big = os.path.join(workdir, "big.img")
    make_file(big, sizes["upload"])
    res = {"provider": provider, "upload_bytes": sizes["upload"]}

    # 1. throughput: image_upload (fresh destination, cold digest cache) vs one plain PUT
    ups, mods, puts, noops, noop_mods = [], [], [], [], []
    for i in range(runs):
        cache = os.path.join(workdir, "cache-%s-%d.json" % (provider, i))
        warm()
        t, r = ansible.run(target.module_args(src=big, **destination(provider, "up-%d" % i)), cache)
        assert r["changed"] and r["bytes_sent"] == sizes["upload"], r
        ups.append(t)
        mods.append(r["elapsed"])
        t2, r2 = ansible.run(target.module_args(src=big, **destination(provider, "up-%d" % i)), cache)
        assert not r2["changed"], r2
        noops.append(t2)
        noop_mods.append(r2["elapsed"])
        emulator.reset()            # free the stored copies (the bench works in memory when it can)
        warm()
        puts.append(plain_put(emulator, big, "%s-%d" % (provider, i)))
        emulator.reset()
        log("  run %d: upload %.2fs (module %.2fs), no-op %.2fs, plain PUT %.2fs" % (i + 1, t, mods[-1], t2, puts[-1]))
    mb = sizes["upload"] / 1e6
    res.update(upload_s=statistics.median(ups), module_s=statistics.median(mods), put_s=statistics.median(puts),
               noop_s=statistics.median(noops))
    res.update(upload_mbps=mb / res["upload_s"], module_mbps=mb / res["module_s"], put_mbps=mb / res["put_s"])
    res["ratio"] = res["upload_mbps"] / res["put_mbps"]
    res["module_ratio"] = res["module_mbps"] / res["put_mbps"]
    res["noop_fraction"] = res["noop_s"] / res["upload_s"]
    res["noop_module_s"] = statistics.median(noop_mods)
    res["noop_module_fraction"] = res["noop_module_s"] / res["module_s"]

    # 2. latency: 20 ms before every response, parallel 1 vs 4
    lat = os.path.join(workdir, "lat.img")
    make_file(lat, sizes["latency"])
    slow = Target(provider, slow_emulator)
    module_times = {}
    for p in (1, 4):
        times, inside = [], []
        for i in range(runs):
            cache = os.path.join(workdir, "cache-lat-%s-%d-%d.json" % (provider, p, i))
            t, r = ansible.run(slow.module_args(src=lat, parallel=p, chunk_size=sizes["latency_chunk"],
                                                **destination(provider, "lat-p%d-%d" % (p, i))), cache)
            times.append(t)
            inside.append(r["elapsed"])
        res["p%d_mbps" % p] = sizes["latency"] / 1e6 / statistics.median(times)
        module_times[p] = statistics.median(inside)
    res["speedup"] = res["p4_mbps"] / res["p1_mbps"]
    res["speedup_module"] = module_times[1] / module_times[4]
    res["latency_bytes"] = sizes["latency"]
    res["latency_chunk"] = sizes["latency_chunk"]
    log("  20 ms latency: parallel 1 %.1f MB/s, parallel 4 %.1f MB/s" % (res["p1_mbps"], res["p4_mbps"]))

    # 3. memory of the module process, small and large file
    for key in ("rss_small", "rss_large"):
        f = os.path.join(workdir, "%s.img" % key)
        make_file(f, sizes[key])
        rss = peak_rss_mib(target.module_args(src=f, **destination(provider, key)), workdir,
                           os.path.join(workdir, "cache-%s-%s.json" % (provider, key)))
        res[key + "_mib"] = rss
        res[key + "_bytes"] = sizes[key]
        os.unlink(f)
        emulator.reset()
    res["rss_ratio"] = res["rss_large_mib"] / res["rss_small_mib"]
    log("  peak RSS: %.1f MiB (%d MiB file), %.1f MiB (%d MiB file)" % (
        res["rss_small_mib"], sizes["rss_small"] // MiB, res["rss_large_mib"], sizes["rss_large"] // MiB))

    # 4. resume of a half-uploaded session
    res.update(resume(provider, target, big, workdir, ansible))
    log("  resume: %d bytes missing, %d sent" % (res["resume_missing"], res["resume_sent"]))
    os.unlink(lat)
    os.unlink(big)
    return res


def resume(provider, target, src, workdir, ansible):
    dest = destination(provider, "resume")
    kwargs = {k: v for k, v in dest.items() if v is not None and k != "format"}
    size = os.path.getsize(src)
    chunk = min(16 * MiB, max(MiB, size // 8))       # 16 MiB chunks (slices), smaller for --quick sizes
    partial, cleanup = MAKERS[provider](target, src, 0.5, chunk, **kwargs)
    try:
        _, r = ansible.run(target.module_args(src=src, **dest), os.path.join(workdir, "cache-resume-%s.json" % provider))
        return {"resume_missing": size - partial.bytes_sent, "resume_sent": r["bytes_sent"],
                "resume_resent": r["bytes_sent"] - (size - partial.bytes_sent), "resumed": r["resumed"]}
    finally:
        try:
            cleanup()
        except Exception:
            pass


def scratch_dir(sizes):
    """/dev/shm when it can hold what the bench keeps at once (source, stored copy, large memory-test file)."""
    need = 2 * sizes["upload"] + 2 * sizes["rss_large"] + 512 * MiB
    try:
        st = os.statvfs("/dev/shm")
        if st.f_bavail * st.f_frsize > need:
            return "/dev/shm"
    except OSError:
        pass
    return None


def table(results):
    cols = [("provider", "%-13s", "provider"), ("upload MB/s", "%11.0f", "upload_mbps"), ("PUT MB/s", "%8.0f", "put_mbps"),
            ("ratio", "%5.2f", "ratio"), ("module MB/s", "%11.0f", "module_mbps"), ("module ratio", "%12.2f", "module_ratio"),
            ("p1@20ms", "%7.1f", "p1_mbps"), ("p4@20ms", "%7.1f", "p4_mbps"),
            ("speedup", "%7.2f", "speedup"), ("speedup module", "%14.2f", "speedup_module"), ("RSS small", "%9.1f", "rss_small_mib"), ("RSS large", "%9.1f", "rss_large_mib"),
            ("RSS ratio", "%9.2f", "rss_ratio"), ("no-op s", "%7.2f", "noop_s"), ("upload s", "%8.2f", "upload_s"),
            ("no-op/up", "%8.2f", "noop_fraction"), ("module no-op/up", "%15.3f", "noop_module_fraction"), ("resume missing", "%14d", "resume_missing"),
            ("resume sent", "%11d", "resume_sent"), ("re-sent", "%7d", "resume_resent")]
    header = []
    widths = []
    for h, fmt, _ in cols:
        w = max(len(h), len(fmt % (0 if "s" not in fmt[-1] else "")))
        widths.append(w)
        header.append(h.rjust(w))
    lines = ["  ".join(header)]
    for r in results:
        row = []
        for (h, fmt, key), w in zip(cols, widths):
            row.append((fmt % r[key]).rjust(w))
        lines.append("  ".join(row))
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="sizes divided by 8")
    ap.add_argument("--scale", type=float, default=None, help="multiply every size by this factor")
    ap.add_argument("--runs", type=int, default=3, help="runs per figure (median; default 3)")
    ap.add_argument("--providers", default="servicefabric,vsphere,zstack")
    ap.add_argument("--json", default="bench-results.json", help="where to write the figures")
    ap.add_argument("--workdir", default=None,
                    help="scratch folder for generated files and the emulators' data (default: a temporary folder in "
                         "/dev/shm when it has room, so that disk write-back does not blur the figures)")
    args = ap.parse_args(argv)
    scale = args.scale if args.scale is not None else (1.0 / 8 if args.quick else 1.0)
    # The latency scenario is latency-bound on purpose: 256 requests of 256 KiB, 20 ms before each answer.
    sizes = {"upload": 1024 * MiB, "latency": 64 * MiB, "latency_chunk": str(256 * 1024),
             "rss_small": 256 * MiB, "rss_large": 2048 * MiB}
    for k in ("upload", "latency", "rss_small", "rss_large"):
        sizes[k] = max(MiB, int(sizes[k] * scale) // MiB * MiB)
    if scale < 1:
        sizes["latency_chunk"] = str(max(64 * 1024, int(256 * 1024 * scale)))

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    workdir = args.workdir or tempfile.mkdtemp(prefix="imagestore-bench-", dir=scratch_dir(sizes))
    os.makedirs(workdir, exist_ok=True)
    results = []
    os.makedirs(os.path.join(workdir, "emu"), exist_ok=True)
    os.makedirs(os.path.join(workdir, "emu-slow"), exist_ok=True)
    emulator = EmulatorProcess(os.path.join(workdir, "emu")).start()
    slow = EmulatorProcess(os.path.join(workdir, "emu-slow"), extra_args=["--latency-ms", "20"]).start()
    try:
        available = set(emulator.health()["providers"])
        for provider in args.providers.split(","):
            if provider not in available:
                log("%s: not served by this emulator, skipped" % provider)
                continue
            if provider not in MAKERS:
                log("%s: no adapter for partial uploads yet, skipped" % provider)
                continue
            log("%s:" % provider)
            try:
                results.append(bench_provider(provider, emulator, slow, sizes, args.runs, workdir, log))
            except RuntimeError as exc:
                log("  failed: %s" % exc)
    finally:
        emulator.stop()
        slow.stop()
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    report = {"sizes": sizes, "runs": args.runs, "cpus": os.cpu_count(), "results": results,
              "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    with open(args.json, "w") as fh:
        json.dump(report, fh, indent=1)
    print("upload %d MiB, latency runs %d MiB in %s-byte chunks, memory %d / %d MiB, median of %d runs"
          % (sizes["upload"] // MiB, sizes["latency"] // MiB, sizes["latency_chunk"], sizes["rss_small"] // MiB,
             sizes["rss_large"] // MiB, args.runs))
    print(table(results))
    print("(figures also in %s)" % args.json)
    return 0 if results else 1


if __name__ == "__main__":
    sys.exit(main())
