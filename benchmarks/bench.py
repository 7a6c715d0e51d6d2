"""Benchmark of imagestore.upload against the emulator: one table (a row per figure, a column per provider), the
same figures as JSON, and a chart (PNG).

    python3 -m tox -e bench                         # 1 GiB, median of 3, package 10,000 files + sfctl, fan-out 1-8
    python3 -m tox -e bench -- --quick              # sizes divided by 8, package of 1,000 files, fan-out 1 and 2
    python benchmarks/bench.py --providers servicefabric --skip package,fanout --runs 5

Per provider (see docs/performance.md for every row):
  module      image_upload run directly as AnsiballZ runs it (cold digest cache, fresh destination): MB/s over its own
              ``elapsed``, CPU seconds per GiB (user + sys of its process, getrusage), beside one plain PUT of the same
              file to the same emulator by curl (its CPU per GiB) and the digest floor (hashlib over one read of the
              file, for the digests that provider's protocol needs, measured in the same run); gap = module - (curl +
              digests). vSphere runs twice: a first run, and one with ``checksum: sha256:...`` given.
  task        the same through ansible-playbook, and its no-op re-run
  latency     20 ms before every answer, parallel 1 and 4, at the module level (Service Fabric, ZStack)
  memory      peak RSS of the module for a small and a large file; resume: a half-uploaded session, then a run
Service Fabric also: the application package against ``sfctl application upload`` (first upload, no-op re-run) and
the fan-out of one image to 1, 2, 4, 8 stores (one emulator each) through one play with forks.
Medians of --runs alternating runs (package and fan-out: one run). Nothing here asserts: the figures are for reading.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)

from bench_fanout import bench_fanout  # noqa: E402
from bench_lib import MiB, make_file, scratch_dir  # noqa: E402
from bench_package import bench_package  # noqa: E402
from bench_provider import bench_provider  # noqa: E402
from bench_report import headline, markdown_table, text_table  # noqa: E402
from imagestore_emulator.process import EmulatorProcess  # noqa: E402
from sfctl_env import find_sfctl  # noqa: E402

PARTS = ("providers", "package", "fanout")


def sizes_for(scale):
    sizes = {"upload": 1024 * MiB, "latency": 64 * MiB, "latency_chunk": 256 * 1024, "rss_small": 256 * MiB,
             "rss_large": 2048 * MiB, "package_files": 10000, "package_small": 4096, "package_big": 256 * MiB,
             "fanout": 512 * MiB, "fanout_stores": [1, 2, 4, 8]}
    for k in ("upload", "latency", "rss_small", "rss_large", "package_big", "fanout"):
        sizes[k] = max(MiB, int(sizes[k] * scale) // MiB * MiB)
    if scale < 1:
        sizes["latency_chunk"] = max(64 * 1024, int(256 * 1024 * scale))
        sizes["package_files"] = max(20, int(10000 * scale))
        sizes["fanout_stores"] = [1, 2] if scale < 0.125 else [1, 2, 4]
    return sizes


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="sizes divided by 8 (package 1,000 files, fan-out to 1, 2, 4 stores)")
    ap.add_argument("--scale", type=float, default=None, help="multiply every size by this factor")
    ap.add_argument("--runs", type=int, default=3, help="runs per figure (median; default 3)")
    ap.add_argument("--providers", default="servicefabric,vsphere,zstack")
    ap.add_argument("--skip", default="", help="parts to leave out: %s" % ",".join(PARTS))
    ap.add_argument("--sfctl", default="auto", choices=["auto", "install", "none"],
                    help="sfctl for the package comparison: find it (IMAGESTORE_SFCTL, .venv-sfctl), also install it "
                         "into .venv-sfctl when missing, or leave it out")
    ap.add_argument("--json", default="bench-results.json", help="where to write the figures")
    ap.add_argument("--markdown", default=None, help="also write the table as Markdown here")
    ap.add_argument("--chart", default=None,
                    help="the PNG to write (needs matplotlib; 'none': no chart; default: docs/performance.png for a "
                         "full-size run, beside --json for a smaller one)")
    ap.add_argument("--sweep-json", action="append", default=None,
                    help="sweep.py --json results to chart beside (default: docs/performance-sweep*.json when present)")
    ap.add_argument("--workdir", default=None,
                    help="scratch folder for generated files and the emulators' data (default: a temporary folder in "
                         "/dev/shm when it has room, so that disk write-back does not blur the figures)")
    args = ap.parse_args(argv)
    scale = args.scale if args.scale is not None else (1.0 / 8 if args.quick else 1.0)
    if args.chart is None:
        args.chart = os.path.join(ROOT, "docs", "performance.png") if scale >= 1 else os.path.splitext(args.json)[0] + ".png"
    sizes = sizes_for(scale)
    skip = set(p for p in args.skip.split(",") if p)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    started = time.monotonic()
    load_start = os.getloadavg()[0]
    need = 2 * sizes["upload"] + 2 * sizes["rss_large"] + (max(sizes["fanout_stores"]) + 2) * sizes["fanout"]
    workdir = args.workdir or tempfile.mkdtemp(prefix="imagestore-bench-", dir=scratch_dir(need))
    os.makedirs(workdir, exist_ok=True)
    report = {"sizes": sizes, "runs": args.runs, "cpus": os.cpu_count(), "results": [],
              "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    emulators = []
    try:
        for name, extra in (("emu", []), ("emu-slow", ["--latency-ms", "20"])):
            os.makedirs(os.path.join(workdir, name), exist_ok=True)
            emulators.append(EmulatorProcess(os.path.join(workdir, name), extra_args=extra).start())
        emulator, slow = emulators
        available = set(emulator.health()["providers"])
        if "providers" not in skip:
            for provider in args.providers.split(","):
                if provider not in available:
                    log("%s: not served by this emulator, skipped" % provider)
                    continue
                log("%s:" % provider)
                try:
                    report["results"].append(bench_provider(provider, emulator, slow, sizes, args.runs, workdir, log))
                except RuntimeError as exc:
                    log("  failed: %s" % exc)
        if "package" not in skip:
            sfctl, note = (None, "left out (--sfctl none)") if args.sfctl == "none" else find_sfctl(args.sfctl == "install", log)
            try:
                report["package"] = bench_package(emulator, sizes, sfctl, note, workdir, log)
            except RuntimeError as exc:
                log("  package failed: %s" % exc)
        if "fanout" not in skip:
            log("fan-out (Service Fabric, %d MiB):" % (sizes["fanout"] // MiB))
            src = os.path.join(workdir, "fan.img")
            make_file(src, sizes["fanout"])
            try:
                report["fanout"] = bench_fanout(src, sizes["fanout_stores"], workdir, log)
            except RuntimeError as exc:
                log("  fan-out failed: %s" % exc)
            finally:
                os.unlink(src)
    finally:
        for e in emulators:
            e.stop()
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    report["seconds"] = time.monotonic() - started
    report["loadavg"] = {"start": load_start, "end": os.getloadavg()[0]}
    report["put_tool"] = next((r["put_tool"] for r in report["results"]), "curl")
    with open(args.json, "w") as fh:
        json.dump(report, fh, indent=1)
    print(headline(report))
    print(text_table(report))
    if args.markdown:
        with open(args.markdown, "w") as fh:
            fh.write(markdown_table(report) + "\n")
    print("(figures in %s%s)" % (args.json, ", Markdown in %s" % args.markdown if args.markdown else ""))
    chart(report, args, log)
    return 0 if report["results"] or "providers" in skip else 1


def chart(report, args, log):
    if args.chart == "none":
        return
    sweeps = args.sweep_json
    if sweeps is None:
        docs = os.path.join(ROOT, "docs")
        sweeps = sorted(os.path.join(docs, f) for f in os.listdir(docs) if f.startswith("performance-sweep") and f.endswith(".json"))
    try:
        import bench_chart
        loaded = []
        for path in sweeps:
            with open(path) as fh:
                loaded.append(json.load(fh))
        print("chart: %s" % bench_chart.draw(report, args.chart, loaded))
    except ImportError:
        log("chart: skipped, matplotlib is not installed here (tox -e bench installs it)")


if __name__ == "__main__":
    sys.exit(main())
