"""The benchmark's chart (PNG): CPU per GiB and MB/s by provider beside curl and the digests, the package against
sfctl, the fan-out, and chunk size x parallelism from a sweep's JSON when there is one.

    python benchmarks/bench_chart.py bench-results.json [--sweep docs/performance-sweep.json] [-o docs/performance.png]
"""

import argparse
import json
import os
import sys

COLORS = {"module": "#1f77b4", "module_sys": "#6baed6", "put": "#7f7f7f", "digest": "#ff7f0e", "task": "#2ca02c",
          "sfctl": "#9467bd"}


def _providers(report):
    cols = []
    for r in report["results"]:
        cols.append((r["provider"], r))
        if "with_checksum" in r:
            cols.append((r["provider"] + "\n+checksum", r["with_checksum"]))
    return cols


def cpu_panel(ax, report):
    cols = _providers(report)
    xs = range(len(cols))
    w = 0.38
    mod_user = [r["module_user_per_gib"] for _, r in cols]
    mod_sys = [r["module_sys_per_gib"] for _, r in cols]
    put = [r["put_cpu_per_gib"] for _, r in cols]
    dig = [r["digest_cpu_per_gib"] for _, r in cols]
    ax.bar([x - w / 2 for x in xs], mod_user, w, color=COLORS["module"], label="image_upload user")
    ax.bar([x - w / 2 for x in xs], mod_sys, w, bottom=mod_user, color=COLORS["module_sys"], label="image_upload sys")
    ax.bar([x + w / 2 for x in xs], put, w, color=COLORS["put"], label="curl PUT")
    ax.bar([x + w / 2 for x in xs], dig, w, bottom=put, color=COLORS["digest"], label="digests (hashlib)")
    for x, (_, r) in zip(xs, cols):
        ax.text(x - w / 2, r["module_cpu_per_gib"], "%.2f" % r["module_cpu_per_gib"], ha="center", va="bottom", fontsize=8)
        ax.text(x + w / 2, r["put_cpu_per_gib"] + r["digest_cpu_per_gib"], "%.2f" % (r["put_cpu_per_gib"] + r["digest_cpu_per_gib"]),
                ha="center", va="bottom", fontsize=8)
    ax.set_xticks(list(xs))
    ax.set_xticklabels([n for n, _ in cols], fontsize=8)
    ax.set_ylabel("CPU seconds per GiB")
    ax.set_title("Client CPU per GiB: module vs curl + required digests")
    ax.legend(fontsize=7, loc="upper left")


def mbps_panel(ax, report):
    cols = [(r["provider"], r) for r in report["results"]]
    xs = range(len(cols))
    w = 0.27
    ax.bar([x - w for x in xs], [r["module_mbps"] for _, r in cols], w, color=COLORS["module"], label="module (its elapsed)")
    ax.bar(list(xs), [r.get("task_mbps", 0) for _, r in cols], w, color=COLORS["task"], label="task (ansible-playbook)")
    ax.bar([x + w for x in xs], [r["put_mbps"] for _, r in cols], w, color=COLORS["put"], label="curl PUT")
    ax.set_xticks(list(xs))
    ax.set_xticklabels([n for n, _ in cols], fontsize=8)
    ax.set_ylabel("MB/s")
    ax.set_title("Throughput, %d MiB on loopback" % (report["sizes"]["upload"] >> 20))
    ax.legend(fontsize=7)


def package_panel(ax, report):
    pkg = report.get("package") or {}
    bars = []
    if "sfctl_s" in pkg:
        bars.append(("sfctl upload", pkg["sfctl_s"], COLORS["sfctl"]))
    if "package_task_s" in pkg:
        bars.append(("image_upload first", pkg["package_task_s"], COLORS["module"]))
        bars.append(("image_upload no-op", pkg["package_noop_s"], COLORS["task"]))
    if not bars:
        ax.set_axis_off()
        return
    ax.barh([b[0] for b in bars], [b[1] for b in bars], color=[b[2] for b in bars])
    for i, b in enumerate(bars):
        ax.text(b[1], i, " %.1f s" % b[1], va="center", fontsize=8)
    ax.set_xlabel("seconds (wall)")
    ax.set_title("Application package: %d files, %.0f MB" % (pkg["package_files"], pkg["package_bytes"] / 1e6))
    ax.invert_yaxis()


