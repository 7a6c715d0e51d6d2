"""The benchmark command runs end to end (tiny sizes): one table, a JSON file with every figure, the chart.

The figures themselves are for reading (docs/performance.md); what this checks is that the command a user
runs from a fresh clone works for every provider and every part (per-provider figures, the application package,
the fan-out), and that the figures it reports are consistent. sfctl takes part when IMAGESTORE_SFCTL names it
(CI), matplotlib's chart when it is installed here; otherwise the bench says it left them out.
"""

import importlib.util
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KEYS = ("module_mbps", "module_s", "module_cpu_per_gib", "module_user_per_gib", "module_sys_per_gib", "put_mbps",
        "put_cpu_per_gib", "digests", "digest_cpu_per_gib", "gap_cpu_per_gib", "module_ratio", "module_fixed_cpu_s",
        "emulator_cpu_per_gib_module", "emulator_cpu_per_gib_put", "task_mbps", "task_s", "task_cpu_s", "noop_s",
        "noop_fraction", "noop_module_fraction", "rss_small_mib", "rss_large_mib", "rss_ratio")
DIGESTS = {"servicefabric": "sha256", "vsphere": "sha1+sha256", "zstack": "md5+sha256"}


def test_bench_runs_every_part_and_reports_every_figure(tmp_path, collections_path):
    out = tmp_path / "figures.json"
    chart = tmp_path / "chart.png"
    env = dict(os.environ, BENCH_COLLECTIONS_PATH=collections_path)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (collections_path, env.get("PYTHONPATH")) if p)
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "bench.py"), "--scale", "0.015625", "--runs", "1",
                           "--json", str(out), "--markdown", str(tmp_path / "table.md"), "--chart", str(chart),
                           "--workdir", str(tmp_path / "work")],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=600, check=False)
    log = proc.stderr.decode()
    assert proc.returncode == 0, log[-3000:]
    report = json.loads(out.read_text())
    assert [r["provider"] for r in report["results"]] == ["servicefabric", "vsphere", "zstack"], log[-3000:]
    table = proc.stdout.decode().splitlines()
    assert table[1].split() == ["figure", "servicefabric", "vsphere", "vsphere+checksum", "zstack"]
    for r in report["results"]:
        assert all(k in r for k in KEYS), sorted(set(KEYS) - set(r))
        assert r["upload_bytes"] == 16 * 1024 * 1024 and r["digests"] == DIGESTS[r["provider"]]
        assert r["module_cpu_per_gib"] > 0 and r["put_cpu_per_gib"] > 0 and r["digest_cpu_per_gib"] > 0
        assert abs(r["gap_cpu_per_gib"] - (r["module_cpu_per_gib"] - r["put_cpu_per_gib"] - r["digest_cpu_per_gib"])) < 1e-9
        assert r["task_s"] > r["task_module_s"] > 0                # the module's own time is part of the task's
        assert r["rss_large_mib"] > 0 and r["rss_small_mib"] > 0
        if r["provider"] != "vsphere":
            missing = r["resume_missing"]
            assert 0 < missing < r["upload_bytes"]
            assert r["resume_sent"] == missing and r["resume_resent"] == 0
            assert r["speedup"] > 0
    vsphere = report["results"][1]
    assert vsphere["with_checksum"]["digests"] == "sha256" and vsphere["with_checksum"]["module_cpu_per_gib"] > 0
    pkg = report["package"]
    assert pkg["package_files"] == 159 and pkg["package_noop_s"] > 0 and pkg["package_task_s"] > 0
    if os.environ.get("IMAGESTORE_SFCTL") or "sfctl_s" in pkg:      # named (CI), or found in .venv-sfctl
        assert pkg["sfctl_s"] > 0 and pkg["package_vs_sfctl"] > 0
    else:
        assert "sfctl: skipped: sfctl not found" in log
    assert [row["stores"] for row in report["fanout"]["fanout"]] == [1, 2]
    for row in report["fanout"]["fanout"]:
        assert row["aggregate_mbps"] > 0 and 0 < row["cpu_busy"] and 0 < row["machine_busy"] <= 1 and row["limit"]
    labels = [line.split("  ")[0] for line in table[3:]]
    assert "module CPU s/GiB (user+sys, getrusage)" in labels and "sfctl application upload s" in labels
    assert (tmp_path / "table.md").read_text().startswith("| figure | servicefabric |")
    if importlib.util.find_spec("matplotlib"):
        assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert not chart.exists() and "chart: skipped" in log
