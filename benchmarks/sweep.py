"""Chunk size x parallelism sweep: what the defaults of image_upload are chosen from.

    python benchmarks/sweep.py                       # Service Fabric and ZStack, 512 MiB, median of 3
    python benchmarks/sweep.py --providers zstack --size-mib 256 --latency-ms 20
    python benchmarks/sweep.py --latency-ms 20 --json docs/performance-sweep-20ms.json   # charted by bench.py
    tox -e bench-sweep [-- options]

Runs the module itself (as AnsiballZ runs it, without Ansible's start-up, which does not depend on these
options) against a fresh emulator destination for each combination, and prints the module's own
throughput (size / its ``elapsed``). The scratch memory is warmed before each run (see bench.warm_memory).
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import bench_lib as bench  # noqa: E402
from imagestore_emulator.process import EmulatorProcess  # noqa: E402

MiB = 1024 * 1024


def run_module(args, workdir):
    argv, env = bench.module_invocation(args, workdir, "")
    result = json.loads(subprocess.run(argv, stdout=subprocess.PIPE, env=env, check=False).stdout.decode())
    if result.get("failed"):
        raise RuntimeError(result.get("msg"))
    return result


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--providers", default="servicefabric,zstack")
    ap.add_argument("--size-mib", type=int, default=512)
    ap.add_argument("--chunks", default="4MiB,16MiB,64MiB")
    ap.add_argument("--parallel", default="1,2,4,8")
    ap.add_argument("--latency-ms", type=int, default=0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", default=None, help="also write the figures here (bench.py charts docs/performance-sweep*.json)")
    args = ap.parse_args(argv)
    size = args.size_mib * MiB
    workdir = tempfile.mkdtemp(prefix="imagestore-sweep-", dir=bench.scratch_dir(3 * size))
    extra = ["--latency-ms", str(args.latency_ms)] if args.latency_ms else []
    os.makedirs(os.path.join(workdir, "emu"))
    emulator = EmulatorProcess(os.path.join(workdir, "emu"), extra_args=extra).start()
    report = {"size_mib": args.size_mib, "latency_ms": args.latency_ms, "runs": args.runs, "rows": []}
    try:
        src = os.path.join(workdir, "src.img")
        bench.make_file(src, size)
        print("%s MiB, %d ms latency, MB/s over the module's own time (median of %d)" % (args.size_mib, args.latency_ms, args.runs))
        print("%-14s %-8s %s" % ("provider", "chunk", "  ".join("p=%-6s" % p for p in args.parallel.split(","))))
        for provider in args.providers.split(","):
            target = bench.Target(provider, emulator)
            for chunk in args.chunks.split(","):
                row = []
                for parallel in args.parallel.split(","):
                    times = []
                    for i in range(args.runs):
                        bench.warm_memory(workdir, 2 * size)
                        name = "sweep-%s-%s-%d" % (chunk, parallel, i)
                        r = run_module(target.module_args(src=src, chunk_size=chunk, parallel=int(parallel),
                                                          **bench.destination(provider, name)), workdir)
                        times.append(r["elapsed"])
                        emulator.reset()
                    mbps = size / 1e6 / statistics.median(times)
                    report["rows"].append({"provider": provider, "chunk": chunk, "parallel": int(parallel), "mbps": mbps})
                    row.append("%-8.0f" % mbps)
                print("%-14s %-8s %s" % (provider, chunk, "".join(row)), flush=True)
    finally:
        emulator.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