def fanout_panel(ax, report):
    rows = (report.get("fanout") or {}).get("fanout") or []
    if not rows:
        ax.set_axis_off()
        return
    ns = [r["stores"] for r in rows]
    ax.plot(ns, [r["aggregate_mbps"] for r in rows], "o-", color=COLORS["module"], label="aggregate MB/s")
    ax.set_xticks(ns)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("stores (one play, forks = stores)")
    ax.set_ylabel("aggregate MB/s")
    ax2 = ax.twinx()
    ax2.plot(ns, [100 * r["cpu_busy"] for r in rows], "s--", color=COLORS["digest"], label="CPU busy: this play %")
    if all(r.get("machine_busy") is not None for r in rows):
        ax2.plot(ns, [100 * r["machine_busy"] for r in rows], "^:", color=COLORS["put"], label="CPU busy: machine %")
    ax2.set_ylim(0, 110)
    ax2.set_ylabel("% of all cores busy")
    ax.set_title("One image to N stores")
    lines = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(lines, [l.get_label() for l in lines], fontsize=7, loc="lower right")


def sweep_panel(ax, sweep, provider):
    rows = [r for r in sweep["rows"] if r["provider"] == provider]
    chunks = sorted({r["chunk"] for r in rows}, key=lambda c: (len(c), c))
    chunks = sorted(chunks, key=lambda c: float("".join(ch for ch in c if ch.isdigit() or ch == ".") or 0))
    pars = sorted({r["parallel"] for r in rows})
    grid = [[next((r["mbps"] for r in rows if r["chunk"] == c and r["parallel"] == p), 0) for p in pars] for c in chunks]
    im = ax.imshow(grid, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(pars)))
    ax.set_xticklabels(["p=%d" % p for p in pars])
    ax.set_yticks(range(len(chunks)))
    ax.set_yticklabels(chunks)
    top = max(max(row) for row in grid) or 1
    for i, row in enumerate(grid):
        for j, v in enumerate(row):
            ax.text(j, i, "%.0f" % v, ha="center", va="center", fontsize=8, color="white" if v < 0.6 * top else "black")
    ax.set_title("%s, %d ms latency: module MB/s" % (provider, sweep.get("latency_ms", 0)))
    ax.figure.colorbar(im, ax=ax, fraction=0.046)


def draw(report, out, sweeps=()):
    """Write the PNG; returns its path, or raises ImportError without matplotlib."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = [cpu_panel, mbps_panel, package_panel, fanout_panel]
    extra = [(s, p) for s in sweeps for p in sorted({r["provider"] for r in s["rows"]})]
    n = len(panels) + len(extra)
    cols = 2 if n <= 4 else 3
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.2 * cols, 4.2 * rows))
    axes = [a for row in (axes if rows > 1 else [axes]) for a in row]
    for ax, panel in zip(axes, panels):
        panel(ax, report)
    for ax, (sweep, provider) in zip(axes[len(panels):], extra):
        sweep_panel(ax, sweep, provider)
    for ax in axes[n:]:
        ax.set_axis_off()
    load = report.get("loadavg", {})
    fig.suptitle("imagestore.upload benchmark, %s, %d cores (load average %.1f-%.1f)" % (
        report.get("when", "")[:10], report["cpus"], load.get("start", 0), load.get("end", 0)), fontsize=11)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results")
    ap.add_argument("--sweep", action="append", default=[], help="a JSON written by sweep.py --json (repeatable)")
    ap.add_argument("-o", "--out", default="docs/performance.png")
    args = ap.parse_args(argv)
    with open(args.results) as fh:
        report = json.load(fh)
    sweeps = []
    for path in args.sweep:
        with open(path) as fh:
            sweeps.append(json.load(fh))
    print(draw(report, args.out, sweeps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
